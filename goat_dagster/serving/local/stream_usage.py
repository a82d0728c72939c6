"""Token usage at the end of a streamed chat completion, as OpenAI's `stream_options.include_usage`
asks. llama-cpp-python's server drops `stream_options` (its request model has no such field) and
its streams carry no usage, so whoever meters a streamed call (the harness's relay, LiteLLM's cost)
counted 0 tokens.

Applied in each worker (`worker_main`), never in the control plane:
- `Llama.generate` is wrapped to count, per request, the prompt tokens each completion is given
  and the tokens it generates, end-of-generation tokens excepted: exactly what llama-cpp-python's
  non-streamed `usage` counts (summed over the inner completions a tool-calling handler runs);
- `Llama.create_chat_completion`, for a stream whose request asked for usage, yields one more
  chunk after the last: `choices: []` and `usage`, the shape OpenAI sends;
- `IncludeUsage`, an ASGI middleware, reads whether it was asked: the control plane, which sees the
  request body, sends `x-goat-include-usage: 1` with such a request (`completions.Forward`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from typing import Any

INCLUDE_USAGE_HEADER = "x-goat-include-usage"
_asked: contextvars.ContextVar[bool] = contextvars.ContextVar("goat_include_usage", default=False)


def wants_usage(payload: dict[str, Any]) -> bool:
    """Whether a chat request asks for usage at the end of its stream."""
    options = payload.get("stream_options")
    return bool(payload.get("stream")) and isinstance(options, dict) and options.get("include_usage") is True


class IncludeUsage:
    """ASGI middleware: marks the requests the control plane flagged with `INCLUDE_USAGE_HEADER`
    (a context variable, inherited by the tasks that produce the stream)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = INCLUDE_USAGE_HEADER.encode()
        token = _asked.set(any(k == header and v == b"1" for k, v in scope.get("headers", ())))
        try:
            await self.app(scope, receive, send)
        finally:
            _asked.reset(token)


def count_stream_usage() -> None:
    """Wrap `Llama.generate` and `Llama.create_chat_completion` (once per process)."""
    import llama_cpp  # in the worker, where the engine is loaded anyway

    llama_cls = llama_cpp.Llama
    if getattr(llama_cls.create_chat_completion, "__goat_usage__", False):
        return
    generate, create = llama_cls.generate, llama_cls.create_chat_completion

    def counting_generate(self: Any, tokens: Any, *args: Any, **kwargs: Any) -> Iterator[int]:
        counts = getattr(self, "_goat_usage", None)
        if counts is not None:
            counts[0] += len(tokens)
        for token in generate(self, tokens, *args, **kwargs):
            if counts is not None and not llama_cpp.llama_vocab_is_eog(self._model.vocab, token):
                counts[1] += 1
            yield token

    def create_with_usage(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not (kwargs.get("stream") and _asked.get()):
            self._goat_usage = None
            return create(self, *args, **kwargs)
        counts = self._goat_usage = [0, 0]  # one request at a time per worker (the control plane queues)
        return _then_usage(create(self, *args, **kwargs), counts)

    create_with_usage.__goat_usage__ = True  # type: ignore[attr-defined]
    llama_cls.generate = counting_generate
    llama_cls.create_chat_completion = create_with_usage


def _then_usage(chunks: Iterator[dict[str, Any]], counts: list[int]) -> Iterator[dict[str, Any]]:
    last: dict[str, Any] = {}
    for chunk in chunks:
        last = chunk
        yield chunk
    prompt, completion = counts
    yield {
        "id": last.get("id", "chatcmpl-usage"),
        "object": "chat.completion.chunk",
        "created": last.get("created", 0),
        "model": last.get("model", ""),
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
