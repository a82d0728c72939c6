"""Processes start and stop the way a service manager expects: started in the background (SIGINT
ignored, as a shell's `cmd &` or a unit without a terminal leaves it), stopped with SIGTERM, and then
gone — with every process they started — within 10 s."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import PROJECT, free_port

pytestmark = pytest.mark.integration

STOP_WITHIN_S = 10.0


def start_in_background(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """As `cmd &` from a non-interactive shell or a service manager: own session, SIGINT ignored."""

    def background() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, env=env, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=background, start_new_session=True,
        )  # fmt: skip


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def stop_and_wait(proc: subprocess.Popen, sig: int) -> tuple[float, list[str]]:
    """Signal `proc`, wait for it and everything it started; (seconds, what is still alive)."""
    procs = tree(proc.pid)
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, alive = psutil.wait_procs(procs, timeout=STOP_WITHIN_S)
    took = time.monotonic() - t0
    left = []
    for p in alive:
        try:
            left.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            continue
    return took, left


@pytest.fixture
def fresh_home() -> Path:
    # traversable by the `pgserver` user PostgreSQL runs as under root (pytest's tmp dirs are 0700)
    home = Path(tempfile.mkdtemp(prefix="goat-test-life-"))
    home.chmod(0o755)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def clean_env(home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DAGSTER_PG_URL", "GOAT_PG_EMBEDDED", "DAGSTER_HOME")
    }
    env["GOAT_HOME"] = str(home)
    env["GOAT_PROJECT_DIR"] = str(PROJECT)
    return env


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_goat_ui_in_the_background_stops_on_a_signal_with_everything_it_started(
    fresh_home: Path, tmp_path: Path, sig: int
) -> None:
    """`goat ui &` then SIGTERM (or SIGINT, which a background job ignores unless goat handles it):
    the webserver, the daemon, the code servers and the embedded PostgreSQL of its GOAT_HOME are
    gone within 10 s. (dagster dev maps SIGTERM to its SIGINT handler, which a background start
    leaves ignored: without goat's supervision it kept running.)"""
    port = free_port()
    goat = str(Path(sys.executable).with_name("goat"))
    proc = start_in_background(
        [goat, "ui", "--host", "127.0.0.1", "--port", str(port)], clean_env(fresh_home), tmp_path / "ui.log"
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "ui.log").read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail("the Dagster UI did not come up: " + (tmp_path / "ui.log").read_text()[-3000:])
        names = " ".join(" ".join(p.cmdline()) for p in tree(proc.pid))
        assert "dagster_webserver" in names and "dagster._daemon" in names and "code-server" in names, names

        took, left = stop_and_wait(proc, sig)
        assert not left, f"still running {took:.1f} s after {signal.Signals(sig).name}: {left}"
        pid_file = fresh_home / "pg" / "postmaster.pid"
        deadline = time.monotonic() + STOP_WITHIN_S
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pid_file.exists(), "the embedded PostgreSQL of goat ui's GOAT_HOME is still running"
    finally:
        for p in tree(proc.pid) if proc.poll() is None else []:
            p.kill()
