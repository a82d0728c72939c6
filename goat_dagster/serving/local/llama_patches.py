"""Fixes applied inside llama.cpp worker processes (never in the control plane or the client).

llama-cpp-python's `chatml-function-calling` handler (0.3.x) passes `max_tokens=None` to every
completion it runs when the request carries tools with `tool_choice: "auto"`: the routing
decision, the tool arguments, the follow-up and the plain message. A request's `max_tokens` is
then ignored and a small model can generate until the context is full (seen here: 3,000+ tokens
for a 1,024-token request, 100 s on a CPU). `bound_tool_calling()` re-registers the handler so
those inner completions inherit the request's limit (with a small floor so the grammar-constrained
routing step can still spell a tool name).
"""

from __future__ import annotations

import functools
from typing import Any

from llama_cpp import llama_chat_format

HANDLER = "chatml-function-calling"
ROUTING_FLOOR = 32  # tokens: "functions.<name>:" must fit even when a request asks for fewer


def bound_tool_calling() -> None:
    registry = llama_chat_format.LlamaChatCompletionHandlerRegistry()
    original = registry.get_chat_completion_handler_by_name(HANDLER)
    if getattr(original, "__goat_bounded__", False):
        return

    @functools.wraps(original)
    def bounded(*, llama: Any, max_tokens: int | None = None, **kwargs: Any) -> Any:
        if not max_tokens or max_tokens <= 0:
            return original(llama=llama, max_tokens=max_tokens, **kwargs)
        cap = max(max_tokens, ROUTING_FLOOR)
        create = llama.create_completion

        def capped(*args: Any, **kw: Any) -> Any:
            if kw.get("max_tokens") is None:
                kw["max_tokens"] = cap
            return create(*args, **kw)

        llama.create_completion = capped  # one request at a time per worker (the control plane queues)
        try:
            return original(llama=llama, max_tokens=max_tokens, **kwargs)
        finally:
            del llama.create_completion

    bounded.__goat_bounded__ = True  # type: ignore[attr-defined]
    registry.register_chat_completion_handler(HANDLER, bounded, overwrite=True)
