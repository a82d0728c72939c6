"""The transcript of one task attempt: what the agent saw and did, and what the check said.

The results row has the numbers and the journal a one-line note; a person asking "what did the
agent actually do?" (`goat view`) needs the conversation. Each attempt appends JSON events to
`$GOAT_HOME/runs/<run_id>/transcripts/<task>/<epoch>/<trace_id>.jsonl` (`<task>` is the task id
percent-encoded, so `HumanEval/0` stays one directory) as it goes, one write(2) per event: a killed
run leaves whole lines, and a retried or resumed attempt gets a file of its own.

Events (`type`):
- `start`: task, epoch, attempt number, trace id, agent, the instruction, the set-up files' names.
- `message`: a message the agent put into the conversation (its system prompt, the task).
- `call`: one model call in order: step, call id, ok or the error, prompt/completion tokens, cost,
  latency, finish reason, the assistant message (text and tool calls); `request` holds the messages
  a `command:` agent sent that the transcript has not seen yet (tool results included).
- `tool`: a tool the builtin agent ran: call id, name, arguments, ok, its output as the model got it.
- `files`: the work dir after the agent against the set-up files: each added, modified or deleted
  text file with its content before and after (binary or large files by size only).
- `check`: the check's command, exit code, whether it was killed, seconds, output, verdict.
- `end`: status, error kind, error, why the agent stopped, its notes.

Every string is masked of secret values (`tracing.masking`) before it is written: the harness holds
the gateway's key in its environment, and nothing secret may reach a file people read.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from goat_dagster import config
from goat_dagster.bench.sandbox import ExecResult, Sandbox
from goat_dagster.bench.tasks import Task
from goat_dagster.tracing.masking import mask_obj, secret_values

MAX_TEXT = 256 * 1024  # any one string in an event
MAX_FILE_BYTES = 128 * 1024  # a file's content is kept up to this size
MAX_FILES = 200
MAX_FILES_BYTES = 2 * 1024 * 1024  # all file contents of one attempt
CHECK_OUTPUT_CHARS = 32 * 1024  # per stream


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """Head and tail of a long text, with how much was cut in between."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit} characters cut] ...\n{text[-half:]}"


def task_dir_name(task_id: str) -> str:
    """A task id as one safe path component (`HumanEval/0` -> `HumanEval%2F0`, `..` -> `%2E%2E`)."""
    name = quote(task_id, safe="")
    return name.replace(".", "%2E") if name.strip(".") == "" else name


def transcripts_dir(run_id: str, runs_dir: Path | None = None) -> Path:
    return (runs_dir or config.paths().runs) / run_id / "transcripts"


