"""A sandbox's only way out: an HTTP relay from a unix socket to the model gateway.

A `command:` agent in a local sandbox has no network but loopback; the sandbox worker bridges a
loopback port to this relay's unix socket (mounted into the sandbox). The relay

- accepts only the attempt's own random bearer token (a key scoped to one attempt and one model:
  it is worthless outside this relay and after the attempt),
- forwards only `POST /v1/chat/completions` and `GET /v1/models` (`/v1` optional): every other
  route — other inference APIs, the proxy's admin API (`/key/generate`, `/model/new`, ...) — is a
  403 that never reaches the gateway, which would otherwise see it with the gateway's own key,
- refuses any model but the run's,
- forwards to the gateway with the gateway's key (which never enters the sandbox),
- adds `call_metadata(...)` to every chat request, so external agents are traced like the
  builtin one, and logs a `CallRecord` per call with tokens and cost, counting them in `Usage`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socketserver
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from goat_dagster.bench.gateway import CallContext, CallLog, Gateway, header_cost
from goat_dagster.tracing.schema import CallRecord, call_metadata, new_id

if TYPE_CHECKING:
    from goat_dagster.bench.agents import AgentLimits, Usage
    from goat_dagster.bench.transcript import Transcript

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


# (method, path below /v1) the relay forwards; all else is refused before it reaches the gateway
ROUTES = {("POST", "/chat/completions"), ("GET", "/models")}


def route_of(method: str, raw_path: str) -> str | None:
    """The gateway path (below /v1) for an allowed request, else None."""
    path = urlsplit(raw_path).path.rstrip("/")
    if path.startswith("/v1/"):
        path = path[3:]
    return path if (method, path) in ROUTES else None


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    relay: GatewayRelay


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        return "sandbox"

    def do_GET(self) -> None:
        self.server.relay.handle(self, "GET")

    def do_POST(self) -> None:
        self.server.relay.handle(self, "POST")

    def do_PUT(self) -> None:
        self.server.relay.handle(self, "PUT")

    def do_PATCH(self) -> None:
        self.server.relay.handle(self, "PATCH")

    def do_DELETE(self) -> None:
        self.server.relay.handle(self, "DELETE")

    def do_OPTIONS(self) -> None:
        self.server.relay.handle(self, "OPTIONS")

    def do_HEAD(self) -> None:
        self.server.relay.handle(self, "HEAD")


class GatewayRelay:
    def __init__(self, socket_path: Path, gateway: Gateway, log: CallLog, on_cost: Any = None) -> None:
        self.socket_path = Path(socket_path)
        self.gateway = gateway
        self.log = log
        self.on_cost = on_cost
        self.lock = threading.Lock()
        self.token: str | None = None
        self.call: CallContext | None = None
        self.usage: Usage | None = None
        self.limits: AgentLimits | None = None
        self.transcript: Transcript | None = None
        self.http = httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0))
        if self.socket_path.exists():
            self.socket_path.unlink()
        self.server = _Server(str(self.socket_path), _Handler)
        self.server.relay = self
        os.chmod(self.socket_path, 0o666)  # the sandbox user must be able to connect
        self.thread = threading.Thread(target=self.server.serve_forever, name="gateway-relay", daemon=True)
        self.thread.start()

    def activate(
        self,
        token: str,
        call: CallContext,
        usage: Usage,
        limits: AgentLimits,
        transcript: Transcript | None = None,
    ) -> None:
        with self.lock:
            self.token, self.call, self.usage, self.limits = token, call, usage, limits
            self.transcript = transcript

    def deactivate(self) -> None:
        with self.lock:
            self.token = self.call = self.usage = self.limits = self.transcript = None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.http.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    # ---- one request ---------------------------------------------------------------------

    def _reply(self, h: _Handler, code: int, obj: dict[str, Any]) -> None:
        body = json.dumps(obj).encode()
        h.send_response(code)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def handle(self, h: _Handler, method: str) -> None:
        with self.lock:
            token, call, usage, limits = self.token, self.call, self.usage, self.limits
            transcript = self.transcript
        auth = h.headers.get("authorization", "")
        length = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(length) if length else b""
        if token is None or call is None or usage is None or auth != f"Bearer {token}":
            self._reply(
                h, 401, {"error": {"message": "invalid or expired key for this sandbox", "type": "auth"}}
            )
            return
        path = route_of(method, h.path)
        if path is None:
            self._reply(
                h,
                403,
                {
                    "error": {
                        "message": f"{method} {urlsplit(h.path).path} is not allowed from a sandbox; "
                        "only POST /v1/chat/completions and GET /v1/models",
                        "type": "permission",
                    }
                },
            )
            return
        url = self.gateway.base_url.rstrip("/") + path
        is_chat = path == "/chat/completions"
        body_obj: dict[str, Any] | None = None
        if is_chat:
            try:
                body_obj = json.loads(raw or b"{}")
            except ValueError:
                self._reply(
                    h, 400, {"error": {"message": "request body is not JSON", "type": "invalid_request"}}
                )
                return
            if body_obj.get("model") not in (None, self.gateway.model):
                self._reply(
                    h,
                    403,
                    {
                        "error": {
                            "message": f"this key may only use model {self.gateway.model!r}",
                            "type": "permission",
                        }
                    },
                )
                return
            if limits is not None and usage.steps >= limits.max_steps:
                self._reply(
                    h,
                    429,
                    {"error": {"message": f"step limit ({limits.max_steps}) reached", "type": "limit"}},
                )
                return
            body_obj["model"] = self.gateway.model
            call_id = new_id()
            body_obj["metadata"] = call_metadata(
                run_id=call.run_id,
                suite=call.suite,
                model=call.model,
                task_id=call.task_id,
                epoch=call.epoch,
                trace_id=call.trace_id,
                call_id=call_id,
                step=usage.steps + 1,
            )
            request = transcript.request_messages(body_obj.get("messages")) if transcript else None
            stream = bool(body_obj.get("stream"))
            if stream:
                body_obj.setdefault("stream_options", {"include_usage": True})
            raw = json.dumps(body_obj).encode()
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
        headers["authorization"] = f"Bearer {self.gateway.api_key.get_secret_value()}"
        started = datetime.now(UTC)
        t0 = time.monotonic()
        try:
            with self.http.stream(method, url, content=raw or None, headers=headers) as resp:
                h.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in _HOP:
                        h.send_header(k, v)
                h.send_header("transfer-encoding", "chunked")
                h.end_headers()
                collected = bytearray()
                for chunk in resp.iter_bytes():
                    if is_chat and len(collected) < 4 << 20:
                        collected += chunk
                    h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    h.wfile.flush()
                h.wfile.write(b"0\r\n\r\n")
                status, resp_headers = resp.status_code, resp.headers
        except httpx.HTTPError as exc:
            if is_chat:
                usage.gateway_failed(f"gateway unreachable: {exc}")
                self._record(
                    call,
                    usage,
                    call_id,
                    started,
                    ok=False,
                    error=f"gateway unreachable: {exc}",
                    transcript=transcript,
                    request=request,
                )
            self._reply(h, 502, {"error": {"message": f"gateway unreachable: {exc}", "type": "gateway"}})
            return
        if not is_chat:
            return
        if status >= 500 or status == 429:
            usage.gateway_failed(f"HTTP {status} from the gateway")
        if status >= 400:
            self._record(
                call,
                usage,
                call_id,
                started,
                ok=False,
                error=f"HTTP {status} from the gateway",
                transcript=transcript,
                request=request,
                answer=bytes(collected[:2000]),
            )
            return
        pt, ct = _usage_of(bytes(collected))
        cost = header_cost(resp_headers)
        source = "gateway"
        if cost is None:
            cost, source = self.gateway.registry_cost(pt, ct), "registry"
        usage.add_call(pt, ct, cost)
        if self.on_cost is not None:
            self.on_cost(cost)
        self._record(
            call,
            usage,
            call_id,
            started,
            ok=True,
            prompt_tokens=pt,
            completion_tokens=ct,
            cost_usd=cost,
            cost_source=source,
            latency_s=round(time.monotonic() - t0, 4),
            transcript=transcript,
            request=request,
            answer=bytes(collected),
        )

    def _record(
        self,
        call: CallContext,
        usage: Usage,
        call_id: str,
        started: datetime,
        *,
        ok: bool,
        error: str | None = None,
        transcript: Transcript | None = None,
        request: list[Any] | None = None,
        answer: bytes = b"",
        **extra: Any,
    ) -> None:
        """One call in the run's call log and, with the agent's messages and the answer, in the
        attempt's transcript (`answer`: the completion, or a failed call's error body)."""
        step = usage.steps + (0 if ok else 1)
        if transcript is not None:
            if ok:
                message, finish = assistant_of(answer)
                transcript.call(
                    step, call_id=call_id, message=message, request=request, finish_reason=finish, **extra
                )
            else:
                detail = f"{error}: {answer.decode('utf-8', 'replace')}" if answer else error
                transcript.call(step, call_id=call_id, ok=False, error=detail, request=request)
        self.log.write(
            CallRecord(
                run_id=call.run_id,
                suite=call.suite,
                model=call.model,
                task_id=call.task_id,
                epoch=call.epoch,
                step=step,
                trace_id=call.trace_id,
                call_id=call_id,
                started_at=started,
                finished_at=datetime.now(UTC),
                ok=ok,
                error=error,
            ),
            **extra,
        )


def _usage_of(body: bytes) -> tuple[int, int]:
    """Token usage from a JSON completion or from the last SSE chunk that carries it."""
    text = body.decode("utf-8", "replace").strip()
    candidates: list[str] = []
    if text.startswith("{"):
        candidates.append(text)
    else:
        candidates = [ln[5:].strip() for ln in text.splitlines() if ln.startswith("data:")]
    pt = ct = 0
    for c in candidates:
        try:
            obj = json.loads(c)
        except ValueError:
            continue
        u = obj.get("usage") if isinstance(obj, dict) else None
        if u:
            pt, ct = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    return pt, ct


def assistant_of(body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The assistant message and finish reason of a completion: a JSON body, or the SSE chunks of a
    stream put back together (text, and tool calls by index)."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            choice = (json.loads(text).get("choices") or [{}])[0]
        except (ValueError, AttributeError, IndexError):
            return None, None
        return choice.get("message"), choice.get("finish_reason")
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    for ln in text.splitlines():
        if not ln.startswith("data:"):
            continue
        try:
            chunk = json.loads(ln[5:].strip())
            choice = (chunk.get("choices") or [{}])[0]
        except (ValueError, AttributeError, IndexError):
            continue
        delta = choice.get("delta") or {}
        finish = choice.get("finish_reason") or finish
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
