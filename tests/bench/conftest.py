"""Fixtures of the harness tests: sandbox pools and a real model endpoint (`goat_home`, a GOAT_HOME
per test, comes from tests/conftest.py).

The model endpoint is a real llama.cpp server (llama-cpp-python's OpenAI-compatible server) with
the real SmolLM2-135M weights, started once per session on a free port, that these tests can kill
and restart at will (infra errors mid-run). `model_gateway` calls it directly, so a failure here
is the harness's; `test_through_the_litellm_proxy_costs_and_traces` puts the real proxy in front,
and tests/graph runs the harness through `goat serve` and the proxy as the assets do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from goat_dagster.bench.local_sandbox import LocalSandboxPool
from goat_dagster.bench.sandbox import PoolOptions
from goat_dagster.registry import load_registry
from goat_dagster.routing import proxy
from goat_dagster.routing.config import build_config
from goat_dagster.routing.gateway import Gateway
from goat_dagster.serving.endpoint import Endpoint, load_endpoints, save_endpoint
from tests.conftest import free_port, smollm2_gguf


class LlamaServer:
    """A real llama.cpp server process on loopback."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(smollm2_gguf()),
                "--chat_format",
                "chatml-function-calling",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--n_ctx",
                "4096",
                "--n_threads",
                "2",
            ],
            stdout=open(log, "wb"),  # noqa: SIM115 - the process owns it
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("llama.cpp server did not become ready in 120 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.fixture
def pool() -> Iterator[LocalSandboxPool]:
    """One local sandbox slot (bubblewrap) for a test."""
    with LocalSandboxPool(PoolOptions(size=1)) as p:
        yield p


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = LlamaServer(tmp_path_factory.mktemp("llama") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def model_gateway(llama_server: LlamaServer) -> Gateway:
    """How the harness reaches SmolLM2 in these tests: the llama.cpp server directly.

    The registry prices local models at 0; a price here makes the registry-pricing fallback
    (no x-litellm-response-cost header from llama.cpp) visible in cost_usd.
    """
    return Gateway(
        base_url=llama_server.base_url,
        api_key="sk-test-gateway-key",
        model="smollm2-135m-local",
        input_per_mtok=1.0,
        output_per_mtok=2.0,
    )


class OpenAIServer(Protocol):
    @property
    def base_url(self) -> str: ...  # http://host:port/v1


def proxy_in_front_of(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The managed LiteLLM proxy (with its trace sink) on a free port, routing smollm2-135m to
    `server` (a llama.cpp server, or `goat serve`): the default gateway of a run. Stop it with
    `routing.proxy.stop_proxy()`."""

    monkeypatch.setenv("GOAT_LITELLM_PORT", str(free_port()))
    for var in ("GOAT_LITELLM_URL", "GOAT_LITELLM_MODE", "LITELLM_MASTER_KEY", "GOAT_LLM_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    save_endpoint(
        Endpoint(
            model_key="smollm2-135m",
            provider="local",
            engine="llama.cpp",
            base_url=server.base_url,
            served_name="smollm2-135m",
            healthy=True,
        )
    )
    proxy.ensure_proxy(build_config(load_registry(), load_endpoints()))
