"""Fixtures shared by every test area.

`goat_home` gives a test its own GOAT_HOME. `pg_instance` is a real Dagster instance on a real
embedded PostgreSQL (pgserver) for the whole session, exactly as `goat` builds it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


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
    return home


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
