"""Operating `goat serve`: health, readiness, status, Prometheus metrics, and loading or stopping a
model's worker by hand (what the local backend's `endpoint` and `teardown` ask for)."""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from goat_dagster import config
from goat_dagster.serving.local.api import ERROR_RESPONSES, Manager

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process answers (service, pid, goat_home)")
async def healthz(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "status": "ok",
            "service": "goat-serve",
            "pid": os.getpid(),
            "goat_home": str(config.paths().home),
            "models_file": str(config.models_file()),
            "base_url": request.app.state.base_url,
        }
    )


@router.get(
    "/readyz",
    summary="503 while a requested model is loading (or waiting for memory)",
    responses={503: {"description": "loading: the models still loading"}},
)
async def readyz(manager: Manager) -> JSONResponse:
    loading = manager.loading()
    if loading:
        return JSONResponse({"status": "loading", "loading": loading}, 503)
    return JSONResponse({"status": "ready"})


@router.get("/status", summary="Every instance (state, pid, memory, queue, crashes) and the budget")
async def status(request: Request, manager: Manager) -> JSONResponse:
    return JSONResponse({**manager.status(), "base_url": request.app.state.base_url})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(manager: Manager) -> Response:
    manager.metrics.used_mb.set(manager.used_mb())
    return Response(generate_latest(manager.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.post(
    "/admin/models/{model:path}/load",
    summary="Load a model now (as a request would) and return its status",
    responses=ERROR_RESPONSES,
)
async def admin_load(model: str, manager: Manager) -> JSONResponse:
    t0 = time.monotonic()
    st: dict[str, Any] = await manager.load(model)
    return JSONResponse({**st, "request_s": round(time.monotonic() - t0, 3)})


@router.post(
    "/admin/models/{model:path}/unload",
    summary="Stop a model's worker (after the request in flight, if any)",
    responses=ERROR_RESPONSES,
)
async def admin_unload(model: str, manager: Manager) -> JSONResponse:
    return JSONResponse(await manager.unload(model))
