"""Free-form prompts as a suite of unscored tasks: `goat run --prompt TEXT` and `--batch prompts.json`
(seed 000's single-prompt and batch modes).

A prompt is a `Task` with no check: the agent works on it in a fresh sandbox like on any task, and
its answer (the model's last message, or a `command:` agent's output) and the files it wrote are
journaled; the row's status is `unscored` (never counted in a pass rate). A batch file is JSON:

    ["Write fizzbuzz in Python", "Write a function that reverses a string"]

or objects, with optional ids and set-up files:

    {"prompts": [{"id": "fizz", "prompt": "Write fizzbuzz in fizz.py", "files": {"notes.txt": "..."}}]}

(a bare list of such objects works too). Errors name the file, the prompt and the field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from goat_dagster.bench.suite import load_suite
from goat_dagster.bench.tasks import TASK_ID_PATTERN, Suite, Task
from goat_dagster.registry import slugify

SINGLE_PROMPT_SUITE = "prompt"


class PromptError(ValueError):
    """A prompt or a batch file that cannot be run; the message names file, prompt and field."""


class PromptItem(BaseModel):
    """One prompt of a batch file."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, pattern=TASK_ID_PATTERN, max_length=200)
    prompt: str = Field(min_length=1)
    files: dict[str, str] = Field(default_factory=dict, description="set-up files (path -> content)")


def _task(item: PromptItem, default_id: str) -> Task:
    return Task(id=item.id or default_id, instruction=item.prompt, files=item.files, tags=["prompt"])


def prompt_suite(text: str) -> Suite:
    """`goat run --prompt TEXT`: a suite of that one prompt."""
    if not text.strip():
        raise PromptError("--prompt: the prompt is empty")
    return Suite(
        name=SINGLE_PROMPT_SUITE,
        description="a free-form prompt",
        tasks=[_task(PromptItem(prompt=text), "prompt")],
    )


def load_batch(path: Path | str) -> Suite:
    """`goat run --batch FILE`: every prompt of a JSON batch file, as a suite named after the file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PromptError(f"{path}: no such batch file") from None
    except json.JSONDecodeError as exc:
        raise PromptError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
    items_raw = raw.get("prompts") if isinstance(raw, dict) and set(raw) == {"prompts"} else raw
    if not isinstance(items_raw, list) or not items_raw:
        raise PromptError(f'{path}: expected a non-empty list of prompts, or {{"prompts": [...]}}')
    problems: list[str] = []
    items: list[PromptItem] = []
    for i, item in enumerate(items_raw):
        if isinstance(item, str):
            items.append(PromptItem(prompt=item))
            continue
        if not isinstance(item, dict):
            problems.append(f"{path}: prompts[{i}]: expected a prompt (text) or {{id, prompt, files}}")
            continue
        try:
            items.append(PromptItem.model_validate(item))
        except ValidationError as err:
            for e in err.errors(include_url=False):
                field = ".".join(str(p) for p in e["loc"])
                msg = "required field is missing" if e["type"] == "missing" else e["msg"]
                if e["type"] == "extra_forbidden":
                    msg = "unknown field; expected id, prompt, files"
                problems.append(f"{path}: prompts[{i}].{field}: {msg}")
    if problems:
        raise PromptError("invalid batch file:\n" + "\n".join(f"  {p}" for p in problems))
    width = len(str(len(items)))
    tasks: list[Task] = []
    for i, item in enumerate(items):
        where = f"{path}: prompts[{i}]"
        if not item.prompt.strip():
            raise PromptError(f"{where}: the prompt is empty")
        try:
            task = _task(item, f"p{i + 1:0{width}d}")
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            field = ".".join(str(p) for p in first["loc"])
            raise PromptError(f"{where}.{field}: {first['msg'].removeprefix('Value error, ')}") from None
        if task.id in {t.id for t in tasks}:
            raise PromptError(f"{where}.id: duplicate id {task.id!r}")
        tasks.append(task)
    name = slugify(path.stem).lstrip("_") or "batch"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return Suite(
        name=name, description=f"free-form prompts from {path} ({digest})", tasks=tasks, source=str(path)
    )


def tasks_to_run(suite: str | None, prompt: str | None, batch: str | None) -> Suite:
    """What `goat run` runs: exactly one of a suite (scored), a prompt or a batch file (unscored)."""
    given = [name for name, value in (("--suite", suite), ("--prompt", prompt), ("--batch", batch)) if value]
    if len(given) != 1:
        raise PromptError(
            "give one of --suite (a benchmark), --prompt TEXT or --batch FILE (free-form prompts)"
            + (f", not {' and '.join(given)}" if given else "")
        )
    if suite:
        return load_suite(suite)
    return prompt_suite(prompt) if prompt else load_batch(batch or "")
