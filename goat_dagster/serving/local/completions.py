"""The OpenAI-compatible API of `goat serve`: chat completions (streamed as SSE or not) forwarded to
the model's worker, and the list of local models.

The request body reaches llama.cpp byte for byte (tools, `tool_choice`, `min_tokens`, ...): it is
read raw, only its `model`, `stream` and `stream_options` looked at (llama-cpp-python ignores the
last; the worker ends a stream with usage when it is asked to: `stream_usage.py`). A worker found
dead before it answered is restarted and the request sent once more (it had not been served),
unless it died of SIGILL, which a new worker would too (the 502 then says why,
`engine_build.sigill_cause`); a stream cut mid-way ends with an SSE error event.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from goat_dagster.serving.local.api import ERROR_RESPONSES, Manager
from goat_dagster.serving.local.errors import ServeError, error_body, normalize_error
from goat_dagster.serving.local.instances import Lease, ModelInstance
from goat_dagster.serving.local.manager import ModelManager
from goat_dagster.serving.local.stream_usage import INCLUDE_USAGE_HEADER, wants_usage

log = logging.getLogger("goat.serve")
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
# documented, not validated: the body goes to llama.cpp as it came
CHAT_REQUEST = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["model", "messages"],
                "properties": {
                    "model": {"type": "string", "description": "a local model's served name"},
                    "messages": {"type": "array", "items": {"type": "object"}},
                    "stream": {"type": "boolean", "default": False},
                    "max_tokens": {"type": "integer"},
                    "tools": {"type": "array", "items": {"type": "object"}},
                },
                "additionalProperties": True,
            }
        }
    },
}


router = APIRouter(prefix="/v1", tags=["openai"])


@router.post(
    "/chat/completions",
    summary="A chat completion from a local model (SSE when `stream` is true)",
    openapi_extra={"requestBody": CHAT_REQUEST},
    responses=ERROR_RESPONSES,
)
async def chat_completions(request: Request, manager: Manager) -> Response:
    received = time.monotonic()
    body = await request.body()
    try:
        payload = json.loads(body)
    except ValueError:
        raise ServeError(400, "invalid_request_error", "the request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ServeError(400, "invalid_request_error", "the request body must be a JSON object")
    forward = await open_forward(manager, payload.get("model"), body, received, wants_usage(payload))
    return await (forward.stream() if payload.get("stream") else forward.complete())


async def open_forward(
    manager: ModelManager, model: Any, body: bytes, received: float, include_usage: bool = False
) -> Forward:
    """A request's turn on its model's worker (queued, the model loaded): the `Forward` that sends
    `body` there. Routes other than the OpenAI one (`infer.py`) come in here too."""
    inst = manager.instance(manager.resolve(model))
    deadline = received + manager.settings.request_timeout_s
    try:
        lease = await manager.acquire(inst, deadline)
    except ServeError as exc:
        manager.metrics.requests.labels(inst.name, str(exc.status)).inc()
        raise
    return Forward(manager, inst, lease, body, received, deadline, include_usage=include_usage)


@router.get("/models", summary="The local models of models.yaml, with their state")
async def models(manager: Manager) -> JSONResponse:
    data: list[dict[str, Any]] = []
    for m in manager.local_models():
        inst = manager.instances.get(m.key)
        data.append(
            {
                "id": m.served_model,
                "object": "model",
                "created": 0,
                "owned_by": "goat-serve",
                "goat": {
                    "key": m.key,
                    "engine": m.engine,
                    "state": inst.state if inst else "stopped",
                    "context_length": m.context_length,
                },
            }
        )
    return JSONResponse({"object": "list", "data": data})


class Forward:
    """One request forwarded to the worker its lease holds; the lease is released when it ends."""

    def __init__(
        self,
        manager: ModelManager,
        inst: ModelInstance,
        lease: Lease,
        body: bytes,
        received: float,
        deadline: float,
        include_usage: bool = False,
    ) -> None:
        self.manager, self.inst, self.lease = manager, inst, lease
        self.body, self.received, self.deadline = body, received, deadline
        self.metrics = manager.metrics
        self.include_usage = include_usage  # stream_options.include_usage, which the worker cannot see

    async def send(self, stream: bool) -> aiohttp.ClientResponse:
        """POST to the worker (the response's headers are in; its body is not read). A worker
        found dead before it answered (killed, OOM) is restarted and the request sent once more."""
        headers = {"content-type": "application/json"}
        if stream:
            headers["accept"] = "text/event-stream"
            if self.include_usage:
                headers[INCLUDE_USAGE_HEADER] = "1"
        for attempt in (1, 2):
            try:
                return await self.lease.client.post(
                    "/v1/chat/completions",
                    data=self.body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=max(0.001, self.deadline - time.monotonic())),
                )
            except TimeoutError:
                raise self.timed_out() from None
            except aiohttp.ClientError as exc:
                if attempt == 2 or not await self.manager.worker_died(self.inst):
                    raise await self.worker_lost(exc) from None
                if (self.inst.last_crash or {}).get("cause"):  # SIGILL: a new worker would die the same
                    raise await self.worker_lost(exc) from None
                log.warning(
                    "%s: the worker died before answering; restarting it for this request", self.inst.name
                )
                await self.manager.ensure_loaded(self.inst, self.deadline)
        raise AssertionError("unreachable")

    def timed_out(self) -> ServeError:
        self.metrics.requests.labels(self.inst.name, "504").inc()
        timeout = self.manager.settings.request_timeout_s
        return ServeError(504, "timeout", f"model {self.inst.name!r}: no answer within {timeout:g}s")

    async def worker_lost(self, exc: Exception, count: bool = True) -> ServeError:
        died = await self.manager.worker_died(self.inst)
        if count:
            self.metrics.requests.labels(self.inst.name, "502").inc()
        if died:
            return ServeError(
                502,
                "worker_crashed",
                f"model {self.inst.name!r}: the worker died during the request ({self.inst.last_error}); "
                "it is restarted on the next request",
            )
        return ServeError(502, "worker_error", f"model {self.inst.name!r}: {type(exc).__name__}: {exc}")

    async def complete(self) -> Response:
        try:
            resp = await self.send(stream=False)
            try:
                content = await resp.read()
            except TimeoutError:
                raise self.timed_out() from None
            except aiohttp.ClientError as exc:
                raise await self.worker_lost(exc) from None
            finally:
                resp.release()
        except ServeError as exc:
            if exc.type == "timeout" and self.inst.state == "ready":  # the worker is still generating it
                await self.manager.abort_generation(self.inst)
            raise
        finally:
            self.lease.release()
        self.metrics.requests.labels(self.inst.name, str(resp.status)).inc()
        self.metrics.latency.labels(self.inst.name).observe(time.monotonic() - self.received)
        if resp.status >= 400:
            return JSONResponse(normalize_error(resp.status, content), resp.status)
        return Response(content, resp.status, media_type="application/json")

    async def stream(
        self,
        adapt: Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]] | None = None,
        media_type: str = "text/event-stream",
    ) -> Response:
        """The worker's SSE stream relayed as it comes (`adapt` may turn it into another format,
        `infer.py`'s NDJSON), or its error answer."""
        try:
            resp = await self.send(stream=True)
        except BaseException:
            self.lease.release()
            raise
        if resp.status >= 400:
            try:
                content = await resp.read()
            except (TimeoutError, aiohttp.ClientError):
                content = b""
            finally:
                resp.release()
                self.lease.release()
            self.metrics.requests.labels(self.inst.name, str(resp.status)).inc()
            return JSONResponse(normalize_error(resp.status, content), resp.status)
        chunks = self.relay(resp)
        body = adapt(chunks) if adapt is not None else chunks
        return StreamingResponse(body, 200, headers=_SSE_HEADERS, media_type=media_type)

    async def relay(self, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        name, first, code = self.inst.name, True, "200"
        try:
            async for chunk in resp.content.iter_any():
                if first:
                    self.metrics.first_byte.labels(name).observe(time.monotonic() - self.received)
                    first = False
                yield chunk
        except TimeoutError:
            code = "504"
            yield sse_error(f"model {name!r}: the stream ran past the request timeout", "timeout", 504)
        except aiohttp.ClientError as exc:
            code = "502"  # counted below, with the stream's latency
            err = await self.worker_lost(exc, count=False)
            yield sse_error(err.message, err.type, err.status)
        finally:
            self.lease.release()
            if resp.content.at_eof():
                resp.release()  # keep the connection for the next request
            else:
                resp.close()  # the client went away: closing tells llama.cpp to stop generating
            self.metrics.requests.labels(name, code).inc()
            self.metrics.latency.labels(name).observe(time.monotonic() - self.received)


def sse_error(message: str, type_: str, code: int) -> bytes:
    return f"data: {json.dumps(error_body(message, type_, code))}\n\n".encode()
