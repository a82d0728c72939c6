"""Run summaries (analysis/summaries.py): the leaderboard read from them is the leaderboard read from
the rows, whatever state the summaries are in — all present, none (a lake from before them), one
missing (a run killed between its results and its summary), one stale (a resumed run replaced its
results file) — and concurrent writers never lose or duplicate a run's rows."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb

from goat_dagster.analysis.lake_index import index_dir, manifests_index, rollup_index, totals_index
from goat_dagster.analysis.leaderboard import Leaderboard, build_leaderboard
from goat_dagster.analysis.leaderboard_render import (
    comparison_markdown,
    details_markdown,
    leaderboard_markdown,
    matrix_markdown,
    paired_markdown,
)
from goat_dagster.analysis.snapshot import open_snapshot
from goat_dagster.analysis.summaries import plan_summaries, summary_file, write_summary
from goat_dagster.analysis.task_health import health_markdown
from goat_dagster.config import GoatPaths

from .conftest import fixed_results, result_row, write_parquet


def _same_floats(x: Any) -> Any:
    """Floats to 12 significant digits: a run's sums add the same numbers in another order."""
    if isinstance(x, float):
        return float(f"{x:.12g}") if math.isfinite(x) else x
    if isinstance(x, dict):
        return {k: _same_floats(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_same_floats(v) for v in x]
    return x


def seen(board: Leaderboard) -> tuple[Any, str]:
    """Everything the leaderboard says: its JSON and every markdown the asset shows."""
    text = "\n".join(
        [
            leaderboard_markdown(board),
            details_markdown(board),
            matrix_markdown(board),
            comparison_markdown(board.comparisons, board.paired_ab),
            paired_markdown(board),
            health_markdown(board.health),
        ]
    )
    return _same_floats(json.loads(json.dumps(board.to_json(), default=str))), text


def summaries(paths: GoatPaths) -> list[Path]:
    return sorted(paths.lake_summaries.glob("*.parquet"))


def test_the_leaderboard_is_the_same_with_and_without_summaries(fixed_lake: GoatPaths) -> None:
    from_rows = seen(build_leaderboard(fixed_lake, summaries=False))
    assert summaries(fixed_lake) == []  # reading the rows writes nothing

    first = build_leaderboard(fixed_lake)  # a lake from before summaries: written, then read
    assert [p.name for p in summaries(fixed_lake)] == [f"{r}.parquet" for r in sorted(fixed_results())]
    assert seen(first) == from_rows
    assert first.result_rows == sum(len(rows) for rows in fixed_results().values())

    with duckdb.connect() as con:  # now every results file is read through its summary
        plan = plan_summaries(
            con, sorted(fixed_lake.lake_results.glob("*.parquet")), fixed_lake.lake_summaries
        )
    assert len(plan.summaries) == 4 and plan.unsummarized == []
    assert seen(build_leaderboard(fixed_lake)) == from_rows

    # a run killed after its results and before its summary
    summary_file(fixed_lake.lake_summaries, fixed_lake.lake_results / "run-b1.parquet").unlink()
    with open_snapshot(fixed_lake, summaries=True) as snap:  # rebuilt and read
        assert snap.count("task_rollup") == 5 * 4
    assert seen(build_leaderboard(fixed_lake)) == from_rows


def test_a_stale_summary_is_never_read(fixed_lake: GoatPaths) -> None:
    build_leaderboard(fixed_lake)  # every run has its summary
    a2 = fixed_lake.lake_results / "run-a2.parquet"
    summary = summary_file(fixed_lake.lake_summaries, a2)
    old_summary = summary.read_bytes()
    # run-a2 resumed: its infra error redone and passed; the results file is replaced, the summary
    # (of the old file) is left as it was, as when a run is killed before writing the new one
    rows = fixed_results()["run-a2"]
    rows[-1] = result_row("run-a2", "alpha", 5, 0, "passed", day=1, wall_s=5.0, cost_usd=0.005)
    write_parquet(a2, rows)
    summary.write_bytes(old_summary)
    os.utime(summary)  # newer than the results file: only its recorded signature tells it is stale

    expected = seen(build_leaderboard(fixed_lake, summaries=False))
    board = build_leaderboard(fixed_lake)
    assert seen(board) == expected
    alpha = next(r for r in board.rows if r["model"] == "alpha")
    assert (alpha["passed"], alpha["errors"]) == (3, 0)
    assert summary.read_bytes() != old_summary  # rewritten for the new file


def test_a_lake_that_takes_no_summary_is_read_row_by_row(fixed_lake: GoatPaths) -> None:
    """Summaries that cannot be written (here `lake/summaries` is a file, as a read-only lake would
    refuse them too): the rows are read instead, and the numbers are the same."""
    expected = seen(build_leaderboard(fixed_lake, summaries=False))
    fixed_lake.lake_summaries.write_text("not a directory")
    assert seen(build_leaderboard(fixed_lake)) == expected


def test_concurrent_writers_never_lose_or_duplicate_rows(fixed_lake: GoatPaths) -> None:
    """Runs finishing (each writing its summary), snapshots rebuilding the same summaries and reading
    the lake, all at once: every run's tasks are counted once, and the numbers never change."""
    expected = seen(build_leaderboard(fixed_lake, summaries=False))
    files = sorted(fixed_lake.lake_results.glob("*.parquet"))
    attempts = sum(len(rows) for rows in fixed_results().values())

    def read() -> tuple[int, int, Any]:
        with open_snapshot(fixed_lake) as snap:
            counted = snap.con.execute("SELECT count(*), sum(attempts) FROM task_rollup").fetchone()
        assert counted is not None
        return int(counted[0]), int(counted[1]), seen(build_leaderboard(fixed_lake))

    with ThreadPoolExecutor(6) as pool:
        writes = [pool.submit(write_summary, f, fixed_lake.lake_summaries) for f in files * 5]
        reads = [pool.submit(read) for _ in range(6)]
        for w in writes:
            w.result()
        for r in reads:
            assert r.result() == (5 * len(files), attempts, expected)
    assert [p.name for p in summaries(fixed_lake)] == [f.name for f in files]
    assert not list(fixed_lake.lake_summaries.glob(".*"))  # no file left half-written


def _indexed(paths: GoatPaths) -> tuple[set[str], set[str]]:
    """The results files the lake index's rollup covers, and the runs its manifests index holds."""
    with duckdb.connect() as con:
        rollup = con.execute(
            "SELECT DISTINCT source_file FROM read_parquet(?)", [str(rollup_index(paths.lake_summaries))]
        ).fetchall()
        manifests = con.execute(
            "SELECT run_id FROM read_parquet(?)", [str(manifests_index(paths.lake_summaries))]
        ).fetchall()
    return {r for (r,) in rollup}, {r for (r,) in manifests}


def test_the_lake_index_holds_every_run_and_never_serves_a_replaced_file(fixed_lake: GoatPaths) -> None:
    """The first snapshot writes the index (every run's summary and manifest in one file each); a
    results file replaced since is read through its new summary, never through the index's rows
    of the old file, and the index is written again with the new ones."""
    expected = seen(build_leaderboard(fixed_lake, summaries=False))
    assert seen(build_leaderboard(fixed_lake)) == expected
    names = {f.name for f in fixed_lake.lake_results.glob("*.parquet")}
    manifests = {f.stem for f in fixed_lake.lake_runs.glob("*.parquet")}
    assert _indexed(fixed_lake) == (names, manifests)
    assert seen(build_leaderboard(fixed_lake)) == expected  # read through the index

    a2 = fixed_lake.lake_results / "run-a2.parquet"
    rows = fixed_results()["run-a2"]
    rows[-1] = result_row("run-a2", "alpha", 5, 0, "passed", day=1, wall_s=5.0, cost_usd=0.005)
    write_parquet(a2, rows)  # its summary and the index's rows are of the old file now
    expected = seen(build_leaderboard(fixed_lake, summaries=False))
    board = build_leaderboard(fixed_lake)
    assert seen(board) == expected
    assert next(r for r in board.rows if r["model"] == "alpha")["errors"] == 0
    with duckdb.connect() as con:
        size = con.execute(
            "SELECT DISTINCT source_size FROM read_parquet(?) WHERE source_file = 'run-a2.parquet'",
            [str(rollup_index(fixed_lake.lake_summaries))],
        ).fetchall()
    assert size == [(a2.stat().st_size,)]  # rewritten for the new file


def _lander(paths: GoatPaths) -> Callable[[int], None]:
    """`land(n)`: run `run-new<n>` (run-b1's rows) lands: its results file, then its summary."""
    template = fixed_results()["run-b1"]

    def land(n: int) -> None:
        run_id = f"run-new{n}"
        path = write_parquet(
            paths.lake_results / f"{run_id}.parquet", [{**r, "run_id": run_id} for r in template]
        )
        write_summary(path, paths.lake_summaries)

    return land


def test_runs_landing_while_snapshots_rewrite_the_index_are_counted_once(fixed_lake: GoatPaths) -> None:
    """New runs land (results file, then summary) while snapshots read the lake and rewrite the
    index at once: each snapshot counts every results file it lists exactly once, whichever index
    version it read, and in the end the index covers every run."""
    build_leaderboard(fixed_lake)  # the index of the first runs
    land = _lander(fixed_lake)

    def read() -> None:
        with open_snapshot(fixed_lake) as snap:
            files = len(snap.results_files)
            row = snap.con.execute("SELECT count(*), sum(attempts), count(DISTINCT run_id) FROM task_rollup")
            counted = row.fetchone()
            assert counted is not None
            assert (counted[0], counted[2]) == (5 * files, files)
            assert int(counted[1]) == snap.count("results")

    with ThreadPoolExecutor(6) as pool:
        jobs = [pool.submit(land, n) for n in range(8)] + [pool.submit(read) for _ in range(8)]
        for job in jobs:
            job.result()
    build_leaderboard(fixed_lake)
    assert _indexed(fixed_lake)[0] == {f.name for f in fixed_lake.lake_results.glob("*.parquet")}
    assert not list(index_dir(fixed_lake.lake_summaries).glob(".*"))  # no file left half-written


def _totals(paths: GoatPaths, index: Path | None = None) -> dict[str, tuple[str, int, int]]:
    """Run id -> (passed, source file, source size) of the lake index's stored `run_totals`."""
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT run_id, passed, source_file, source_size FROM read_parquet(?)",
            [str(index or totals_index(paths.lake_summaries))],
        ).fetchall()
    return {run_id: (passed, name, size) for run_id, passed, name, size in rows}


