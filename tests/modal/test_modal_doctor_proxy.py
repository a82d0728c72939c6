"""The doctor's proxy and trace phases against real parts on loopback: llama.cpp serving SmolLM2
behind a real LiteLLM proxy. The trace sink itself belongs to the routing stage; here its JSONL
is written in the `TraceRecord` shape (tracing/schema.py) to check the doctor's reader."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from goat_dagster.doctor import check_proxy_call, check_trace, doctor_run_id, find_trace
from goat_dagster.tracing.schema import TraceRecord, new_id
from goat_dagster.tracing.sink_store import append_line
from tests.conftest import smollm2_gguf

pytestmark = pytest.mark.integration
MASTER_KEY = "sk-doctor-test-key"


def _port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait(url: str, proc: subprocess.Popen, timeout_s: float, headers: dict | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}")
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(url)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("doctor-proxy")
    gguf = smollm2_gguf()
    llm_port, proxy_port = _port(), _port()
    llama = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--chat_format",
            "chatml-function-calling",
            "--host",
            "127.0.0.1",
            "--port",
            str(llm_port),
            "--n_threads",
            "1",
            "--n_ctx",
            "1024",
        ],
        stdout=(tmp / "llama.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    cfg = {
        "model_list": [
            {
                "model_name": "smollm2-135m-local",
                "litellm_params": {
                    "model": "openai/smollm2",
                    "api_base": f"http://127.0.0.1:{llm_port}/v1",
                    "api_key": "none",
                },
            }
        ],
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
    }
    (tmp / "config.yaml").write_text(json.dumps(cfg))
    env = {**os.environ, "LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    litellm = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("litellm")),
            "--config",
            str(tmp / "config.yaml"),
            "--host",
            "127.0.0.1",
            "--port",
            str(proxy_port),
        ],
        env=env,
        stdout=(tmp / "litellm.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait(f"http://127.0.0.1:{llm_port}/v1/models", llama, 60)
        _wait(f"http://127.0.0.1:{proxy_port}/health/liveliness", litellm, 120)
        yield f"http://127.0.0.1:{proxy_port}"
    finally:
        _stop(litellm)
        _stop(llama)


def test_proxy_call_passes_and_reports_a_wrong_key(proxy, monkeypatch):
    monkeypatch.setenv("GOAT_LITELLM_URL", proxy)
    monkeypatch.setenv("LITELLM_MASTER_KEY", MASTER_KEY)
    ok = check_proxy_call("smollm2-135m-local", new_id(), new_id())
    assert ok.status == "pass", ok.detail
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-wrong")
    bad = check_proxy_call("smollm2-135m-local", new_id(), new_id())
    assert bad.status == "fail" and "refused the key" in bad.detail and "LITELLM_MASTER_KEY" in bad.fix
    monkeypatch.setenv("LITELLM_MASTER_KEY", MASTER_KEY)
    missing = check_proxy_call("no-such-model", new_id(), new_id())
    assert missing.status == "fail" and missing.detail.startswith(("HTTP 400", "HTTP 404")), missing.detail


def test_trace_found_by_call_id(tmp_path, monkeypatch):
    monkeypatch.setenv("GOAT_HOME", str(tmp_path))
    for var in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_HOST"):
        monkeypatch.delenv(var, raising=False)
    call_id, trace_id = new_id(), new_id()
    run_id = doctor_run_id(trace_id)
    rec = TraceRecord(source="sink", call_id=call_id, trace_id=trace_id, run_id=run_id, model="m")
    sink_file = append_line(json.loads(rec.model_dump_json()))
    with sink_file.open("a") as fh:
        fh.write("a line cut by a crash\n")
    found = find_trace(call_id, run_id, wait_s=0)
    assert found is not None and found.call_id == call_id
    assert check_trace(call_id, run_id, 0).status == "pass"
    missing = check_trace(new_id(), run_id, 0.2)
    assert missing.status == "fail" and "trace sink" in missing.detail
