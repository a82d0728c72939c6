"""Task health against a Python reference, on a lake with two suite versions, an oracle run, flaky
models, infra errors and a task only an older run of the current version has; read from the rows,
from the summaries, and from the lake index with stored run totals (what the leaderboard reads).
The snapshots' shared in-memory database: nothing of one snapshot is left in it or seen by
another. The leaderboard's snapshot loading only the rollup columns its SQL reads."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb

from goat_dagster.analysis import snapshot
from goat_dagster.analysis.leaderboard import LEADERBOARD_OBJECTS, build_leaderboard
from goat_dagster.analysis.snapshot import open_snapshot
from goat_dagster.analysis.task_health import task_health, task_health_in
from goat_dagster.config import GoatPaths

from .conftest import result_row, write_parquet

MODELS = ("alpha", "beta", "gamma", "delta")


def _run(
    run_id: str,
    model: str,
    day: int,
    version: str,
    tasks: range,
    epochs: int,
    rng: random.Random,
    agent: str = "builtin",
) -> list[dict[str, Any]]:
    rows = []
    for task in tasks:
        for epoch in range(epochs):
            roll = rng.random()
            status, kind = (
                ("passed", None)
                if roll < 0.5
                else ("failed", None)
                if roll < 0.85
                else ("error", rng.choice(["infra", "timeout"]))
            )
            if agent == "oracle":
                status, kind = ("failed", None) if task == 3 else ("passed", None)
            row = result_row(run_id, model, task, epoch, status, day=day, wall_s=1.0, error_kind=kind)
            rows.append(row | {"suite_version": version, "agent": agent})
    return rows


def _lake(paths: GoatPaths) -> list[dict[str, Any]]:
    rng = random.Random(15)
    runs = []
    for i, model in enumerate(MODELS):
        runs.append(_run(f"old-{model}", model, 1, "v1", range(1, 9), 2, rng))  # the older version
        runs.append(_run(f"mid-{model}", model, 3 + i % 2, "v2", range(1, 11), 3, rng))  # t10 only here
        runs.append(_run(f"new-{model}", model, 6 + i % 2, "v2", range(1, 10), 3, rng))
    runs.append(_run("oracle-1", "oracle", 5, "v2", range(1, 10), 1, rng, agent="oracle"))
    for rows in runs:
        write_parquet(paths.lake_results / f"{rows[0]['run_id']}.parquet", rows)
    return [r for rows in runs for r in rows]


def _reference(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """task_health by hand: the current version is the newest run's; per (model, oracle or not) the
    latest run of it; a task's outcome is the majority of its scored epochs."""
    runs: dict[str, dict[str, Any]] = {}
    for r in rows:
        run = runs.setdefault(r["run_id"], {**r, "finished_at": r["finished_at"]})
        run["started_at"] = min(run["started_at"], r["started_at"])
        run["finished_at"] = max(run["finished_at"], r["finished_at"])
    newest = max(runs.values(), key=lambda r: r["started_at"])
    version = newest["suite_version"]
    current = [r for r in runs.values() if r["suite_version"] == version]
    picked: dict[tuple[str, bool], dict[str, Any]] = {}
    for r in sorted(current, key=lambda r: (r["started_at"], r["finished_at"], r["run_id"])):
        picked[(r["model"], r["agent"] == "oracle")] = r
    per: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])  # (run, task) -> scored, passed
    infra: dict[str, list[int]] = {}
    for r in rows:
        if r["suite_version"] == version:
            counts = infra.setdefault(r["task_id"], [0, 0])
            counts[0] += r["error_kind"] == "infra"
            counts[1] += r["status"] == "error"
        if r["status"] in ("passed", "failed"):
            per[(r["run_id"], r["task_id"])][0] += 1
            per[(r["run_id"], r["task_id"])][1] += r["status"] == "passed"

    def outcome(run_id: str, task: str) -> str | None:
        if (run_id, task) not in per and not any(
            r["run_id"] == run_id and r["task_id"] == task for r in rows
        ):
            return None
        scored, passed = per.get((run_id, task), [0, 0])
        return "passed" if 2 * passed > scored else "failed" if scored else "error"

    oracle = next((r for (_, is_oracle), r in picked.items() if is_oracle), None)
    out = []
    for task in sorted(infra):
        models = [r for (_, is_oracle), r in picked.items() if not is_oracle]
        outs = [
            (r["model"], outcome(r["run_id"], task), per.get((r["run_id"], task), [0, 0])) for r in models
        ]
        outs = [o for o in outs if o[1] is not None]
        scored = sum(1 for _, _, (s, _) in outs if s > 0)
        passed = sum(1 for _, o, _ in outs if o == "passed")
        failed = sum(1 for _, o, _ in outs if o == "failed")
        flaky = sorted(m for m, _, (s, p) in outs if 0 < p < s)
        orc = outcome(oracle["run_id"], task) if oracle else None
        flags = [
            f
            for f, on in (
                ("oracle fails", orc == "failed"),
                ("oracle errors", orc == "error"),
                ("flaky", bool(flaky)),
                ("every model fails", scored >= 2 and passed == 0),
                ("every model passes", scored >= 2 and passed == scored),
                ("infra errors", infra[task][0] > 0),
            )
            if on
        ]
        out.append(
            (task, orc, scored, passed, failed, len(flaky), ",".join(flaky) or None, *infra[task], flags)
        )
    return out


