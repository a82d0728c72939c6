"""`goat ask --model M PROMPT`: one answer, streamed as it is generated, through the model's gateway
(the LiteLLM proxy), as an LLM call of goat like any other.

The call is made the way the harness makes its calls: through a `CallMeter` (call id and the
`call_metadata(...)` the request carries, so the proxy's trace sink files it under the ask's
session; its cost from LiteLLM's header or the registry's prices; one `CallRecord` in
`$GOAT_HOME/runs/<session>/calls.jsonl`), so `goat traces verify <session>` finds its trace, and
the ask waits a moment for it itself (`verify_run`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from goat_dagster.bench.calls import CallContext, CallLog, CallMeter
from goat_dagster.registry import ModelEntry
from goat_dagster.routing.gateway import Gateway
from goat_dagster.tracing.export import verify_run
from goat_dagster.tracing.schema import new_id


class AskError(RuntimeError):
    """The model's gateway did not answer; the message says what it said."""


@dataclass
class Answer:
    session_id: str  # the trace session (and `runs/<session_id>/calls.jsonl`)
    model: str  # registry key
    gateway_model: str  # the name the proxy was asked for
    text: str
    chunks: int  # streamed pieces of text
    finish_reason: str | None
    trace_id: str
    call_id: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cost_source: str  # gateway | registry
    ttft_s: float | None  # first token
    latency_s: float
    trace_recorded: bool | None = None  # None: not looked for
    trace_source: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def footer(self) -> str:
        """What `goat ask` prints after the streamed answer: the call's numbers and its trace."""
        trace = {True: "recorded", False: "NOT found yet", None: "not looked for"}[self.trace_recorded]
        return (
            f"{self.gateway_model}: {self.prompt_tokens}+{self.completion_tokens} tokens, "
            f"${self.cost_usd:.6f}, first token {self.ttft_s}s, {self.latency_s:.2f}s; trace "
            f"{self.trace_id} {trace} (session {self.session_id})"
        )


def new_session(entry: ModelEntry) -> str:
    return f"ask-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{entry.slug}-{secrets.token_hex(3)}"


def ask(
    entry: ModelEntry,
    gateway: Gateway,
    prompt: str,
    *,
    system: str | None = None,
    max_tokens: int | None = None,
    on_text: Callable[[str], None] | None = None,
    trace_wait_s: float = 10.0,
) -> Answer:
    """Stream the model's answer to `prompt` (each piece to `on_text`), then look for its trace."""
    import openai  # ~0.5 s to import: only a verb that calls a model pays it

    session = new_session(entry)
    ctx = CallContext(run_id=session, suite="ask", model=entry.key, task_id="ask", epoch=1, trace_id=new_id())
    meter = CallMeter(CallLog(session), gateway)
    call = meter.start(ctx, step=1)
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    body: dict[str, Any] = {"model": gateway.model, "messages": messages, "stream": True}
    body["stream_options"] = {"include_usage": True}
    if max_tokens:
        body["max_tokens"] = max_tokens
    parts: list[str] = []
    finish: str | None = None
    usage: Any = None
    ttft: float | None = None
    try:
        raw = gateway.openai(max_retries=2).chat.completions.with_raw_response.create(
            **body, extra_body={"metadata": call.metadata()}, timeout=600.0
        )
        for chunk in raw.parse():
            usage = getattr(chunk, "usage", None) or usage
            for choice in chunk.choices or []:
                piece = getattr(choice.delta, "content", None) or ""
                if piece:
                    ttft = ttft if ttft is not None else call.latency_s
                    parts.append(piece)
                    if on_text is not None:
                        on_text(piece)
                finish = choice.finish_reason or finish
    except openai.APIError as exc:
        meter.failed(call, f"{type(exc).__name__}: {exc}")
        raise AskError(f"{entry.key} via {gateway.base_url}: {exc}") from None
    cost = meter.answered(
        call,
        raw.headers,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
    )
    answer = Answer(
        session_id=session,
        model=entry.key,
        gateway_model=gateway.model,
        text="".join(parts),
        chunks=len(parts),
        finish_reason=finish,
        trace_id=ctx.trace_id,
        call_id=call.call_id,
        prompt_tokens=cost.prompt_tokens,
        completion_tokens=cost.completion_tokens,
        cost_usd=cost.cost_usd,
        cost_source=cost.source,
        ttft_s=round(ttft, 4) if ttft is not None else None,
        latency_s=round(call.latency_s, 4),
    )
    if trace_wait_s > 0:  # the proxy's callback writes the trace a moment after the stream ends
        found = verify_run(session, wait_s=trace_wait_s)
        answer.trace_recorded, answer.trace_source = found.ok, found.source
    return answer
