"""Is a Modal app up and answering? `probe_app` waits for `/health` (a scaled-to-zero app starts on
this first request; vLLM leaves /health open), lists its models, and asks one chat completion with
the apps' bearer token, timing it all from the first request. `smoke_test` is what the apps' `smoke`
entrypoint prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx

from goat_dagster import config
from goat_dagster.registry import VLLM_KEY_ENV
from goat_dagster.serving.backend import Log
from goat_dagster.serving.modal.spec import SECRET_VLLM
from goat_dagster.serving.probe import bearer, probe_chat, wait_healthy


@dataclass
class ProbeResult:
    healthy: bool
    health_s: float | None = None  # first request -> /health 200
    first_answer_s: float | None = None  # first request -> first chat completion answered
    attempts: int = 0
    models: list[str] = field(default_factory=list)
    error: str | None = None


def vllm_api_key() -> str:
    """The bearer token the goat-vllm-* apps require on /v1 (VLLM_API_KEY, the value `goat setup`
    stored in the goat-vllm secret)."""
    configured = config.settings().vllm_api_key
    key = configured.get_secret_value() if configured else None
    if not key:
        raise ValueError(
            f"{VLLM_KEY_ENV} is not set: the goat-vllm-* apps answer /v1 only with it. Put the value "
            f"of the {SECRET_VLLM} Modal secret in the environment (add {VLLM_KEY_ENV} to .env, then "
            "`goat setup` stores it there too)"
        )
    return key


def probe_app(
    url: str,
    served_name: str,
    *,
    timeout_s: float,
    api_key: str | None = None,
    log: Log | None = None,
    poll_s: float = 2.0,
) -> ProbeResult:
    """Wait for `<url>/health` to answer 200, then ask one tiny chat completion with `api_key` as
    bearer token. Times are measured from the first request."""
    base = url.rstrip("/")
    t0 = time.monotonic()

    def waiting(last: str, seconds: float) -> None:
        if log is not None:
            log.info(f"waiting for {base}/health ({last}; {seconds:.0f}s)")

    health = wait_healthy(f"{base}/health", timeout_s=timeout_s, poll_s=poll_s, on_wait=waiting)
    res = ProbeResult(healthy=False, attempts=health.attempts)
    if not health.ok:
        res.error = f"{base}/health did not answer 200 within {timeout_s:.0f}s (last: {health.last})"
        return res
    res.health_s = round(health.seconds, 2)
    res.models = served_models(base, api_key)
    chat = probe_chat(
        f"{base}/v1",
        served_name,
        api_key=api_key,
        timeout_s=max(t0 + timeout_s - time.monotonic(), 60),
        prompt="Reply with the single word OK.",
    )
    if not chat.ok:
        res.error = f"/health is up but a chat completion failed: {chat.error}"[:300]
        return res
    res.first_answer_s = round(time.monotonic() - t0, 2)
    res.healthy = True
    return res


def served_models(base: str, api_key: str | None) -> list[str]:
    """The model names a vLLM server answers to (`/v1/models`); empty when it will not say."""
    try:
        r = httpx.get(f"{base}/v1/models", headers=bearer(api_key), timeout=30, follow_redirects=True)
        return [m.get("id", "") for m in r.json().get("data", [])] if r.status_code == 200 else []
    except (httpx.HTTPError, ValueError, AttributeError):
        return []


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def smoke_test(url: str, served_name: str, *, prompt: str, timeout_s: float) -> str:
    """What the apps' `smoke` entrypoint prints: health, cold start, an answer and a tool call."""
    api_key = vllm_api_key()
    probe = probe_app(url, served_name, timeout_s=timeout_s, api_key=api_key)
    if not probe.healthy:
        raise SystemExit(f"FAILED {url}: {probe.error}")
    with httpx.Client(timeout=300, headers=bearer(api_key)) as http:
        chat = http.post(
            f"{url.rstrip('/')}/v1/chat/completions",
            json={"model": served_name, "messages": [{"role": "user", "content": prompt}], "max_tokens": 64},
        ).json()
        tools = http.post(
            f"{url.rstrip('/')}/v1/chat/completions",
            json={
                "model": served_name,
                "messages": [{"role": "user", "content": "What is the weather in Paris? Use the tool."}],
                "tools": [WEATHER_TOOL],
                "tool_choice": "auto",
                "temperature": 0.3,
                "max_tokens": 128,
            },
        ).json()
    calls = tools["choices"][0]["message"].get("tool_calls") or []
    return "\n".join(
        [
            f"url: {url}",
            f"models: {', '.join(probe.models)}",
            f"healthy after {probe.health_s}s, first answer after {probe.first_answer_s}s",
            f"answer: {chat['choices'][0]['message'].get('content')!r}",
            f"tool calls: {[c['function']['name'] + ' ' + c['function']['arguments'] for c in calls]}",
        ]
    )
