"""A real `goat ui` (dagster dev: webserver + daemon) on the session's PostgreSQL instance (the
headless Chromium that opens it, `browser`, is tests/conftest.py's)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CHROMIUM

PROJECT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(url)


def start_ui(port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    goat = str(Path(sys.executable).with_name("goat"))
    return subprocess.Popen(
        [goat, "ui", "--host", "127.0.0.1", "--port", str(port)],
        cwd=PROJECT,
        env={**os.environ, **(env or {})},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)


@pytest.fixture(scope="session")
def dagster_ui(pg_instance, stack_env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`goat ui` on the session's instance, with the session's local stack (two local models,
    goat serve and the proxy on their own ports): runs it launches use the same servers."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
    logs = tmp_path_factory.mktemp("ui-logs")
    port = free_port()
    proc = start_ui(port, logs / "goat-ui.log", stack_env.env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/server_info", proc)
        yield url
    finally:
        stop(proc)


def dismiss_community_dialog(page) -> None:
    """A first visit shows "Join the Dagster community": click Skip when it is there."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=5000)
        skip.click()
    except Exception:
        pass
