"""What goat changes in llama-cpp-python inside a worker process (never in the control plane or
the client: importing this loads llama.cpp).

- `sampling.install()`: grammars applied the way llama.cpp's own server applies them.
- `tool_calling.chat_handler` serves the `chatml-function-calling` chat format (same protocol, see
  that module for what it fixes: speed, max_tokens over the whole response, the prompt), drafting
  `draft_tokens` per engine pass (`speculative.py`).
- `stream_usage.count_stream_usage()`: a stream that asks for usage ends with OpenAI's usage chunk.
- `keep_response_fields()`: llama-cpp-python's server validates a chat completion against its
  typed response model, which drops the fields it does not know; a worker's responses keep
  `usage.prompt_tokens_details` and `timings`. (Its module router is changed before `create_app`
  includes it: FastAPI includes a router's routes lazily, so the app's own route list does not
  hold them.)
"""

from __future__ import annotations

import functools
from typing import Any

from fastapi.routing import APIRoute
from llama_cpp import llama_chat_format
from llama_cpp.server import app as server_app

from goat_dagster.serving.local import sampling, speculative, stream_usage, tool_calling

CHAT_ROUTE = "/v1/chat/completions"


def install(draft_tokens: int = speculative.DRAFT_MAX) -> None:
    sampling.install()
    registry = llama_chat_format.LlamaChatCompletionHandlerRegistry()
    handler = functools.partial(tool_calling.chat_handler, draft_max=draft_tokens)
    registry.register_chat_completion_handler(tool_calling.NAME, handler, overwrite=True)
    stream_usage.count_stream_usage()
    keep_response_fields(server_app.router)


def keep_response_fields(router: Any) -> None:
    """Serve the chat route with no response model: the handler's dict goes out as it is."""
    for i, route in enumerate(router.routes):
        if isinstance(route, APIRoute) and route.path == CHAT_ROUTE:
            if route.response_model is None:
                return  # done already
            router.routes[i] = type(route)(
                route.path,
                route.endpoint,
                methods=list(route.methods),
                response_model=None,
                dependencies=route.dependencies,
                summary=route.summary,
                tags=route.tags,
                responses=route.responses,
            )
            return
    raise RuntimeError(f"llama-cpp-python's server has no {CHAT_ROUTE} route to serve")
