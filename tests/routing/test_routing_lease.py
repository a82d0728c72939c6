"""The lease between benchmark runs and a proxy restart, across real processes: a restart waits
for running benchmarks, gives up with a clear error after its wait, and new runs wait for it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from goat_dagster.routing.proxy import ProxyError, _exclusive_lease

HOLD = """
import sys, time
from goat_dagster.routing.proxy import gateway_lease
with gateway_lease():
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
print("released", flush=True)
"""


def hold_lease(seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(seconds)], env=dict(os.environ), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_restart_waits_for_a_running_benchmark(goat_home: Path) -> None:
    run = hold_lease(1.5)
    t0 = time.monotonic()
    with _exclusive_lease(wait_s=30, poll_s=0.1):
        waited = time.monotonic() - t0
    assert waited >= 1.0 and run.wait(10) == 0


def test_restart_gives_up_after_its_wait(goat_home: Path) -> None:
    run = hold_lease(20)
    try:
        t0 = time.monotonic()
        with (
            pytest.raises(ProxyError, match="benchmark runs still use it"),
            _exclusive_lease(wait_s=0.5, poll_s=0.1),
        ):
            pass
        assert time.monotonic() - t0 < 5
    finally:
        run.kill()
        run.wait(10)


def test_a_new_run_waits_for_a_pending_restart(goat_home: Path) -> None:
    """Writer preference: once a restart waits, a benchmark that starts gets the new proxy."""
    first = hold_lease(1.5)
    order: list[str] = []

    def restart() -> None:
        with _exclusive_lease(wait_s=30, poll_s=0.05):
            order.append("restart")
            time.sleep(0.5)

    writer = threading.Thread(target=restart)
    writer.start()
    time.sleep(0.3)  # the restart is now waiting, holding the gate
    second = subprocess.Popen([sys.executable, "-c", HOLD, "0"], env=dict(os.environ), stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    assert second.stdout is not None and second.stdout.readline().strip() == "held"
    order.append("second run")
    writer.join(30)
    assert order == ["restart", "second run"]
    assert first.wait(10) == 0 and second.wait(10) == 0
