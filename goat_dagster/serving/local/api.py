"""What the routers of `goat serve` share: the manager as a FastAPI dependency, and the shape of
errors for the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel

from goat_dagster.serving.local.manager import ModelManager


def manager_of(request: Request) -> ModelManager:
    return request.app.state.manager


Manager = Annotated[ModelManager, Depends(manager_of)]


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: int | str


class ErrorBody(BaseModel):
    """Every error of goat serve (the OpenAPI document's shape of them)."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": what}
    for code, what in {
        400: "invalid_request_error: not JSON, not an object, no model",
        404: "model_not_found: not a local model",
        429: "queue_full (with Retry-After)",
        502: "worker_crashed / worker_error",
        503: "model_load_failed / model_unavailable / insufficient_memory (busy)",
        504: "timeout",
        507: "insufficient_memory: the model can never fit the budget",
    }.items()
}
