"""The harness's LLM client: chat completions through the model gateway (the LiteLLM proxy).

`Gateway` says where to send requests and under which model name; `resolve_gateway(model_key)`
builds one from the registry and the environment. `LLMClient.chat` makes one chat-completion
call the way every harness call from the host must be made: with `call_metadata(...)` in the request body (the
proxy turns it into trace ids, tags and sessions), retried with backoff when the gateway is down
or overloaded, its cost taken from LiteLLM's `x-litellm-response-cost` header (registry pricing x
tokens when absent), and a `CallRecord` appended to `$GOAT_HOME/runs/<run_id>/calls.jsonl`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from goat_dagster import config
from goat_dagster.bench.calls import CallContext, CallLog, header_cost
from goat_dagster.bench.errors import AgentError, AgentTimeout, InfraError
from goat_dagster.registry import load_registry
from goat_dagster.serving.gateway import client_for
from goat_dagster.tracing.schema import CallRecord, call_metadata, new_id


class Gateway(BaseModel):
    """An OpenAI-compatible endpoint and the model name to ask it for."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    api_key: SecretStr
    model: str
    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    agent_key: SecretStr | None = None  # a scoped key a sandbox may hold (cloud sandboxes only)

    def registry_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6

    @property
    def on_loopback(self) -> bool:
        """Whether the gateway is on this machine's loopback (out of a cloud sandbox's reach)."""
        return (urlsplit(self.base_url).hostname or "") in ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def resolve_gateway(model_key: str, registry: Any = None, client: Any = None) -> Gateway:
    """The gateway for a registry model.

    GOAT_LLM_BASE_URL (+ GOAT_LLM_API_KEY) names one explicitly; otherwise it is the LiteLLM proxy
    of `serving.gateway` (the managed one on 127.0.0.1:4000, or GOAT_LITELLM_URL) with its master
    key — host-side only: sandboxes get a relay or a scoped key, never this one. The model name is
    the registry's `gateway_name` (`<key>-local` for self-hosted models). `client` (a
    `serving.gateway.GatewayClient`, e.g. from the Dagster `litellm` resource) names the proxy
    explicitly.
    """
    entry = (registry or load_registry()).get(model_key)
    s = config.settings()
    agent_key = s.llm_agent_key.get_secret_value() if s.llm_agent_key else None
    explicit = s.llm_base_url
    if client is None and explicit:
        base_url, key = explicit, s.llm_api_key.get_secret_value() if s.llm_api_key else "sk-goat-local"
    else:
        if client is None:
            client = client_for(entry, registry=registry)
        base_url, key = client.base_url, client.api_key
    return Gateway(
        base_url=base_url,
        api_key=SecretStr(key),
        model=entry.gateway_name,
        input_per_mtok=entry.pricing.input_per_mtok,
        output_per_mtok=entry.pricing.output_per_mtok,
        agent_key=SecretStr(agent_key) if agent_key else None,
    )


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
    message: Any  # openai ChatCompletionMessage
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cost_source: str  # gateway | registry
    call_id: str
    latency_s: float


