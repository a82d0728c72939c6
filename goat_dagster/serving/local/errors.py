"""The control plane's errors: one JSON shape, `{"error": {"message", "type", "code"}}`."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse


class ServeError(Exception):
    """An error answered to the client as JSON with an HTTP status (and Retry-After when set)."""

    def __init__(self, status: int, type_: str, message: str, *, retry_after_s: float | None = None):
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.retry_after_s = retry_after_s

    def response(self) -> JSONResponse:
        headers = {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, round(self.retry_after_s)))
        return JSONResponse(error_body(self.message, self.type, self.status), self.status, headers=headers)


def error_body(message: str, type_: str, code: int | str) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code}}


def normalize_error(status: int, content: bytes) -> dict[str, Any]:
    """A worker's error body in our shape (llama-cpp-python answers FastAPI's `{"detail": ...}` for
    validation errors and its own `{"error": ...}` otherwise)."""
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = dict(data["error"])
        err.setdefault("message", "error from the model worker")
        err.setdefault("type", "invalid_request_error" if status < 500 else "worker_error")
        err["code"] = err.get("code") or status
        return {"error": err}
    if isinstance(data, dict) and "detail" in data:
        detail = data["detail"]
        if isinstance(detail, list):
            msg = "; ".join(
                f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}"
                for d in detail
                if isinstance(d, dict)
            )
        else:
            msg = str(detail)
        return error_body(
            msg or "invalid request", "invalid_request_error" if status < 500 else "worker_error", status
        )
    text = content.decode(errors="replace").strip()[:500]
    return error_body(text or f"HTTP {status} from the model worker", "worker_error", status)
