"""No orphan workers: SIGTERM (even mid-stream) and SIGINT stop every worker and remove the state
record; a SIGKILLed control plane takes its workers with it (PR_SET_PDEATHSIG)."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import psutil
import pytest

from tests.serving.plane_helpers import start_plane, write_models_yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [
            p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
        if not alive:
            return True
        time.sleep(0.05)
    return False


def two_workers(plane) -> list[int]:
    for model in ("smol-a", "smol-b"):
        r = httpx.post(f"{plane.root}/admin/models/{model}/load", timeout=120)
        assert r.status_code == 200, r.text
    pids = plane.worker_pids()
    assert len(pids) == 2
    return pids


@pytest.mark.parametrize(
    ("sig", "mid_stream"),
    [(signal.SIGTERM, True), (signal.SIGINT, False)],
    ids=["SIGTERM-mid-stream", "SIGINT"],
)
def test_signal_stops_every_worker(tmp_path, smollm2, sig, mid_stream):
    plane = start_plane(tmp_path, write_models_yaml(tmp_path / "models.yaml", smollm2))
    workers = two_workers(plane)
    streaming = threading.Event()

    def stream():  # a request in flight while the signal arrives
        body = {
            "model": "smol-a",
            "stream": True,
            "max_tokens": 400,
            "min_tokens": 400,
            "messages": [{"role": "user", "content": "Tell a long story."}],
        }
        try:
            with httpx.stream("POST", f"{plane.base_url}/chat/completions", json=body, timeout=60) as r:
                for _ in r.iter_lines():
                    streaming.set()
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=stream, daemon=True)
    if mid_stream:
        t.start()
        assert streaming.wait(60)
    t0 = time.monotonic()
    assert plane.stop(sig, timeout=30) == 0
    assert time.monotonic() - t0 < 10, "in-flight requests get a short grace, not forever"
    assert gone(workers), f"orphan workers: {[p for p in workers if psutil.pid_exists(p)]}"
    assert not (tmp_path / "serve" / "serve.json").exists()
    if mid_stream:
        t.join(10)


def test_sigkilled_control_plane_takes_its_workers(tmp_path, smollm2):
    plane = start_plane(tmp_path, write_models_yaml(tmp_path / "models.yaml", smollm2))
    workers = two_workers(plane)
    plane.proc.kill()
    plane.proc.wait(10)
    assert gone(workers), "workers outlived a SIGKILLed control plane"