def _doctor_totals(source: Path, target: Path) -> None:
    """`target`: the stored totals of `source` with every run's `passed` changed (same signatures)."""
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT * REPLACE (passed + 100 AS passed) FROM read_parquet('{source}')) "
            f"TO '{target}' (FORMAT parquet)"
        )


def test_stored_run_totals_are_read_only_from_this_sql_and_this_file(fixed_lake: GoatPaths) -> None:
    """Each run's totals (`run_totals`: counts, interval, pass@k, cost, tokens) are stored in the
    lake index and read from there: only from the file named by the version of the SQL that makes
    them, and only while the run's results file is the one they were made from."""
    expected = seen(build_leaderboard(fixed_lake, summaries=False))
    assert seen(build_leaderboard(fixed_lake)) == expected  # computed, then stored
    index = totals_index(fixed_lake.lake_summaries)
    stored = _totals(fixed_lake)
    assert {name for _, name, _ in stored.values()} == {
        f.name for f in fixed_lake.lake_results.glob("*.parquet")
    }
    assert seen(build_leaderboard(fixed_lake)) == expected  # read through the index

    # the stored rows are what the snapshot reads: doctored in place, the board says so
    original = index.read_bytes()
    aside = index.with_name("aside.parquet")
    aside.write_bytes(original)
    _doctor_totals(aside, index)
    with open_snapshot(fixed_lake) as snap:
        passed = dict(snap.con.execute("SELECT run_id, passed FROM run_summary").fetchall())
    assert passed == {run_id: p + 100 for run_id, (p, _, _) in stored.items()}

    # the same rows under another version of the SQL are never read: computed, and stored again
    index.rename(index.with_name("runs-0123456789abcdef.parquet"))
    aside.unlink()
    assert seen(build_leaderboard(fixed_lake)) == expected
    assert _totals(fixed_lake) == stored

    # a results file replaced since: its run's totals are computed from its new summary
    a2 = fixed_lake.lake_results / "run-a2.parquet"
    rows = fixed_results()["run-a2"]
    rows[-1] = result_row("run-a2", "alpha", 5, 0, "passed", day=1, wall_s=5.0, cost_usd=0.005)
    write_parquet(a2, rows)
    aside.write_bytes(index.read_bytes())
    _doctor_totals(aside, index)  # the other runs' stored rows doctored: still read, a2's never
    aside.unlink()
    with open_snapshot(fixed_lake) as snap:
        passed = dict(snap.con.execute("SELECT run_id, passed FROM run_summary").fetchall())
    assert passed["run-a2"] == 3
    assert {r: p for r, p in passed.items() if r != "run-a2"} == {
        r: p + 100 for r, (p, _, _) in stored.items() if r != "run-a2"
    }
    assert _totals(fixed_lake)["run-a2"] == (3, "run-a2.parquet", a2.stat().st_size)  # stored again
    index.unlink()
    expected = seen(build_leaderboard(fixed_lake, summaries=False))
    assert seen(build_leaderboard(fixed_lake)) == expected


