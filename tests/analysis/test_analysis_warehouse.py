"""The warehouse file: views created once, queried from fresh connections, kept current by version,
and safe when benchmark writers, leaderboard builds and readers of the file run at the same time
(separate processes: DuckDB's lock is per process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pytest

from goat_dagster.analysis.leaderboard import build_leaderboard
from goat_dagster.analysis.snapshot import open_snapshot, query
from goat_dagster.analysis.warehouse import META_TABLE, ensure_warehouse
from goat_dagster.analysis.warehouse_sql import views_version
from goat_dagster.config import GoatPaths
from tests.analysis.conftest import fixed_results, result_row, write_parquet


def extra_run(paths: GoatPaths, n: int) -> None:
    """One more finished run written into the lake the way a benchmark run does."""
    run_id = f"run-x{n}"
    rows = [
        result_row(run_id, f"model-{n}", t, 0, "passed" if t <= n % 5 else "failed", day=2, wall_s=1.0)
        for t in range(1, 6)
    ]
    write_parquet(paths.lake_results / f"{run_id}.parquet", rows)


@contextmanager
def holding(paths: GoatPaths, read_only: bool) -> Iterator[None]:
    """Another process with warehouse.duckdb open (like a user in the duckdb CLI), until the block ends."""
    code = (
        "import duckdb, sys\n"
        f"con = duckdb.connect({str(paths.warehouse)!r}, read_only={read_only})\n"
        "print('open', flush=True)\n"
        "sys.stdin.readline()\n"
        "con.close()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


def test_views_in_the_file_from_a_fresh_connection(fixed_lake: GoatPaths) -> None:
    assert ensure_warehouse(fixed_lake).state == "created"
    assert ensure_warehouse(fixed_lake).state == "current"  # nothing to write the second time

    snapshot_rows = build_leaderboard(fixed_lake).rows
    with duckdb.connect(str(fixed_lake.warehouse), read_only=True) as con:
        file_rows = query(con, "SELECT * FROM leaderboard")
        assert file_rows == snapshot_rows  # the same SQL over the glob gives the same numbers
        assert con.execute("SELECT count(*) FROM results").fetchone() == (30,)
        assert con.execute("SELECT count(*) FROM calls WHERE run_id = 'run-a2'").fetchone() == (6,)
        flips = con.execute(
            "SELECT task_id, change FROM ab_compare('run-a1', 'run-a2') "
            "WHERE change LIKE '%→%' ORDER BY task_id"
        ).fetchall()
        assert flips == [("t2", "pass→fail"), ("t3", "fail→pass")]
        assert con.execute(f"SELECT value FROM {META_TABLE} WHERE key = 'views_version'").fetchone() == (
            views_version(fixed_lake),
        )

    # the views follow the lake through their globs: a new run shows without touching the file
    extra_run(fixed_lake, 3)
    assert ensure_warehouse(fixed_lake).state == "current"
    with duckdb.connect(str(fixed_lake.warehouse), read_only=True) as con:
        assert con.execute("SELECT passed FROM leaderboard WHERE model = 'model-3'").fetchone() == (3,)


def test_views_on_an_empty_lake_fill_in_later(goat_paths: GoatPaths) -> None:
    assert ensure_warehouse(goat_paths).state == "created"  # no lake directory yet
    with duckdb.connect(str(goat_paths.warehouse), read_only=True) as con:
        for view in (
            "results",
            "traces",
            "calls",
            "task_outcomes",
            "run_summary",
            "leaderboard",
            "task_matrix",
        ):
            assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,), view
        assert [d[0] for d in con.execute("SELECT * FROM results").description][:3] == [
            "run_id",
            "suite",
            "suite_version",
        ]
    for run_id, rows in fixed_results().items():
        write_parquet(goat_paths.lake_results / f"{run_id}.parquet", rows)
    with duckdb.connect(str(goat_paths.warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM leaderboard").fetchone() == (3,)
        assert con.execute("SELECT count(*) FROM traces").fetchone() == (0,)  # results, no traces


def test_changed_sql_recreates_views_and_drops_stale_ones(fixed_lake: GoatPaths) -> None:
    ensure_warehouse(fixed_lake)
    with duckdb.connect(str(fixed_lake.warehouse)) as con:  # what an older goat version left behind
        con.execute(f"UPDATE {META_TABLE} SET value = 'old' WHERE key = 'views_version'")
        con.execute("CREATE VIEW old_view AS SELECT 1 AS x")
        con.execute(f"INSERT INTO {META_TABLE} VALUES ('object:old_view', 'VIEW')")
    assert ensure_warehouse(fixed_lake).state == "updated"
    with duckdb.connect(str(fixed_lake.warehouse), read_only=True) as con:
        views = {
            r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        }
        assert "old_view" not in views and {"leaderboard", "task_matrix", "run_summary"} <= views


def test_a_locked_file_never_blocks_the_numbers(fixed_lake: GoatPaths) -> None:
    ensure_warehouse(fixed_lake)
    # someone reads the file: we can read alongside, and nothing needs writing
    with holding(fixed_lake, read_only=True):
        assert ensure_warehouse(fixed_lake, timeout_s=5).state == "current"

    with duckdb.connect(str(fixed_lake.warehouse)) as con:
        con.execute(f"UPDATE {META_TABLE} SET value = 'old' WHERE key = 'views_version'")
    with holding(fixed_lake, read_only=False):  # another process holds the write lock
        started = time.monotonic()
        status = ensure_warehouse(fixed_lake, timeout_s=0.5)
        assert status.state == "busy" and "lock" in status.detail.lower()
        assert time.monotonic() - started < 5  # a short retry, then give up
        # the leaderboard itself is computed in memory and does not wait for the file
        assert build_leaderboard(fixed_lake).rows[0]["pass_rate"] == 0.5
    assert ensure_warehouse(fixed_lake).state == "updated"  # once free, the views catch up


WORKER = textwrap.dedent(
    """
    import json, os, sys
    import duckdb
    from goat_dagster.analysis.leaderboard import build_leaderboard
    from goat_dagster.analysis.warehouse import ensure_warehouse, is_lock_error
    from goat_dagster.config import paths

    out = {"states": [], "runs": [], "file_rows": []}
    while True:
        stop = os.path.exists(sys.argv[1])
        out["states"].append(ensure_warehouse(timeout_s=30).state)
        out["runs"].append(build_leaderboard().runs_in_lake)
        while True:  # a reader of the file retries while a writer holds it
            try:
                with duckdb.connect(str(paths().warehouse), read_only=True) as con:
                    out["file_rows"].append(con.execute("SELECT count(*) FROM run_summary").fetchone()[0])
                break
            except duckdb.Error as exc:
                if not is_lock_error(exc):
                    raise
        print("progress", flush=True)
        if stop:
            break
    print(json.dumps(out), flush=True)
    """
)


@pytest.mark.timeout(120)
def test_concurrent_writers_and_readers(fixed_lake: GoatPaths) -> None:
    stop = fixed_lake.home / "stop"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(stop)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    # benchmark runs land while the workers build: each new file after a worker finished a round
    for n in range(10):
        assert workers[n % 3].stdout.readline().strip() == "progress", workers[n % 3].stderr.read()
        extra_run(fixed_lake, n)
    stop.touch()
    outputs = []
    for proc in workers:
        stdout, stderr = proc.communicate(timeout=90)
        assert proc.returncode == 0, stderr
        outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    states = [s for out in outputs for s in out["states"]]
    assert states.count("created") == 1 and set(states) == {"created", "current"}
    for out in outputs:
        # every round saw a consistent lake: runs only ever appear, and the last round sees them all
        assert out["runs"] == sorted(out["runs"]) and out["runs"][0] >= 4 and out["runs"][-1] == 14
        assert out["file_rows"] == sorted(out["file_rows"]) and out["file_rows"][-1] == 14
    assert sum(len(out["runs"]) for out in outputs) >= 13
    with open_snapshot(fixed_lake) as snap:
        assert snap.count("run_summary") == 14 and snap.skipped == []
