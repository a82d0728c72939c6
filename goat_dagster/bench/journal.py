"""The per-run journal: how a run killed at any point resumes without a duplicate or a lost row.

`$GOAT_HOME/runs/<run_id>/`:
- `run.json`: what the run is (suite and its version, model, agent, sandbox, epochs); a resume
  must match it.
- `results.jsonl`: one line per finished task attempt — the results row plus details (check
  output, agent notes) — appended with a single write(2), so a SIGKILL leaves either the whole
  line or a torn last line that is ignored (and that task is done again).
- `calls.jsonl`: the LLM calls (gateway.CallLog).
- `lock`: an exclusive flock while a process works on the run (the kernel drops it on SIGKILL).

The last line for a (task, epoch) wins. Rows that ended in `infra` or `budget` errors do not count
as done: a resume gives them another go.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from goat_dagster import atomic, config
from goat_dagster.bench.lake import ResultRow, RunIdentity

RETRY_ON_RESUME = ("infra", "budget")


class RunError(ValueError):
    """A run cannot start or resume as asked."""


class GatewayDown(RunError):
    """Nothing answers at the model gateway when the run starts: infrastructure, worth a retry."""


class RunSpec(RunIdentity):
    """What a run is (`run.json`): a resume must match it."""

    model_config = ConfigDict(extra="ignore")

    epochs: int
    task_ids: list[str] | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def identity(self) -> dict[str, Any]:
        return self.model_dump(
            include={"suite", "suite_version", "model", "agent", "sandbox", "epochs", "task_ids"}
        )


class RunJournal:
    def __init__(self, spec: RunSpec, runs_dir: Path | None = None) -> None:
        self.dir = (runs_dir or config.paths().runs) / spec.run_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise RunError(f"run {spec.run_id!r} is in progress in another process") from None
        spec_file = self.dir / "run.json"
        self.resumed = spec_file.exists()
        if self.resumed:
            old = RunSpec.model_validate_json(spec_file.read_text())
            if old.identity() != spec.identity():
                diff = {
                    k: (v, spec.identity()[k]) for k, v in old.identity().items() if spec.identity()[k] != v
                }
                self.close()
                details = "; ".join(f"{k}: was {a!r}, now {b!r}" for k, (a, b) in diff.items())
                raise RunError(
                    f"run {spec.run_id!r} exists with different settings ({details}); use a new --run-id"
                )
            self.spec = old
        else:
            atomic.write_text(spec_file, spec.model_dump_json(indent=2))
            self.spec = spec
        self.results_path = self.dir / "results.jsonl"
        self._repair_tail()
        self._fd = os.open(self.results_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _repair_tail(self) -> None:
        """Cut a torn last line (a write interrupted by a kill) so appends start on a fresh line."""
        if not self.results_path.exists():
            return
        data = self.results_path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.results_path, "r+b") as f:
                f.truncate(keep)

    def entries(self) -> list[dict[str, Any]]:
        return read_entries(self.results_path)

    def rows(self) -> dict[tuple[str, int], ResultRow]:
        """The latest row of each (task, epoch)."""
        return latest_rows(self.entries())

    def done(self) -> dict[tuple[str, int], ResultRow]:
        return {k: r for k, r in self.rows().items() if r.error_kind not in RETRY_ON_RESUME}

    def append(self, row: ResultRow, detail: dict[str, Any] | None = None) -> None:
        line = json.dumps({"row": row.model_dump(mode="json"), "detail": detail or {}}) + "\n"
        os.write(self._fd, line.encode())  # one write: whole line or (on a kill) a torn tail

    def close(self) -> None:
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, None)


def journal_file(run_id: str) -> Path:
    return config.paths().runs / run_id / "results.jsonl"


def read_entries(path: Path) -> list[dict[str, Any]]:
    """The journal's lines: {"row": ResultRow, "detail": {...}}; a torn line is skipped."""
    out: list[dict[str, Any]] = []
    if not path.exists():
        return out
    for line in path.read_bytes().splitlines():
        try:
            obj = json.loads(line)
            obj["row"] = ResultRow.model_validate(obj["row"])
        except (ValueError, KeyError, TypeError):
            continue
        out.append(obj)
    return out


def read_task_entries(path: Path, task_id: str, epoch: int) -> list[dict[str, Any]]:
    """The journal's lines of one task x epoch, oldest first, without parsing every other line (a
    run of 10,000 attempts has a long journal; `append` writes the row's task id as json.dumps does)."""
    needle = f'"task_id": {json.dumps(task_id)}'.encode()
    out: list[dict[str, Any]] = []
    if not path.exists():
        return out
    with open(path, "rb") as fh:
        for line in fh:
            if needle not in line:
                continue
            try:
                obj = json.loads(line)
                obj["row"] = ResultRow.model_validate(obj["row"])
            except (ValueError, KeyError, TypeError):
                continue
            if obj["row"].task_id == task_id and obj["row"].epoch == epoch:
                out.append(obj)
    return out


def latest_rows(entries: list[dict[str, Any]]) -> dict[tuple[str, int], ResultRow]:
    latest: dict[tuple[str, int], ResultRow] = {}
    for e in entries:
        latest[e["row"].key] = e["row"]
    return latest


def run_dirs() -> list[Path]:
    d = config.paths().runs
    return (
        sorted((p for p in d.iterdir() if (p / "run.json").exists()), key=lambda p: p.stat().st_mtime)
        if d.is_dir()
        else []
    )


def read_spec(run_id: str) -> RunSpec | None:
    f = config.paths().runs / run_id / "run.json"
    return RunSpec.model_validate_json(f.read_text()) if f.exists() else None
