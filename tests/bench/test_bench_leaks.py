"""Nothing is left open behind a failure or a query: worker logs, DuckDB connections."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from goat_dagster.analysis import runs, snapshot
from goat_dagster.bench import lake
from goat_dagster.bench.local_sandbox import LocalSandboxPool
from goat_dagster.bench.sandbox import PoolOptions, SandboxError
from tests.conftest import benchmark


def open_files(name: str) -> list[str]:
    out = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed while we looked
            continue
        if name in target:
            out.append(target)
    return out


def test_a_worker_that_cannot_start_leaves_its_log_closed(tmp_path: Path) -> None:
    before = open_files("worker.log")
    with pytest.raises(SandboxError, match="cannot start the sandbox worker") as failed:
        LocalSandboxPool(PoolOptions(size=1), bwrap=str(tmp_path / "no-such-bwrap"))
    assert failed.traceback  # the error (and what its frames hold) is still alive here
    assert open_files("worker.log") == before


def test_lake_queries_close_their_connections(goat_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connection a lake query opens is closed after it: its own database's, and the cursor a
    snapshot opens on the process's in-memory database (snapshot.py; that database itself stays
    open for the process, by design: a snapshot's objects are its cursor's, dropped with it)."""
    s = benchmark(suite="smoke", model="smollm2-135m", agent="oracle", task_ids=["fizzbuzz"])
    opened: list[duckdb.DuckDBPyConnection] = []
    connect = duckdb.connect
    database = snapshot._database()

    def tracking_connect(*args: object, **kwargs: object) -> duckdb.DuckDBPyConnection:
        con = connect(*args, **kwargs)  # a real connection; we only keep a handle to look at it
        opened.append(con)
        return con

    class TrackingDatabase:  # the process's database, its cursors kept to look at them
        def cursor(self) -> duckdb.DuckDBPyConnection:
            con = database.cursor()
            opened.append(con)
            return con

    monkeypatch.setattr(duckdb, "connect", tracking_connect)
    monkeypatch.setattr(snapshot, "_database", TrackingDatabase)
    assert len(lake.read_rows(s.run_id)) == 1
    assert runs.run_summaries()[0]["run_id"] == s.run_id
    assert runs.latest_run("smollm2-135m")["run_id"] == s.run_id
    assert len(opened) == 3
    for con in opened:
        with pytest.raises(duckdb.ConnectionException, match="closed"):
            con.execute("SELECT 1")
