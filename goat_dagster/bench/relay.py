"""A sandbox's only way out: an HTTP relay from a unix socket to the model gateway.

A `command:` agent in a local sandbox has no network but loopback; the sandbox worker bridges a
loopback port to this relay's unix socket (mounted into the sandbox). The relay (a Starlette app
served by uvicorn on that socket, forwarding with httpx)

- accepts only the attempt's own random bearer token (a key scoped to one attempt and one model:
  it is worthless outside this relay and after the attempt),
- forwards only `POST /v1/chat/completions` and `GET /v1/models` (`/v1` optional): every other
  route — other inference APIs, the proxy's admin API (`/key/generate`, `/model/new`, ...) — is a
  403 that never reaches the gateway, which would otherwise see it with the gateway's own key,
- refuses any model but the run's,
- forwards to the gateway with the gateway's key (which never enters the sandbox),
- meters every chat request through the run's `CallMeter` (calls.py): `call_metadata(...)` added
  to it, so external agents are traced like the builtin one, a `CallRecord` with tokens and cost,
  counted in the attempt's `Usage`, and the call in the attempt's transcript: the messages of the
  request the transcript has not shown yet, and the answer (`assistant_of`: a JSON completion or
  the chunks of a stream put back together).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Router, request_response

from goat_dagster.bench.calls import Call, CallContext, CallMeter
from goat_dagster.bench.errors import InfraError
from goat_dagster.bench.transcript import Transcript
from goat_dagster.bench.usage import AgentLimits, Usage
from goat_dagster.routing.gateway import Gateway

# headers that belong to one hop (or carry the caller's key): never passed on either way
_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
    "authorization",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
}
USAGE_SCAN_BYTES = 4 << 20  # how much of an answer is kept to find its token usage

# (method, path below /v1) the relay forwards; all else is refused before it reaches the gateway
ROUTES = {("POST", "/chat/completions"), ("GET", "/models")}


def route_of(method: str, raw_path: str) -> str | None:
    """The gateway path (below /v1) for an allowed request, else None."""
    path = urlsplit(raw_path).path.rstrip("/")
    if path.startswith("/v1/"):
        path = path[3:]
    return path if (method, path) in ROUTES else None


def _error(code: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=code)


@dataclass(frozen=True)
class _Attempt:
    """Who may use the relay right now: one attempt's token, identity, usage, limits, transcript."""

    token: str
    call: CallContext
    usage: Usage
    limits: AgentLimits
    transcript: Transcript | None = None