def test_runs_landing_while_snapshots_rewrite_the_stored_totals_are_counted_once(
    fixed_lake: GoatPaths,
) -> None:
    """New runs land while snapshots read the lake and rewrite the stored run totals at once: every
    snapshot's `run_summary` has each results file's run exactly once, with all its attempts, and in
    the end the index stores every run's totals."""
    build_leaderboard(fixed_lake)
    land = _lander(fixed_lake)

    def read() -> None:
        with open_snapshot(fixed_lake) as snap:
            files = {f.stem for f in snap.results_files}
            runs = snap.con.execute("SELECT run_id, attempts FROM run_summary").fetchall()
            assert sorted(r for r, _ in runs) == sorted(files)
            assert sum(a for _, a in runs) == snap.count("results")

    with ThreadPoolExecutor(6) as pool:
        jobs = [pool.submit(land, n) for n in range(8)] + [pool.submit(read) for _ in range(8)]
        for job in jobs:
            job.result()
    expected = seen(build_leaderboard(fixed_lake, summaries=False))
    assert seen(build_leaderboard(fixed_lake)) == expected
    assert set(_totals(fixed_lake)) == {f.stem for f in fixed_lake.lake_results.glob("*.parquet")}
    assert not list(index_dir(fixed_lake.lake_summaries).glob(".*"))
