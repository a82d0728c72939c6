"""Does an endpoint answer? The one way goat asks: a real chat completion (`probe_chat`), after
waiting for a server that is still starting where one may be (`wait_healthy`: a scaled-to-zero
Modal app starts on the first request and answers `/health` once vLLM is up).

The serving backends probe their endpoints with it, `goat doctor` its call through the proxy, and
the Modal apps' smoke test its first answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

PROMPT = "Reply with one word: ready"


def bearer(api_key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


def error_message(resp: httpx.Response) -> str:
    """`HTTP <code> <type>: <message>` of an OpenAI-style error answer (or its text)."""
    try:
        err = resp.json().get("error", {})
        return f"HTTP {resp.status_code} {err.get('type', '')}: {err.get('message', resp.text[:300])}"
    except (ValueError, AttributeError):
        return f"HTTP {resp.status_code}: {resp.text[:300]}"


@dataclass
class ChatProbe:
    """The outcome of one real chat completion against an endpoint."""

    ok: bool
    url: str
    model: str
    status: int | None = None  # None: no HTTP answer at all
    latency_s: float | None = None
    reply: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_metadata(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}, "")}


def probe_chat(
    base_url: str,
    model: str,
    *,
    api_key: str | None = None,
    timeout_s: float = 120.0,
    max_tokens: int = 8,
    prompt: str = PROMPT,
    metadata: Mapping[str, Any] | None = None,
) -> ChatProbe:
    """POST {base_url}/chat/completions with a one-line prompt; ok when a choice comes back.
    `metadata` goes in the request body (goat's call metadata, for the proxy's trace)."""
    url = f"{base_url.rstrip('/')}/chat/completions"
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    if metadata is not None:
        body["metadata"] = dict(metadata)
    t0 = time.monotonic()
    try:  # redirects: a Modal web endpoint answers a long request with a 303 to its result
        resp = httpx.post(url, json=body, headers=bearer(api_key), timeout=timeout_s, follow_redirects=True)
    except httpx.HTTPError as exc:
        return ChatProbe(False, url, model, error=f"{type(exc).__name__}: {exc}")
    latency = time.monotonic() - t0
    if resp.status_code != 200:
        return ChatProbe(False, url, model, resp.status_code, latency, error=error_message(resp))
    try:
        data = resp.json()
        message = data["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        return ChatProbe(
            False, url, model, resp.status_code, latency, error=f"not a chat completion: {resp.text[:200]}"
        )
    reply = (message.get("content") or "").strip() or str(message.get("tool_calls") or "")
    return ChatProbe(True, url, model, resp.status_code, latency, reply[:200], data.get("usage") or {})


@dataclass
class HealthWait:
    ok: bool
    seconds: float
    attempts: int
    last: str  # the last answer (or error) seen


def wait_healthy(
    url: str,
    *,
    timeout_s: float,
    poll_s: float = 2.0,
    on_wait: Callable[[str, float], None] | None = None,
) -> HealthWait:
    """GET `url` until it answers 200 or `timeout_s` passes; `on_wait(last, seconds)` now and then."""
    t0 = time.monotonic()
    state = {"attempts": 0, "last": "no answer"}

    def attempt() -> bool:
        state["attempts"] += 1
        remaining = max(timeout_s - (time.monotonic() - t0), 1.0)
        try:  # one request may itself wait minutes: the first one wakes a scaled-to-zero app
            r = httpx.get(
                url, timeout=httpx.Timeout(min(150.0, remaining), connect=10.0), follow_redirects=True
            )
            if r.status_code == 200:
                return True
            state["last"] = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            state["last"] = f"{type(exc).__name__}: {exc}"[:200]
        if on_wait and state["attempts"] % 15 == 1:
            on_wait(str(state["last"]), time.monotonic() - t0)
        return False

    retrying = Retrying(
        stop=stop_after_delay(timeout_s), wait=wait_fixed(poll_s), retry=retry_if_result(lambda ok: not ok)
    )
    try:
        ok = bool(retrying(attempt))
    except RetryError:
        ok = False
    return HealthWait(ok, time.monotonic() - t0, int(state["attempts"]), str(state["last"]))