class GatewayRelay:
    """The relay of one sandbox slot, serving one attempt at a time (`activate` / `deactivate`)."""

    def __init__(
        self, socket_path: Path, gateway: Gateway, meter: CallMeter, *, start_timeout_s: float = 10.0
    ):
        self.socket_path = Path(socket_path)
        self.gateway = gateway
        self.meter = meter
        self._lock = threading.Lock()
        self._attempt: _Attempt | None = None
        self._http: httpx.AsyncClient | None = None
        self.socket_path.unlink(missing_ok=True)
        # no routes: every request, whatever its method and path, comes to `_handle` to be judged
        app = Router(default=request_response(self._handle), lifespan=self._lifespan)
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                uds=str(self.socket_path),
                log_config=None,  # the host's logging stays as it is
                log_level="warning",
                access_log=False,
                server_header=False,
                timeout_graceful_shutdown=2,
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="gateway-relay", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + start_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise InfraError(f"the gateway relay on {self.socket_path} did not start")
            time.sleep(0.01)
        self.socket_path.chmod(0o666)  # the sandbox user must be able to connect

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Router) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0)) as http:
            self._http = http
            yield

    def activate(
        self,
        token: str,
        call: CallContext,
        usage: Usage,
        limits: AgentLimits,
        transcript: Transcript | None = None,
    ) -> None:
        with self._lock:
            self._attempt = _Attempt(token, call, usage, limits, transcript)

    def deactivate(self) -> None:
        with self._lock:
            self._attempt = None

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket_path.unlink(missing_ok=True)

    # ---- one request ---------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        with self._lock:
            attempt = self._attempt
        method = request.method
        raw_path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        raw = await request.body()
        if attempt is None or request.headers.get("authorization", "") != f"Bearer {attempt.token}":
            return _error(401, "auth", "invalid or expired key for this sandbox")
        path = route_of(method, raw_path)
        if path is None:
            return _error(
                403,
                "permission",
                f"{method} {urlsplit(raw_path).path} is not allowed from a sandbox; "
                "only POST /v1/chat/completions and GET /v1/models",
            )
        call: Call | None = None
        if path == "/chat/completions":
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return _error(400, "invalid_request", "request body is not JSON")
            if body.get("model") not in (None, self.gateway.model):
                return _error(403, "permission", f"this key may only use model {self.gateway.model!r}")
            if attempt.usage.steps >= attempt.limits.max_steps:
                return _error(429, "limit", f"step limit ({attempt.limits.max_steps}) reached")
            transcript = attempt.transcript
            new_messages = transcript.request_messages(body.get("messages")) if transcript else None
            call = self.meter.start(attempt.call, attempt.usage.steps + 1, transcript, new_messages)
            body["model"] = self.gateway.model
            body["metadata"] = call.metadata()
            if body.get("stream"):  # usage at the end of the stream, or the call is not metered
                options = body.get("stream_options")
                body["stream_options"] = {
                    **(options if isinstance(options, dict) else {}),
                    "include_usage": True,
                }
            raw = json.dumps(body).encode()
        return await self._forward(request, method, path, raw, attempt, call)

    async def _forward(
        self, request: Request, method: str, path: str, raw: bytes, attempt: _Attempt, call: Call | None
    ) -> Response:
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers["authorization"] = f"Bearer {self.gateway.api_key.get_secret_value()}"
        upstream = self._http.build_request(
            method, self.gateway.base_url.rstrip("/") + path, content=raw or None, headers=headers
        )
        try:
            resp = await self._http.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            if call is not None:
                self._failed(call, attempt, f"gateway unreachable: {exc}")
            return _error(502, "gateway", f"gateway unreachable: {exc}")
        return StreamingResponse(
            self._stream(resp, attempt, call),
            status_code=resp.status_code,
            headers={k: v for k, v in resp.headers.items() if k.lower() not in _HOP},
        )

    async def _stream(
        self, resp: httpx.Response, attempt: _Attempt, call: Call | None
    ) -> AsyncIterator[bytes]:
        """The gateway's answer as it comes; a chat call is metered once it is whole."""
        kept = bytearray()
        try:
            async for chunk in resp.aiter_bytes():
                if call is not None and len(kept) < USAGE_SCAN_BYTES:
                    kept += chunk
                yield chunk
        except httpx.HTTPError as exc:
            if call is not None:
                self._failed(call, attempt, f"gateway broke off: {exc}")
                call = None
            raise
        finally:
            await resp.aclose()
        if call is not None:
            self._account(resp, bytes(kept), attempt, call)

    def _account(self, resp: httpx.Response, body: bytes, attempt: _Attempt, call: Call) -> None:
        status = resp.status_code
        if status >= 500 or status == 429:
            attempt.usage.gateway_failed(f"HTTP {status} from the gateway")
        if status >= 400:
            answer = body[:2000].decode("utf-8", "replace")
            self.meter.failed(call, f"HTTP {status} from the gateway", answer=answer)
            return
        pt, ct = usage_of(body)
        message, finish = assistant_of(body)
        cost = self.meter.answered(call, resp.headers, pt, ct, message=message, finish_reason=finish)
        attempt.usage.add_call(pt, ct, cost.cost_usd)

    def _failed(self, call: Call, attempt: _Attempt, error: str) -> None:
        attempt.usage.gateway_failed(error)
        self.meter.failed(call, error)


def usage_of(body: bytes) -> tuple[int, int]:
    """Token usage from a JSON completion or from the last SSE chunk that carries it. A stream that
    carries none (a gateway that ignores `stream_options.include_usage`) is counted otherwise: one
    completion token per chunk with generated text or tool-call arguments, which is how llama.cpp
    streams (the prompt tokens stay unknown: 0)."""
    text = body.decode("utf-8", "replace").strip()
    candidates: list[str] = []
    if text.startswith("{"):
        candidates.append(text)
    else:
        candidates = [ln[5:].strip() for ln in text.splitlines() if ln.startswith("data:")]
    pt = ct = generated = 0
    for c in candidates:
        try:
            obj = json.loads(c)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        u = obj.get("usage")
        if u:
            pt, ct = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
        for choice in obj.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls")):
                generated += 1
    return (pt, ct) if ct else (pt, generated)


def assistant_of(body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The assistant message and finish reason of a completion: a JSON body, or the SSE chunks of a
    stream put back together (text, and tool calls by index)."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            choice = (json.loads(text).get("choices") or [{}])[0]
            return choice.get("message"), choice.get("finish_reason")
        except (ValueError, AttributeError, IndexError):
            return None, None
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    for ln in text.splitlines():
        if not ln.startswith("data:"):
            continue
        try:
            choice = (json.loads(ln[5:].strip()).get("choices") or [{}])[0]
            delta = choice.get("delta") or {}
            finish = choice.get("finish_reason") or finish
        except (ValueError, AttributeError, IndexError):
            continue
        if delta.get("content"):
            content.append(delta["content"])
        for tc in delta.get("tool_calls") or []:
            slot = calls.setdefault(
                int(tc.get("index") or 0),
                {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
            )
            slot["id"] = tc.get("id") or slot["id"]
            fn = tc.get("function") or {}
            slot["function"]["name"] += fn.get("name") or ""
            slot["function"]["arguments"] += fn.get("arguments") or ""
    if not content and not calls and finish is None:
        return None, None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message, finish


__all__ = ["ROUTES", "GatewayRelay", "assistant_of", "route_of", "usage_of"]
