"""Helpers of the serving tests: the real SmolLM2 GGUF, a registry of our own, a real `goat serve`
subprocess on a free port with its own GOAT_HOME."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from goat_dagster.serving.local.gguf import read_gguf_info
from goat_dagster.serving.local.memory import estimate_memory
from tests.conftest import smollm2_gguf

TEST_N_CTX = 2048


def smollm2_path() -> Path:
    return smollm2_gguf().resolve()


def write_models_yaml(path: Path, gguf: Path, extra: str = "") -> Path:
    """Two keys on the same SmolLM2 GGUF (two real workers), a huge-context one that can never fit
    a small budget, and whatever `extra` adds."""
    path.write_text(
        f"""
version: 1
models:
  smol-a:
    provider: local
    engine: llama.cpp
    weights: {{source: path, path: {gguf}}}
    context_length: {TEST_N_CTX}
    engine_args: {{chat_format: chatml-function-calling, n_threads: 2}}
  smol-b:
    provider: local
    engine: llama.cpp
    weights: {{source: path, path: {gguf}}}
    context_length: {TEST_N_CTX}
    engine_args: {{chat_format: chatml-function-calling, n_threads: 2}}
  smol-huge:
    provider: local
    engine: llama.cpp
    weights: {{source: path, path: {gguf}}}
    context_length: 32768
    engine_args: {{chat_format: chatml-function-calling, n_threads: 2}}
{extra}"""
    )
    return path


def one_worker_budget_mb(gguf: Path) -> int:
    """A budget that holds one SmolLM2 worker at TEST_N_CTX but never two."""
    est = estimate_memory(read_gguf_info(gguf), gguf.stat().st_size, TEST_N_CTX).total_mb
    return int(est * 1.5)


@dataclass
class Plane:
    """A `goat serve` subprocess."""

    proc: subprocess.Popen
    home: Path
    root: str
    log: Path

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def status(self) -> dict:
        return httpx.get(f"{self.root}/status", timeout=10).json()

    def instance(self, model: str) -> dict:
        return next(i for i in self.status()["instances"] if i["model"] == model)

    def chat(self, model: str, content: str = "Say hello", max_tokens: int = 8, **extra) -> httpx.Response:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            **extra,
        }
        return httpx.post(f"{self.base_url}/chat/completions", json=body, timeout=120)

    def worker_pids(self) -> list[int]:
        """Live worker processes started by this control plane (by their command line)."""
        out = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = p.info["cmdline"] or []
            if "goat_dagster.serving.local.worker_main" in cmd and f"{self.proc.pid}" in cmd:
                out.append(p.info["pid"])
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def start_plane(home: Path, models_file: Path, *args: str, timeout: float = 60) -> Plane:
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOAT_HOME": str(home), "GOAT_MODELS_FILE": str(models_file)}
    log = home / "serve-test.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "goat_dagster.cli", "serve", "--port", "0", *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    state = home / "serve" / "serve.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"goat serve exited {proc.returncode}:\n{log.read_text()}"
        if state.exists():
            data = json.loads(state.read_text())
            if data.get("pid") == proc.pid:
                root = data["root_url"]
                try:
                    if httpx.get(f"{root}/healthz", timeout=2).status_code == 200:
                        return Plane(proc, home, root, log)
                except httpx.HTTPError:
                    pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"goat serve did not come up:\n{log.read_text()}")