class LLMClient:
    """Chat completions through a `Gateway`, as the harness must make them."""

    def __init__(
        self,
        gateway: Gateway,
        log: CallLog,
        *,
        retries: int = 3,
        backoff_s: float = 1.0,
        on_cost: Callable[[float], None] | None = None,
        http_client: Any = None,
    ) -> None:
        from openai import OpenAI  # imported here: `goat run --agent oracle` never pays for it

        self.gateway = gateway
        self.log = log
        self.retries = retries
        self.backoff_s = backoff_s
        self.on_cost = on_cost
        self.client = OpenAI(
            base_url=gateway.base_url,
            api_key=gateway.api_key.get_secret_value(),
            max_retries=0,
            http_client=http_client,
        )

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
    ) -> CallResult:
        """One call (retried on transient failures). Raises InfraError, AgentTimeout or AgentError."""
        import openai

        call_id = new_id()
        metadata = call_metadata(
            run_id=ctx.run_id,
            suite=ctx.suite,
            model=ctx.model,
            task_id=ctx.task_id,
            epoch=ctx.epoch,
            trace_id=ctx.trace_id,
            call_id=call_id,
            step=step,
        )
        body: dict[str, Any] = {"model": self.gateway.model, "messages": messages}
        if tools:
            body["tools"] = tools
            body["tool_choice"] = "auto"
        if max_tokens:
            body["max_tokens"] = max_tokens
        started = datetime.now(UTC)
        t0 = time.monotonic()
        attempt = 0
        error: str | None = None  # the last transient failure, if any
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                if error is not None:  # the gateway was failing when time ran out: its failure
                    self._record(ctx, step, call_id, started, ok=False, error=error)
                    raise InfraError(f"{error} (then the agent's time limit ran out)")
                self._record(ctx, step, call_id, started, ok=False, error="agent time limit reached")
                raise AgentTimeout("the agent's time limit ran out waiting for the model")
            try:
                raw = self.client.chat.completions.with_raw_response.create(
                    **body, **(extra or {}), extra_body={"metadata": metadata}, timeout=left or 600.0
                )
                completion = raw.parse()
                break
            except openai.APITimeoutError as exc:
                if deadline is not None and time.monotonic() >= deadline:
                    self._record(ctx, step, call_id, started, ok=False, error="agent time limit reached")
                    raise AgentTimeout("the agent's time limit ran out waiting for the model") from exc
                error, transient = f"timeout: {exc}", True
            except openai.APIConnectionError as exc:
                error, transient = f"cannot reach the gateway at {self.gateway.base_url}: {exc}", True
            except openai.APIStatusError as exc:
                code = exc.status_code
                error = f"HTTP {code} from the gateway: {_brief(exc)}"
                transient = code in (408, 409, 429) or code >= 500
                if not transient:
                    self._record(ctx, step, call_id, started, ok=False, error=error)
                    if code in (401, 403, 404):
                        raise InfraError(error) from exc  # misconfigured gateway, key or model name
                    raise AgentError(error) from exc
            if attempt >= self.retries:
                self._record(ctx, step, call_id, started, ok=False, error=error)
                raise InfraError(error)
            pause = self.backoff_s * (2**attempt)
            if deadline is not None and time.monotonic() + pause >= deadline:
                # no time to try again: a gateway that is down near the deadline is still down
                self._record(ctx, step, call_id, started, ok=False, error=error)
                raise InfraError(f"{error} (the agent's time limit left no time to try again)")
            time.sleep(pause)
            attempt += 1

        usage = completion.usage
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = header_cost(raw.headers)
        source = "gateway"
        if cost is None:
            cost, source = self.gateway.registry_cost(prompt_tokens, completion_tokens), "registry"
        if self.on_cost is not None:
            self.on_cost(cost)
        choice = completion.choices[0] if completion.choices else None
        self._record(
            ctx,
            step,
            call_id,
            started,
            ok=True,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost,
            cost_source=source,
        )
        return CallResult(
            message=choice.message if choice else None,
            finish_reason=choice.finish_reason if choice else None,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost,
            cost_source=source,
            call_id=call_id,
            latency_s=time.monotonic() - t0,
        )

    def _record(
        self,
        ctx: CallContext,
        step: int,
        call_id: str,
        started: datetime,
        *,
        ok: bool,
        error: str | None = None,
        **extra: Any,
    ) -> None:
        record = CallRecord(
            run_id=ctx.run_id,
            suite=ctx.suite,
            model=ctx.model,
            task_id=ctx.task_id,
            epoch=ctx.epoch,
            step=step,
            trace_id=ctx.trace_id,
            call_id=call_id,
            started_at=started,
            finished_at=datetime.now(UTC),
            ok=ok,
            error=error,
        )
        self.log.write(record, **extra)


def _brief(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        msg = body.get("error", body)
        if isinstance(msg, dict):
            msg = msg.get("message", msg)
        return str(msg)[:300]
    return str(exc)[:300]
