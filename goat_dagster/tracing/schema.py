"""The shapes traces take, shared by the harness (who makes calls), the trace sink (LiteLLM callback),
the Langfuse reader and the `trace_export` asset.

Identity: one *trace* per task x epoch attempt (`trace_id`, 32 lowercase hex, OTEL-compatible);
one *call* per LLM request inside it (`call_id`, 32 hex, chosen by the client and sent in the
request metadata as `goat_call_id`, so a call can be matched to its trace from either source).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def new_id() -> str:
    """A trace or call id: 32 lowercase hex characters (valid as an OpenTelemetry trace id)."""
    return uuid.uuid4().hex


def call_metadata(
    *,
    run_id: str,
    suite: str,
    model: str,
    task_id: str,
    epoch: int,
    trace_id: str,
    call_id: str,
    step: int,
) -> dict[str, Any]:
    """LiteLLM request `metadata` for one call (sent in the request body: `extra_body={"metadata": ...}`).

    `trace_id`, `session_id`, `generation_name`, `trace_name` and `tags` are the keys LiteLLM's
    Langfuse integrations understand; the `goat_*` keys are ours and reach the trace sink as-is.
    """
    return {
        "trace_id": trace_id,
        "session_id": run_id,
        "trace_name": f"{suite}/{task_id}",
        "generation_name": f"{task_id}#e{epoch}#s{step}",
        "tags": [f"model:{model}", f"suite:{suite}", f"task:{task_id}", f"run:{run_id}"],
        "goat_call_id": call_id,
        "goat_run_id": run_id,
        "goat_suite": suite,
        "goat_task_id": task_id,
        "goat_epoch": epoch,
        "goat_step": step,
    }


class CallRecord(BaseModel):
    """What the harness logs per LLM call it makes: `$GOAT_HOME/runs/<run_id>/calls.jsonl`."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    suite: str
    model: str
    task_id: str
    epoch: int
    step: int
    trace_id: str
    call_id: str
    started_at: datetime
    finished_at: datetime | None = None
    ok: bool = True
    error: str | None = None


class TraceRecord(BaseModel):
    """One LLM call as a trace, the same from the local sink and from Langfuse.

    This is the row schema of `$GOAT_HOME/lake/traces/*.parquet` (the `trace_export` asset).
    """

    model_config = ConfigDict(extra="ignore")

    source: Literal["sink", "langfuse"]
    call_id: str | None = Field(description="goat_call_id from the request metadata")
    trace_id: str | None
    run_id: str | None = Field(description="session_id")
    suite: str | None = None
    task_id: str | None = None
    epoch: int | None = None
    step: int | None = None
    generation_name: str | None = None
    model: str | None = Field(default=None, description="model name the client asked for")
    provider_model: str | None = Field(default=None, description="deployment LiteLLM routed to")
    start_time: datetime | None = None
    end_time: datetime | None = None
    latency_s: float | None = None
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float | None = None
    status: Literal["success", "error"] = "success"
    error: str | None = None
    tags: list[str] = Field(default_factory=list)
    input: str | None = Field(default=None, description="optional, size-capped, secrets masked")
    output: str | None = Field(default=None, description="optional, size-capped, secrets masked")