def _as_tuples(health: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            h.task_id,
            h.oracle,
            h.models_scored,
            h.models_passed,
            h.models_failed,
            h.flaky_models,
            h.flaky_in,
            h.infra_errors,
            h.errors,
            h.flags,
        )
        for h in health
    ]


def test_task_health_matches_the_reference_from_rows_summaries_and_index(goat_paths: GoatPaths) -> None:
    rows = _lake(goat_paths)
    expected = _reference(rows)
    assert any(e[6] and "," in e[6] for e in expected)  # flaky in several models
    assert any("oracle fails" in e[-1] for e in expected) and any("infra errors" in e[-1] for e in expected)
    assert [e[0] for e in expected][-1] == "t9" and "t10" in [e[0] for e in expected]
    with open_snapshot(goat_paths, summaries=False) as snap:
        assert _as_tuples(task_health_in(snap.con)) == expected
    first = task_health(goat_paths)  # writes the summaries and the index
    assert (goat_paths.lake_summaries / "index").is_dir()
    assert _as_tuples(first) == expected
    assert _as_tuples(task_health(goat_paths)) == expected  # from the index and the stored totals
    assert _as_tuples(build_leaderboard(goat_paths).health) == expected


def test_snapshots_share_a_database_and_nothing_else(goat_paths: GoatPaths, tmp_path: Path) -> None:
    _lake(goat_paths)
    other = GoatPaths(tmp_path / "other")
    write_parquet(
        other.lake_results / "only.parquet", [result_row("only", "solo", 1, 0, "passed", day=1, wall_s=1.0)]
    )
    alone = {p: build_leaderboard(p).to_json() for p in (goat_paths, other)}
    boards: dict[tuple[int, GoatPaths], dict[str, Any]] = {}

    def build(i: int, p: GoatPaths) -> None:
        boards[(i, p)] = build_leaderboard(p).to_json()

    threads = [threading.Thread(target=build, args=(i, p)) for i in range(3) for p in (goat_paths, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(board == alone[p] for (_, p), board in boards.items()) and len(boards) == 6
    with snapshot._connect() as con:  # a new connection sees no object a snapshot made
        left = con.execute(
            "SELECT (SELECT count(*) FROM duckdb_tables())"
            " + (SELECT count(*) FROM duckdb_views() WHERE NOT internal)"
            " + (SELECT count(*) FROM duckdb_functions() WHERE function_type = 'macro' AND NOT internal)"
        ).fetchone()
        assert left == (0,)


def _index_columns(paths: GoatPaths) -> list[str]:
    (index,) = (paths.lake_summaries / "index").glob("rollup-*.parquet")
    return [name for name, *_ in duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{index}')").fetchall()]


def test_leaderboard_reads_the_columns_it_needs_and_the_index_keeps_every_one(goat_paths: GoatPaths) -> None:
    """The leaderboard's snapshot loads only the rollup columns its SQL reads while the index covers
    every file and every run's totals are stored; otherwise (a new run, totals not stored) every
    column, and the index it writes again has them all. The numbers are the same each way."""
    rows = _lake(goat_paths)
    build_leaderboard(goat_paths)  # writes the summaries, the index, the stored totals
    full = _index_columns(goat_paths)
    assert {"tool_calls", "run_task_p95_s", "sandbox"} <= set(full)

    def same_as_rows() -> None:
        assert (
            build_leaderboard(goat_paths).to_json()
            == build_leaderboard(goat_paths, summaries=False).to_json()
        )

    with open_snapshot(goat_paths, objects=LEADERBOARD_OBJECTS) as snap:
        loaded = {name for name, *_ in snap.con.execute(f"DESCRIBE {snapshot.ROLLUP_TABLE}").fetchall()}
        assert "tool_calls" not in loaded and "errors_infra" in loaded
    same_as_rows()
    new = _run("newest-alpha", "alpha", 9, "v2", range(1, 10), 3, random.Random(1))
    write_parquet(goat_paths.lake_results / "newest-alpha.parquet", new)  # the index lacks it
    same_as_rows()
    assert _index_columns(goat_paths) == full
    (index,) = (goat_paths.lake_summaries / "index").glob("rollup-*.parquet")
    assert duckdb.sql(f"SELECT count(*) FROM '{index}' WHERE run_id = 'newest-alpha'").fetchall() == [(9,)]
    for stored in (goat_paths.lake_summaries / "index").glob("runs-*.parquet"):
        stored.unlink()  # no stored totals: every run computed, from every column
    same_as_rows()
    assert _index_columns(goat_paths) == full
    assert len(rows) + len(new) == build_leaderboard(goat_paths).result_rows
