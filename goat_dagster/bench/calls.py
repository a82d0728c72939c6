"""The accounting of a run's LLM calls, wherever they are made from.

The builtin agent calls the model from the host (llm_client.py); a `command:` agent calls it from
inside its sandbox, through the attempt's relay (relay.py). Either way the call goes through the
run's `CallMeter`, the one place that

- gives the call its identity (`Call`: a call id and the `call_metadata(...)` the request carries,
  which the proxy turns into trace ids, tags and sessions),
- prices it: LiteLLM's `x-litellm-response-cost` header, else registry pricing x tokens,
- adds the cost to the run's budget (`on_cost`),
- and writes one `CallRecord` per call, answered or failed, to `$GOAT_HOME/runs/<run_id>/calls.jsonl`
  (`CallLog`), and the same call, with the answer the agent got, to the attempt's transcript
  (transcript.py: what `goat view` shows), so the two never disagree on a call's numbers.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from goat_dagster import config
from goat_dagster.bench.transcript import Transcript
from goat_dagster.routing.gateway import Gateway
from goat_dagster.tracing.schema import CallRecord, call_metadata, new_id

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


@dataclass
class Call:
    """One LLM call, from the moment it is made."""

    ctx: CallContext
    step: int
    transcript: Transcript | None = None  # the attempt's, when it is recorded
    request: list[Any] | None = None  # what the transcript shows of the request (a command agent's)
    call_id: str = field(default_factory=new_id)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    t0: float = field(default_factory=time.monotonic)

    def metadata(self) -> dict[str, Any]:
        """The request's `metadata` (sent in the body: `extra_body={"metadata": ...}`)."""
        c = self.ctx
        return call_metadata(
            run_id=c.run_id,
            suite=c.suite,
            model=c.model,
            task_id=c.task_id,
            epoch=c.epoch,
            trace_id=c.trace_id,
            call_id=self.call_id,
            step=self.step,
        )

    @property
    def latency_s(self) -> float:
        return time.monotonic() - self.t0


@dataclass(frozen=True)
class CallCost:
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    source: Literal["gateway", "registry"]


class CallMeter:
    """Prices, counts against the budget and logs every LLM call of one run (thread-safe)."""

    def __init__(
        self, log: CallLog, gateway: Gateway, on_cost: Callable[[float], None] | None = None
    ) -> None:
        self.log = log
        self.gateway = gateway  # whose registry prices price a call the gateway reports no cost for
        self.on_cost = on_cost

    def start(
        self,
        ctx: CallContext,
        step: int,
        transcript: Transcript | None = None,
        request: list[Any] | None = None,
    ) -> Call:
        return Call(ctx, step, transcript, request)

    def answered(
        self,
        call: Call,
        headers: Any,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        message: dict[str, Any] | None = None,
        finish_reason: str | None = None,
    ) -> CallCost:
        """The model answered (`message`: the assistant message, for the transcript): its cost
        (header, else registry pricing), budgeted and logged."""
        cost = header_cost(headers)
        source: Literal["gateway", "registry"] = "gateway"
        if cost is None:
            cost, source = self.gateway.registry_cost(prompt_tokens, completion_tokens), "registry"
        if self.on_cost is not None:
            self.on_cost(cost)
        numbers = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost_usd": cost,
            "cost_source": source,
            "latency_s": round(call.latency_s, 4),
        }
        self.log.write(self._record(call, ok=True), **numbers)
        if call.transcript is not None:
            call.transcript.call(
                call.step,
                call_id=call.call_id,
                message=message,
                request=call.request,
                finish_reason=finish_reason,
                **numbers,
            )
        return CallCost(prompt_tokens, completion_tokens, cost, source)

    def failed(self, call: Call, error: str, *, answer: str | None = None) -> None:
        """The call got no answer the agent can use (gateway down, refused, out of time);
        `answer`: the gateway's error body, for the transcript only (the call log keeps `error`)."""
        self.log.write(self._record(call, ok=False, error=error))
        if call.transcript is not None:
            call.transcript.call(
                call.step,
                call_id=call.call_id,
                ok=False,
                error=f"{error}: {answer}" if answer else error,
                request=call.request,
                latency_s=round(call.latency_s, 4),
            )

    @staticmethod
    def _record(call: Call, *, ok: bool, error: str | None = None) -> CallRecord:
        c = call.ctx
        return CallRecord(
            run_id=c.run_id,
            suite=c.suite,
            model=c.model,
            task_id=c.task_id,
            epoch=c.epoch,
            step=call.step,
            trace_id=c.trace_id,
            call_id=call.call_id,
            started_at=call.started_at,
            finished_at=datetime.now(UTC),
            ok=ok,
            error=error,
        )
