"""The seeds' own inference API (modeld, seed 003) beside the OpenAI one, so its clients keep working:

- `POST /infer` `{prompt, model, stream, max_tokens, temperature, top_p, stop}` answers NDJSON, one
  line per token, `{"token": "The", "done": false}`, then `{"done": true, "stats": {"duration_ms",
  ...}}`; with `"stream": false` one JSON object `{"text", "done": true, "stats"}` instead. An error
  before the first token is the usual JSON error with its status; one mid-stream is a last line
  `{"error": {...}, "done": true}`.
- `GET /models` `{"models": [...]}`: the local models, as the seed listed them.

The prompt is sent to the model's worker as one user message of a streamed chat completion (the
worker's chat template applies), through the same queue, lease and relay as `/v1/chat/completions`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from goat_dagster.serving.local.api import ERROR_RESPONSES, Manager
from goat_dagster.serving.local.completions import open_forward
from goat_dagster.serving.local.errors import ServeError
from goat_dagster.serving.local.manager import ModelManager
from goat_dagster.serving.local.models_dir import TAG as MODELS_DIR_TAG

router = APIRouter(tags=["infer (seed API)"])
NDJSON = "application/x-ndjson"


class InferRequest(BaseModel):
    """The body of `POST /infer` (seed 003's fields)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="sent to the model as one user message")
    model: str | None = Field(default=None, description="a local model; optional when only one is served")
    stream: bool = Field(default=True, description="NDJSON token lines (true) or one JSON object (false)")
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None

    def chat_body(self, served_model: str) -> bytes:
        body: dict[str, Any] = {
            "model": served_model,
            "messages": [{"role": "user", "content": self.prompt}],
            "stream": True,
        }
        for name in ("max_tokens", "temperature", "top_p", "stop"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return json.dumps(body).encode()


def default_model(manager: ModelManager, asked: str | None) -> str:
    if asked:
        return asked
    served = [m.served_model for m in manager.local_models()]
    if len(served) == 1:
        return served[0]
    raise ServeError(
        400,
        "invalid_request_error",
        "the request needs a 'model': this control plane serves " + (", ".join(sorted(served)) or "none"),
    )


@router.post(
    "/infer",
    summary="One prompt, answered as NDJSON token lines (seed 003's API)",
    responses={
        **ERROR_RESPONSES,
        200: {
            "description": 'NDJSON: `{"token": "...", "done": false}` per token, then `{"done": true, '
            '"stats": {"duration_ms", "first_token_ms", "tokens", "finish_reason", "model"}}`',
            "content": {NDJSON: {}},
        },
    },
)
async def infer(req: InferRequest, request: Request, manager: Manager) -> Response:
    received = time.monotonic()
    inst = manager.instance(manager.resolve(default_model(manager, req.model)))
    forward = await open_forward(manager, inst.name, req.chat_body(inst.name), received)
    lines = lambda chunks: ndjson_lines(chunks, received, inst.name)  # noqa: E731
    answer = await forward.stream(adapt=lines, media_type=NDJSON)
    if req.stream or not isinstance(answer, StreamingResponse):
        return answer
    result = await collect(answer.body_iterator)
    if "error" in result:  # cut before the end: the error, with its status, not a 200
        code = result["error"].get("code")
        return JSONResponse({"error": result["error"]}, code if isinstance(code, int) else 502)
    return JSONResponse(result)


@router.get("/models", summary="The local models, in the seed's shape: {models: [...]}")
async def models(manager: Manager) -> JSONResponse:
    out = []
    for m in manager.local_models():
        inst = manager.instances.get(m.key)
        out.append(
            {
                "id": m.served_model,
                "key": m.key,
                "state": inst.state if inst else "stopped",
                "source": "models-dir" if MODELS_DIR_TAG in m.tags else "registry",
                "context_length": m.context_length,
            }
        )
    return JSONResponse({"models": out})


# ---- OpenAI SSE -> NDJSON ----------------------------------------------------------------------


def sse_events(buffer: bytearray) -> list[str]:
    """The complete `data:` payloads at the front of `buffer` (consumed from it)."""
    out = []
    while True:
        end = buffer.find(b"\n\n")
        if end < 0:
            return out
        event, buffer[:] = bytes(buffer[:end]), buffer[end + 2 :]
        for line in event.decode(errors="replace").splitlines():
            if line.startswith("data:"):
                out.append(line[5:].strip())


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


async def ndjson_lines(chunks: AsyncIterator[bytes], received: float, model: str) -> AsyncIterator[bytes]:
    """The worker's SSE chat-completion chunks (as the relay passes them on) as seed 003's NDJSON."""
    buffer = bytearray()
    tokens, first_ms, finish = 0, None, None
    try:
        async for chunk in chunks:
            buffer += chunk.replace(b"\r\n", b"\n")
            for data in sse_events(buffer):
                if data == "[DONE]":
                    continue
                try:
                    event = json.loads(data)
                except ValueError:
                    continue
                if "error" in event:  # the relay's SSE error event: the stream was cut
                    yield _line({"error": event["error"], "done": True})
                    return
                choice = (event.get("choices") or [{}])[0]
                finish = choice.get("finish_reason") or finish
                token = (choice.get("delta") or {}).get("content")
                if token:
                    tokens += 1
                    if first_ms is None:
                        first_ms = round((time.monotonic() - received) * 1000, 1)
                    yield _line({"token": token, "done": False})
        stats = {
            "duration_ms": round((time.monotonic() - received) * 1000, 1),
            "first_token_ms": first_ms,
            "tokens": tokens,
            "finish_reason": finish,
            "model": model,
        }
        yield _line({"done": True, "stats": stats})
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]  # the relay releases the worker


async def collect(lines: AsyncIterator[Any]) -> dict[str, Any]:
    """A whole NDJSON answer as one object (`"stream": false`)."""
    text, last = [], {}
    async for raw in lines:
        for line in (raw if isinstance(raw, bytes) else raw.encode()).splitlines():
            event = json.loads(line)
            if "token" in event:
                text.append(event["token"])
            else:
                last = event
    return {"text": "".join(text), **last}
