"""A real `goat view` (a subprocess on a free port) over a GOAT_HOME made by real runs, and pages of
the session's real headless Chromium (tests/conftest.py's `browser`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PROJECT, free_port


class Viewer:
    """`goat view` on loopback, serving one GOAT_HOME."""

    def __init__(self, home: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        goat = str(Path(sys.executable).with_name("goat"))
        self.proc = subprocess.Popen(
            [goat, "view", "--port", str(self.port)],
            cwd=PROJECT,
            env={**os.environ, "GOAT_HOME": str(home), **(env or {})},
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"goat view exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError("goat view did not answer in 60 s")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)  # it must stop on SIGTERM
            self.proc.wait(15)


def goat(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI, as a user runs it."""
    res = subprocess.run(
        [str(Path(sys.executable).with_name("goat")), *args],
        cwd=PROJECT,
        env={**os.environ, "GOAT_HOME": str(home), **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr + res.stdout
    return res


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh page that fails the test on any JavaScript error or CSP violation it reports."""
    ctx = browser.new_context(viewport={"width": 1360, "height": 900})
    pg = ctx.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.problems = problems
    try:
        yield pg
    finally:
        ctx.close()
