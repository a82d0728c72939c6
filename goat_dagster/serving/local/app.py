"""The HTTP front of `goat serve`: a FastAPI app over the model manager, with its OpenAPI document at
`/openapi.json` and Swagger UI at `/docs`.

Routes live in three routers: `completions.py` (the OpenAI-compatible API: POST /v1/chat/completions,
GET /v1/models), `operations.py` (GET /healthz, /readyz, /status, /metrics; POST
/admin/models/{model}/load and /unload) and `infer.py` (the seeds' API: POST /infer as NDJSON,
GET /models). Every error is JSON `{"error": {"message", "type",
"code"}}`, FastAPI's own (unknown route, bad path) included.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from goat_dagster.serving.local import completions, infer, operations
from goat_dagster.serving.local.errors import ServeError, error_body
from goat_dagster.serving.local.manager import ModelManager

log = logging.getLogger("goat.serve")
DESCRIPTION = (
    "The local llama.cpp control plane of goat-dagster: one worker process per loaded model, loaded "
    "on demand within a memory budget, least-recently-used idle workers evicted, one request at a "
    'time per worker behind a bounded queue. Errors are `{"error": {"message", "type", "code"}}`.'
)


def create_app(manager: ModelManager, base_url: str = "") -> FastAPI:
    """The app; its lifespan starts the crash/RSS monitor and stops every worker."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        manager.start_monitor()
        try:
            yield
        finally:
            await manager.shutdown()

    app = FastAPI(title="goat serve", description=DESCRIPTION, version="1", lifespan=lifespan)
    app.state.manager = manager
    app.state.base_url = base_url
    app.include_router(completions.router)
    app.include_router(operations.router)
    app.include_router(infer.router)
    app.add_exception_handler(ServeError, on_serve_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.add_exception_handler(Exception, on_crash)
    return app


async def on_serve_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServeError)
    return exc.response()


async def on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request_error")
    return JSONResponse(error_body(str(exc.detail), kind, exc.status_code), exc.status_code)


async def on_invalid_request(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    what = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return JSONResponse(error_body(what or "invalid request", "invalid_request_error", 400), 400)


async def on_crash(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(error_body(f"{type(exc).__name__}: {exc}", "internal_error", 500), 500)
