"""The harness's LLM calls: who makes each one (`CallContext`) and the run's call journal (`CallLog`).

Every model call of a run, whether the builtin agent makes it from the host (llm_client.py) or a
`command:` agent makes it from inside its sandbox (through the relay, relay.py), is one line of
`$GOAT_HOME/runs/<run_id>/calls.jsonl`: a `CallRecord` with its tokens and cost.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goat_dagster import config
from goat_dagster.tracing.schema import CallRecord

COST_HEADERS = ("x-litellm-response-cost", "x-litellm-response-cost-original")


@dataclass(frozen=True)
class CallContext:
    """Who is calling: the identity every call's metadata and record carry."""

    run_id: str
    suite: str
    model: str  # registry key (the results row's `model`)
    task_id: str
    epoch: int
    trace_id: str


class CallLog:
    """Appends one JSON line per LLM call to `runs/<run_id>/calls.jsonl` (thread-safe)."""

    def __init__(self, run_id: str, runs_dir: Path | None = None) -> None:
        self.path = (runs_dir or config.paths().runs) / run_id / "calls.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()

    def write(self, record: CallRecord, **extra: Any) -> None:
        line = json.dumps({**record.model_dump(mode="json"), **extra}) + "\n"
        with self.lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a kill
        return out


def header_cost(headers: Any) -> float | None:
    """The call's cost as LiteLLM's proxy reports it, or None when it does not.

    `x-litellm-response-cost` is the cost; LiteLLM 1.106 leaves it out when its logging object has
    not settled the cost yet, while `x-litellm-response-cost-original` (the same cost before any
    discount or margin, which goat does not configure) is there: then that one.
    """
    if headers is None:
        return None
    for name in COST_HEADERS:
        raw = headers.get(name)
        if raw in (None, "", "None", "null"):
            continue
        try:
            return max(0.0, float(raw))
        except ValueError:
            continue
    return None
