"""Shared fixtures of the Modal tests.

Modal's cloud is unreachable from this machine, so these tests never talk to it:
- apps are built for real (`modal.App`, `modal.Image`, ...) and inspected offline. What Modal would
  send to its API when deploying is read from the objects Modal keeps locally: `Function.info()`,
  and for what it does not expose (scaledown window, web-server settings, image layers) the closure
  of the object's loader, i.e. exactly the values `FunctionCreate` / `ImageGetOrCreate` would carry.
  That reads modal internals; pyproject pins modal<2, and a change there fails these tests loudly.
- the deploy / lookup calls go to `FakeCloud`, which answers like Modal would (tags, web URL) and
  points the "deployed app" at a real HTTP server on loopback (`StandInApp`) that behaves like a
  scaled-to-zero vLLM server: /health is 503 until it has "started", then OpenAI-compatible answers.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from modal._utils.async_utils import synchronizer

from tests.conftest import send_json


def _cells(fn: Any) -> dict[str, Any]:
    code, closure = fn.__code__, fn.__closure__ or ()
    out = {}
    for name, cell in zip(code.co_freevars, closure, strict=True):
        try:
            out[name] = cell.cell_contents
        except ValueError:  # empty cell
            continue
    return out


def function_definition(fn: Any) -> dict[str, Any]:
    """What deploying this Modal Function would send: gpu, timeouts, scaledown, web server, ..."""
    f = synchronizer._translate_in(fn)
    cells = _cells(f._load)
    info = fn.info()
    web = cells["webhook_config"]
    return {
        "tag": cells["tag"],
        "gpus": info.gpus,
        "timeout": cells["timeout"],
        "startup_timeout": cells["startup_timeout"],
        "scaledown_window": cells["autoscaler_settings"].scaledown_window,
        "max_concurrent_inputs": info.concurrency_info.max_inputs if info.concurrency_info else None,
        "web_server_port": web.web_server_port if web else None,
        "web_server_startup_timeout": web.web_server_startup_timeout if web else None,
        "volumes": {path: v.name for path, v in info.volumes.items()},
        "secrets": list(info.secrets),
        "image": cells["image"],
        "cpu": info.cpu,
        "memory_mib": info.memory_mib,
    }


def image_commands(image: Any) -> list[str]:
    """Every Dockerfile command of an image and its bases, base first."""
    seen: set[int] = set()
    out: list[str] = []

    def walk(im: Any) -> None:
        if id(im) in seen:
            return
        seen.add(id(im))
        cells = {**_cells(im._load)}
        deps = getattr(im, "_deps", None)
        if callable(deps) and getattr(deps, "__code__", None):
            cells.update(_cells(deps))
        bases = [v for v in cells.values() if type(v).__name__ == "_Image"]
        for v in cells.values():
            if isinstance(v, dict):
                bases += [b for b in v.values() if type(b).__name__ == "_Image"]
        for b in bases:
            walk(b)
        fn = cells.get("dockerfile_function") or cells.get("build_dockerfile")
        if callable(fn):
            out.extend(fn("2025.06").commands)

    walk(synchronizer._translate_in(image))
    return out


@pytest.fixture
def inspect_function():
    return function_definition


@pytest.fixture
def layers():
    return image_commands


@pytest.fixture(autouse=True)
def _no_goat_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """GOAT_MODEL makes the app modules build an app at import; tests choose explicitly."""
    monkeypatch.delenv("GOAT_MODEL", raising=False)


STAND_IN_KEY = "vllm-key-for-the-stand-in"


@pytest.fixture(autouse=True)
def _vllm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """VLLM_API_KEY as `goat setup` users have it: the stand-in demands it, like vLLM does."""
    monkeypatch.setenv("VLLM_API_KEY", STAND_IN_KEY)


# ---- a stand-in for a deployed vLLM app --------------------------------------------------------


class StandInApp:
    """A loopback HTTP server standing in for a deployed `goat-vllm-<key>` app (Modal's cloud is
    not reachable here). Like a scaled-to-zero app, it "starts" on the first request and answers
    /health with 503 for `start_s` seconds; then /health 200 and OpenAI-compatible answers. Like
    vLLM started with VLLM_API_KEY, /v1/* answers 401 without `Authorization: Bearer <api_key>`
    and /health stays open."""

    def __init__(self, served: list[str], start_s: float, api_key: str = STAND_IN_KEY) -> None:
        self.served = served
        self.api_key = api_key
        self.start_s = start_s
        self.first_request: float | None = None
        self.requests: list[tuple[str, str, dict | None]] = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict) -> None:
                send_json(self, code, body)

            def _ready(self) -> bool:
                now = time.monotonic()
                if app.first_request is None:
                    app.first_request = now
                return now - app.first_request >= app.start_s

            def _authorized(self) -> bool:
                if not self.path.startswith("/v1"):
                    return True
                if self.headers.get("Authorization") == f"Bearer {app.api_key}":
                    return True
                self._send(401, {"error": "Unauthorized"})  # vLLM's answer
                return False

            def do_GET(self) -> None:
                app.requests.append(("GET", self.path, None))
                if not self._ready():
                    return self._send(503, {"error": "starting"})
                if not self._authorized():
                    return None
                if self.path == "/health":
                    return self._send(200, {})
                if self.path == "/v1/models":
                    return self._send(
                        200, {"object": "list", "data": [{"id": s, "object": "model"} for s in app.served]}
                    )
                self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                app.requests.append(("POST", self.path, body))
                if not self._ready():
                    return self._send(503, {"error": "starting"})
                if not self._authorized():
                    return None
                if self.path != "/v1/chat/completions" or body.get("model") not in app.served:
                    return self._send(404, {"error": f"model {body.get('model')!r} not served"})
                self._send(
                    200,
                    {
                        "id": "chatcmpl-standin",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "OK"},
                            }
                        ],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandInApp:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeCloud:
    """The `ModalCloud` edge, answering as Modal would; deployed apps are StandInApp URLs."""

    def __init__(self, environment: str = "goat-test") -> None:
        self.environment = environment
        self.tags: dict[str, dict[str, str]] = {}
        self.urls: dict[str, str] = {}
        self.deployed: list[Any] = []
        self.stopped: list[str] = []
        self.downloads: list[tuple[str, str, list[str] | None]] = []
        self.snapshots: dict[str, dict[str, Any]] = {}

    def app_tags(self, app_name: str) -> dict[str, str] | None:
        return self.tags.get(app_name)

    def deploy(self, app: Any) -> None:
        self.deployed.append(app)
        self.tags[app.name] = dict(synchronizer._translate_in(app)._local_state.tags)

    def web_url(self, app_name: str, function: str = "serve") -> str | None:
        return self.urls[app_name] if app_name in self.tags else None

    def cls_web_url(self, app_name: str, cls_name: str, method: str) -> str | None:
        return self.urls[app_name] if app_name in self.tags else None

    def stop(self, app_name: str) -> bool:
        self.stopped.append(app_name)
        return self.tags.pop(app_name, None) is not None

    def download_weights(self, repo: str, revision: str, allow_patterns: list[str] | None) -> dict[str, Any]:
        self.downloads.append((repo, revision, allow_patterns))
        return self.snapshots[repo]


@pytest.fixture
def fake_cloud() -> Iterator[FakeCloud]:
    yield FakeCloud()


@pytest.fixture
def stand_in():
    return StandInApp
