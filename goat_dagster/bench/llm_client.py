"""The harness's LLM client: chat completions through the model gateway (the LiteLLM proxy).

A `Gateway` (routing/gateway.py) says where requests go, with which key, under which model name;
`check_reachable` finds a gateway that is down before a run starts. `LLMClient.chat` makes one
chat-completion call the way every harness call from the host must be made: through the run's
`CallMeter` (its metadata in the request body, its cost, its line in the call log: calls.py),
retried with exponential backoff while the gateway is down or overloaded, and never past the
agent's deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    stop_never,
    wait_exponential,
)

from goat_dagster.bench.calls import Call, CallContext, CallMeter
from goat_dagster.bench.errors import AgentError, AgentTimeout, InfraError
from goat_dagster.bench.transcript import Transcript
from goat_dagster.routing.gateway import Gateway


def check_reachable(gateway: Gateway, timeout_s: float = 10.0) -> None:
    """Raise ConnectionError when nothing answers at the gateway's address (any HTTP answer will do)."""
    url = gateway.base_url.rstrip("/") + "/models"
    try:
        httpx.get(
            url, headers={"Authorization": f"Bearer {gateway.api_key.get_secret_value()}"}, timeout=timeout_s
        )
    except httpx.HTTPError as exc:
        raise ConnectionError(f"no model gateway answers at {gateway.base_url}: {exc}") from exc


@dataclass
class CallResult:
    assistant: dict[str, Any]  # the answer as the conversation carries it: role, content, tool_calls
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cost_source: str  # gateway | registry
    call_id: str
    latency_s: float


def _tool_call_dict(tc: Any) -> dict[str, Any]:
    fn = getattr(tc, "function", None)
    return {
        "id": getattr(tc, "id", None) or "call_0",
        "type": "function",
        "function": {
            "name": getattr(fn, "name", None) or "",
            "arguments": getattr(fn, "arguments", None) or "",
        },
    }


def assistant_message(message: Any) -> dict[str, Any]:
    """An openai `ChatCompletionMessage` (or None) as the assistant message a conversation goes on
    with: its text, and its tool calls when it made any."""
    out: dict[str, Any] = {"role": "assistant", "content": getattr(message, "content", None) or ""}
    calls = list(getattr(message, "tool_calls", None) or [])
    if calls:
        out["tool_calls"] = [_tool_call_dict(tc) for tc in calls]
    return out


class _Transient(Exception):
    """A failure worth another try: the gateway is down, overloaded or slow (the message says which)."""


class LLMClient:
    """Chat completions through a `Gateway`, as the harness must make them."""

    def __init__(
        self,
        gateway: Gateway,
        meter: CallMeter,
        *,
        retries: int = 3,
        backoff_s: float = 1.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.gateway = gateway
        self.meter = meter
        self.retries = retries
        self.backoff_s = backoff_s
        self.client = gateway.openai(max_retries=0, http_client=http_client)  # retries are ours

    def chat(
        self,
        ctx: CallContext,
        step: int,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        deadline: float | None = None,
        extra: dict[str, Any] | None = None,
        transcript: Transcript | None = None,
    ) -> CallResult:
        """One call (retried on transient failures), recorded in `transcript` when given. Raises
        InfraError, AgentTimeout or AgentError."""
        call = self.meter.start(ctx, step, transcript)
        body: dict[str, Any] = {"model": self.gateway.model, "messages": messages, **(extra or {})}
        if tools:
            body["tools"] = tools
            body["tool_choice"] = "auto"
        if max_tokens:
            body["max_tokens"] = max_tokens
        failures: list[str] = []  # the transient failures so far
        retrying = Retrying(
            retry=retry_if_exception_type(_Transient),
            wait=wait_exponential(multiplier=self.backoff_s),  # backoff_s, x2 each time
            # no try that would start past the deadline
            stop=stop_after_attempt(self.retries + 1)
            | (stop_never if deadline is None else stop_before_delay(deadline - time.monotonic())),
        )
        try:
            for attempt in retrying:
                with attempt:
                    raw = self._attempt(call, body, deadline, failures)
        except RetryError as exc:
            error = failures[-1]
            self.meter.failed(call, error)
            if exc.last_attempt.attempt_number <= self.retries:
                # no time to try again: a gateway that is down near the deadline is still down
                raise InfraError(f"{error} (the agent's time limit left no time to try again)") from None
            raise InfraError(error) from None
        completion = raw.parse()
        usage = completion.usage
        choice = completion.choices[0] if completion.choices else None
        assistant = assistant_message(choice.message if choice else None)
        finish_reason = choice.finish_reason if choice else None
        cost = self.meter.answered(
            call,
            raw.headers,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            message=assistant,
            finish_reason=finish_reason,
        )
        return CallResult(
            assistant=assistant,
            finish_reason=finish_reason,
            prompt_tokens=cost.prompt_tokens,
            completion_tokens=cost.completion_tokens,
            cost_usd=cost.cost_usd,
            cost_source=cost.source,
            call_id=call.call_id,
            latency_s=call.latency_s,
        )

    def _attempt(self, call: Call, body: dict[str, Any], deadline: float | None, failures: list[str]) -> Any:
        """One request. A transient failure raises `_Transient` (and is noted in `failures`); every
        other way it ends is logged here and raised as what it means for the attempt."""
        import openai  # for its errors; lazily, as in Gateway.openai (~0.5 s an oracle run never pays)

        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            if failures:  # the gateway was failing when time ran out: its failure
                self.meter.failed(call, failures[-1])
                raise InfraError(f"{failures[-1]} (then the agent's time limit ran out)")
            self._out_of_time(call)
        try:
            return self.client.chat.completions.with_raw_response.create(
                **body, extra_body={"metadata": call.metadata()}, timeout=left or 600.0
            )
        except openai.APITimeoutError as exc:
            if deadline is not None and time.monotonic() >= deadline:
                self._out_of_time(call)
            failures.append(f"timeout: {exc}")
        except openai.APIConnectionError as exc:
            failures.append(f"cannot reach the gateway at {self.gateway.base_url}: {exc}")
        except openai.APIStatusError as exc:
            code = exc.status_code
            error = f"HTTP {code} from the gateway: {_brief(exc)}"
            if not (code in (408, 409, 429) or code >= 500):
                self.meter.failed(call, error)
                if code in (401, 403, 404):
                    raise InfraError(error) from exc  # misconfigured gateway, key or model name
                raise AgentError(error) from exc
            failures.append(error)
        raise _Transient(failures[-1])

    def _out_of_time(self, call: Call) -> NoReturn:
        self.meter.failed(call, "agent time limit reached")
        raise AgentTimeout("the agent's time limit ran out waiting for the model")


def _brief(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        msg = body.get("error", body)
        if isinstance(msg, dict):
            msg = msg.get("message", msg)
        return str(msg)[:300]
    return str(exc)[:300]
