"""The HTTP front of `goat serve`: an OpenAI-compatible API over the model manager.

Routes: POST /v1/chat/completions (streaming SSE or not; the body reaches llama.cpp byte for byte,
tools and tool_choice included), GET /v1/models, GET /healthz, GET /readyz, GET /status,
GET /metrics, POST /admin/models/{model}/load, POST /admin/models/{model}/unload.
Every error is JSON: {"error": {"message", "type", "code"}}.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from goat_dagster import config
from goat_dagster.serving.local.errors import ServeError, error_body, normalize_error
from goat_dagster.serving.local.manager import Lease, ModelInstance, ModelManager

log = logging.getLogger("goat.serve")
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _json(obj: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(obj, status)


def create_app(manager: ModelManager, base_url: str = "") -> Starlette:
    """The Starlette app; its lifespan starts the crash/RSS monitor and stops every worker."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        manager.start_monitor()
        try:
            yield
        finally:
            await manager.shutdown()

    # ---- OpenAI-compatible ---------------------------------------------------------------

    async def chat_completions(request: Request) -> Response:
        received = time.monotonic()
        body = await request.body()
        try:
            payload = json.loads(body)
        except ValueError:
            raise ServeError(400, "invalid_request_error", "the request body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise ServeError(400, "invalid_request_error", "the request body must be a JSON object")
        inst = manager.instance(manager.resolve(payload.get("model")))
        deadline = received + manager.settings.request_timeout_s
        try:
            lease = await manager.acquire(inst, deadline)
        except ServeError as exc:
            manager.metrics.requests.labels(inst.name, str(exc.status)).inc()
            raise
        if payload.get("stream"):
            return await _stream(inst, lease, body, received, deadline)
        return await _complete(inst, lease, body, received, deadline)

    async def _send(
        inst: ModelInstance, lease: Lease, body: bytes, deadline: float, stream: bool
    ) -> aiohttp.ClientResponse:
        """Forward the request to the worker (the response's headers are in; its body is not read).
        A worker found dead before it answered (killed, OOM) is restarted and the request sent once
        more: it had not been served."""
        headers = {"content-type": "application/json"}
        if stream:
            headers["accept"] = "text/event-stream"
        for attempt in (1, 2):
            try:
                return await lease.client.post(
                    "/v1/chat/completions",
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=max(0.001, deadline - time.monotonic())),
                )
            except TimeoutError:
                raise _timed_out(inst) from None
            except aiohttp.ClientError as exc:
                if attempt == 2 or not await manager.worker_died(inst):
                    raise await _worker_lost(inst, exc) from None
                log.warning("%s: the worker died before answering; restarting it for this request", inst.name)
                await manager.ensure_loaded(inst, deadline)
        raise AssertionError("unreachable")

    def _timed_out(inst: ModelInstance) -> ServeError:
        manager.metrics.requests.labels(inst.name, "504").inc()
        return ServeError(
            504, "timeout", f"model {inst.name!r}: no answer within {manager.settings.request_timeout_s:g}s"
        )

    async def _complete(
        inst: ModelInstance, lease: Lease, body: bytes, received: float, deadline: float
    ) -> Response:
        m = manager.metrics
        try:
            resp = await _send(inst, lease, body, deadline, stream=False)
            try:
                content = await resp.read()
            except TimeoutError:
                raise _timed_out(inst) from None
            except aiohttp.ClientError as exc:
                raise await _worker_lost(inst, exc) from None
            finally:
                resp.release()
        except ServeError as exc:
            if exc.type == "timeout" and inst.state == "ready":  # the worker is still generating it
                await manager.abort_generation(inst)
            raise
        finally:
            lease.release()
        m.requests.labels(inst.name, str(resp.status)).inc()
        m.latency.labels(inst.name).observe(time.monotonic() - received)
        if resp.status >= 400:
            return _json(normalize_error(resp.status, content), resp.status)
        return Response(content, resp.status, media_type="application/json")

    async def _stream(
        inst: ModelInstance, lease: Lease, body: bytes, received: float, deadline: float
    ) -> Response:
        m = manager.metrics
        try:
            resp = await _send(inst, lease, body, deadline, stream=True)
        except BaseException:
            lease.release()
            raise
        if resp.status >= 400:
            try:
                content = await resp.read()
            except (TimeoutError, aiohttp.ClientError):
                content = b""
            finally:
                resp.release()
                lease.release()
            m.requests.labels(inst.name, str(resp.status)).inc()
            return _json(normalize_error(resp.status, content), resp.status)

        async def relay() -> AsyncIterator[bytes]:
            first = True
            code = "200"
            try:
                async for chunk in resp.content.iter_any():
                    if first:
                        m.first_byte.labels(inst.name).observe(time.monotonic() - received)
                        first = False
                    yield chunk
            except TimeoutError:
                code = "504"
                yield _sse_error(
                    f"model {inst.name!r}: the stream ran past the request timeout", "timeout", 504
                )
            except aiohttp.ClientError as exc:
                code = "502"  # counted below, with the stream's latency
                err = await _worker_lost(inst, exc, count=False)
                yield _sse_error(err.message, err.type, err.status)
            finally:
                lease.release()
                if resp.content.at_eof():
                    resp.release()  # keep the connection for the next request
                else:
                    resp.close()  # the client went away: closing tells llama.cpp to stop generating
                m.requests.labels(inst.name, code).inc()
                m.latency.labels(inst.name).observe(time.monotonic() - received)

        return StreamingResponse(relay(), 200, headers=_SSE_HEADERS, media_type="text/event-stream")

    async def _worker_lost(inst: ModelInstance, exc: Exception, count: bool = True) -> ServeError:
        died = await manager.worker_died(inst)
        if count:
            manager.metrics.requests.labels(inst.name, "502").inc()
        if died:
            return ServeError(
                502,
                "worker_crashed",
                f"model {inst.name!r}: the worker died during the request ({inst.last_error}); "
                "it is restarted on the next request",
            )
        return ServeError(502, "worker_error", f"model {inst.name!r}: {type(exc).__name__}: {exc}")

    async def models(_request: Request) -> Response:
        data = []
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
        return _json({"object": "list", "data": data})

    # ---- operations ---------------------------------------------------------------------------

    async def healthz(_request: Request) -> Response:
        return _json(
            {
                "status": "ok",
                "service": "goat-serve",
                "pid": os.getpid(),
                "goat_home": str(config.paths().home),
                "models_file": str(config.models_file()),
                "base_url": base_url,
            }
        )

    async def readyz(_request: Request) -> Response:
        loading = manager.loading()
        if loading:
            return _json({"status": "loading", "loading": loading}, 503)
        return _json({"status": "ready"})

    async def status(_request: Request) -> Response:
        return _json({**manager.status(), "base_url": base_url})

    async def metrics(_request: Request) -> Response:
        manager.metrics.used_mb.set(manager.used_mb())
        return Response(generate_latest(manager.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def admin_load(request: Request) -> Response:
        t0 = time.monotonic()
        st = await manager.load(request.path_params["model"])
        return _json({**st, "request_s": round(time.monotonic() - t0, 3)})

    async def admin_unload(request: Request) -> Response:
        return _json(await manager.unload(request.path_params["model"]))

    # ---- errors ----------------------------------------------------------------------------------

    async def on_serve_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServeError)
        return exc.response()

    async def on_http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request_error")
        return _json(error_body(str(exc.detail), kind, exc.status_code), exc.status_code)

    async def on_crash(_request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return _json(error_body(f"{type(exc).__name__}: {exc}", "internal_error", 500), 500)

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/admin/models/{model:path}/load", admin_load, methods=["POST"]),
        Route("/admin/models/{model:path}/unload", admin_unload, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ServeError: on_serve_error, HTTPException: on_http_error, Exception: on_crash},
    )


def _sse_error(message: str, type_: str, code: int) -> bytes:
    return f"data: {json.dumps(error_body(message, type_, code))}\n\n".encode()