def attempt_dir(run_id: str, task_id: str, epoch: int, runs_dir: Path | None = None) -> Path:
    return transcripts_dir(run_id, runs_dir) / task_dir_name(task_id) / str(int(epoch))


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _cap(obj: Any) -> Any:
    if isinstance(obj, str):
        return clip(obj)
    if isinstance(obj, Mapping):
        return {str(k): _cap(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_cap(v) for v in obj]
    return obj


class Transcript:
    """Appends one attempt's events to its file. Recording never breaks an attempt: a write that
    fails is dropped (the results row and the journal are what count)."""

    def __init__(self, path: Path | None, secrets: list[str] | None = None) -> None:
        self.path = path
        self.secrets = secret_values() if secrets is None else secrets
        self.lock = threading.Lock()
        self.seen_messages = 0  # of a command agent's conversation, what earlier calls already showed
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_attempt(
        cls, run_id: str, task_id: str, epoch: int, trace_id: str, secrets: list[str] | None = None
    ) -> Transcript:
        return cls(attempt_dir(run_id, task_id, epoch) / f"{trace_id}.jsonl", secrets)

    @classmethod
    def discard(cls) -> Transcript:
        """A transcript that records nothing (an agent run outside a benchmark run)."""
        return cls(None, secrets=[])

    def event(self, type_: str, **fields: Any) -> None:
        if self.path is None:
            return
        record = mask_obj(_cap({"type": type_, "at": _now(), **fields}), self.secrets)
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self.lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
            except OSError:
                pass

    # ---- what the runner and the agents record ------------------------------------------------

    def start(self, *, task: Task, epoch: int, attempt: int, trace_id: str, agent: str) -> None:
        self.event(
            "start",
            task_id=task.id,
            epoch=epoch,
            attempt=attempt,
            trace_id=trace_id,
            agent=agent,
            instruction=task.instruction,
            files=sorted(task.files),
            check=task.check,
        )

    def message(self, message: Mapping[str, Any]) -> None:
        self.event("message", message=dict(message))

    def call(
        self,
        step: int,
        *,
        call_id: str | None,
        ok: bool = True,
        error: str | None = None,
        message: Mapping[str, Any] | None = None,
        request: list[Any] | None = None,
        **numbers: Any,
    ) -> None:
        """One model call; `numbers` are prompt_tokens, completion_tokens, cost_usd, cost_source,
        latency_s, finish_reason."""
        self.event(
            "call",
            step=step,
            call_id=call_id,
            ok=ok,
            error=error,
            message=dict(message) if message is not None else None,
            request=request,
            **numbers,
        )

    def request_messages(self, messages: Any) -> list[Any] | None:
        """Of a command agent's request, the messages this transcript has not shown yet (the
        conversation grows by its tail; a request that starts over is shown whole)."""
        if not isinstance(messages, list):
            return None
        with self.lock:
            new = messages[self.seen_messages :] if len(messages) >= self.seen_messages else messages
            self.seen_messages = len(messages)
        return new

    def tool(self, call_id: str, name: str, arguments: Any, *, ok: bool, output: str, seconds: float) -> None:
        self.event(
            "tool",
            call_id=call_id,
            name=name,
            arguments=arguments,
            ok=ok,
            output=output,
            seconds=round(seconds, 4),
        )

    def files(self, sandbox: Sandbox, setup: Mapping[str, str | bytes]) -> None:
        """The work dir against the set-up files. Best effort: a sandbox that cannot be read is noted."""
        if self.path is None:
            return
        try:
            changes, note = diff_workdir(sandbox, setup)
        except Exception as exc:  # a broken sandbox: its error is the attempt's, not the record's
            self.event("files", changes=[], note=f"the work dir could not be read: {exc}")
            return
        self.event("files", changes=changes, note=note)

    def check(
        self,
        command: str,
        *,
        result: ExecResult | None = None,
        passed: bool,
        note: str | None = None,
    ) -> None:
        fields: dict[str, Any] = {"command": command, "passed": passed, "note": note}
        if result is not None:
            fields.update(
                exit_code=result.exit_code,
                killed=result.killed,
                seconds=round(result.duration_s, 4),
                stdout=clip(result.stdout, CHECK_OUTPUT_CHARS),
                stderr=clip(result.stderr, CHECK_OUTPUT_CHARS),
                truncated=result.truncated,
            )
        self.event("check", **fields)

    def end(self, *, status: str, error_kind: str | None, note: Mapping[str, Any]) -> None:
        self.event(
            "end",
            status=status,
            error_kind=error_kind,
            error=note.get("error"),
            stop=note.get("stop"),
            notes=note.get("notes") or [],
        )


def _text(data: bytes) -> str | None:
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _change(path: str, before: str | None, **fields: Any) -> dict[str, Any]:
    return {"path": path, "change": "added" if before is None else "modified", "before": before, **fields}


def diff_workdir(
    sandbox: Sandbox, setup: Mapping[str, str | bytes]
) -> tuple[list[dict[str, Any]], str | None]:
    """(changes, note): every file added, modified or deleted against `setup`, as
    {path, change, before, after, size, ...}: text contents up to the limits above; a binary file
    (`binary`), one too large to keep (`large`: by size, so a same-size change of a large set-up
    file goes unseen) and a symlink (`link`) without them."""
    present = {e.path: e for e in sandbox.walk() if e.kind in ("file", "link")}
    changes: list[dict[str, Any]] = []
    budget = MAX_FILES_BYTES
    skipped = 0
    for path in sorted(set(present) | set(setup)):
        raw = setup.get(path)
        before = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        entry = present.get(path)
        if entry is None:
            changes.append({"path": path, "change": "deleted", "before": before, "after": None, "size": 0})
        elif len(changes) >= MAX_FILES:
            skipped += 1
        elif entry.kind == "link":
            changes.append(_change(path, before, after=None, size=0, link=entry.target))
        elif entry.size > min(MAX_FILE_BYTES, budget):
            if before is None or entry.size != len(before.encode()):
                changes.append(_change(path, before, after=None, size=entry.size, large=True))
        else:
            data = sandbox.read_file(path, limit=MAX_FILE_BYTES)
            after = _text(data)
            if after is None or after != before:
                budget -= len(data)
                changes.append(_change(path, before, after=after, size=len(data), binary=after is None))
    note = f"{skipped} more changed files not recorded (limit {MAX_FILES})" if skipped else None
    return changes, note


# ---- reading -------------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One attempt's transcript, read back."""

    trace_id: str
    path: Path
    events: list[dict[str, Any]] = field(default_factory=list)

    def first(self, type_: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("type") == type_), None)

    def last(self, type_: str) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e.get("type") == type_), None)

    @property
    def started_at(self) -> str:
        start = self.first("start")
        return str(start.get("at")) if start else ""


def read_transcript(path: Path) -> list[dict[str, Any]]:
    """A transcript file's events; a torn last line (a killed run) is skipped."""
    out: list[dict[str, Any]] = []
    try:
        data = path.read_bytes()
    except OSError:
        return out
    for line in data.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def read_attempts(run_id: str, task_id: str, epoch: int, runs_dir: Path | None = None) -> list[Attempt]:
    """Every recorded attempt of a task x epoch, oldest first (retries and resumed runs included)."""
    d = attempt_dir(run_id, task_id, epoch, runs_dir)
    if not d.is_dir():
        return []
    attempts = [Attempt(p.stem, p, read_transcript(p)) for p in d.glob("*.jsonl")]
    attempts.sort(key=lambda a: (a.started_at, a.path.stat().st_mtime))
    return attempts
