"""Comparisons of runs from one run x task matrix (analysis/pair_matrix.py), against the definitions.

A seeded lake of runs that differ in every way a comparison has to handle — 1, 3 and 5 epochs, infra
errors (a task with only errors is scored by nobody), tasks one run lacks or has alone, an unscored
attempt — and, for every ordered pair of its runs:

- the paired numbers are the exact values, correctly rounded: each computed here with `Fraction`s
  from the rows (the outcome of a task written out from its definition, a strict majority);
- the A/B (counts and every row) is what the warehouse's own `ab_compare_pairs` says;
- `goat compare A B` (a matrix of two runs) gives exactly the numbers the leaderboard's matrix of
  every run gives for the pair.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction
from itertools import permutations
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from goat_dagster.analysis import pair_matrix
from goat_dagster.analysis.comparability import ManifestDifferences, manifest_differences, manifests_of
from goat_dagster.analysis.compare import ComparedRuns, compare_in, comparisons_and_ranks
from goat_dagster.analysis.compare_sql import AB_CHANGE
from goat_dagster.analysis.leaderboard import build_leaderboard, compare_run_pairs
from goat_dagster.analysis.pair_matrix import CHANGES, OutcomeMatrix
from goat_dagster.analysis.snapshot import open_snapshot, query
from goat_dagster.config import GoatPaths

from .conftest import manifest, result_row, write_manifest_file, write_parquet

SEED = 2718
RUNS = {  # run id -> (model, epochs, tasks it has)
    "m-a": ("alpha", 1, range(1, 31)),
    "m-b": ("beta", 3, range(1, 31)),
    "m-c": ("gamma", 5, range(3, 34)),  # lacks t1, t2; has t31..t33 alone
    "m-d": ("alpha", 5, range(1, 29)),  # alpha again: an A/B pair with m-a
}


def varied_lake(paths: GoatPaths) -> dict[str, dict[str, list[str]]]:
    """Write the lake; return run -> task -> statuses by epoch."""
    rng = random.Random(SEED)
    statuses: dict[str, dict[str, list[str]]] = {}
    for day, (run_id, (model, epochs, tasks)) in enumerate(RUNS.items(), start=1):
        rows, mine = [], {}
        for t in tasks:
            got = []
            for e in range(1, epochs + 1):
                u = rng.random()
                status = "error" if u < 0.08 or t == 5 else "passed" if u < 0.55 else "failed"
                if run_id == "m-b" and t == 7:
                    status = "unscored"  # an answered prompt: no check judged it
                got.append(status)
                kind = "infra" if status == "error" else None
                rows.append(result_row(run_id, model, t, e, status, day=day, wall_s=1.0, error_kind=kind))
            mine[f"t{t}"] = got
        statuses[run_id] = mine
        write_parquet(paths.lake_results / f"{run_id}.parquet", rows)
        write_manifest_file(paths, manifest(run_id, model, epochs=epochs))
    return statuses


def outcome(got: list[str] | None) -> str | None:
    if got is None:
        return None
    passed, scored = got.count("passed"), got.count("passed") + got.count("failed")
    if scored:
        return "passed" if 2 * passed > scored else "failed"
    return "unscored" if "unscored" in got else "error"


def expected(a: dict[str, list[str]], b: dict[str, list[str]]) -> dict[str, Any]:
    """The paired numbers of B against A from the definitions, in exact arithmetic."""

    def frac(got: list[str]) -> Fraction | None:
        scored = got.count("passed") + got.count("failed")
        return Fraction(got.count("passed"), scored) if scored else None

    fa = {t: f for t, got in a.items() if (f := frac(got)) is not None}
    fb = {t: f for t, got in b.items() if (f := frac(got)) is not None}
    shared = sorted(fa.keys() & fb.keys())
    n = len(shared)
    d = [fb[t] - fa[t] for t in shared]
    mean = sum(d, Fraction(0)) / n if n else None
    var = sum(((x - mean) ** 2 for x in d), Fraction(0)) / (n - 1) if n > 1 else None
    flips = {
        (oa, ob): [
            t for t in sorted(a.keys() | b.keys()) if (outcome(a.get(t)), outcome(b.get(t))) == (oa, ob)
        ]
        for oa, ob in (("passed", "failed"), ("failed", "passed"))
    }
    return {
        "shared_tasks": n,
        "only_a": sorted(fa.keys() - fb.keys()),
        "only_b": sorted(fb.keys() - fa.keys()),
        "pass_rate_a": float(sum((fa[t] for t in shared), Fraction(0)) / n) if n else None,
        "pass_rate_b": float(sum((fb[t] for t in shared), Fraction(0)) / n) if n else None,
        "mean_d": float(mean) if mean is not None else None,
        "sd_d": math.sqrt(float(var)) if var is not None else None,
        "pass_to_fail": flips[("passed", "failed")],
        "fail_to_pass": flips[("failed", "passed")],
    }


@pytest.fixture
def varied(goat_paths: GoatPaths) -> tuple[GoatPaths, dict[str, dict[str, list[str]]]]:
    return goat_paths, varied_lake(goat_paths)


@pytest.mark.parametrize("cells_at_once", [2**20, 40])  # all pairs at once; one pair at a time
def test_every_pair_has_the_exact_numbers(
    varied: tuple[GoatPaths, dict], cells_at_once: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, statuses = varied
    monkeypatch.setattr(pair_matrix, "_CELLS_AT_ONCE", cells_at_once)
    pairs = list(permutations(RUNS, 2))
    with open_snapshot(paths) as snap:
        numbers = ComparedRuns(snap.con, list(RUNS)).numbers(pairs)
    for (a, b), got in zip(pairs, numbers, strict=True):
        want = expected(statuses[a], statuses[b])
        assert {k: getattr(got, k) for k in want} == want, (a, b)
    # what the lake holds to compare: tasks one run lacks, an unscored task, tasks nobody scored
    c_vs_a = numbers[pairs.index(("m-a", "m-c"))]
    assert {"t1", "t2"} <= set(c_vs_a.only_a) and {"t31", "t32", "t33"} <= set(c_vs_a.only_b)
    assert "t5" not in c_vs_a.only_a + c_vs_a.only_b  # errors only, in both


def test_the_ab_is_the_warehouse_macro(varied: tuple[GoatPaths, dict]) -> None:
    paths, _ = varied
    pairs = list(permutations(RUNS, 2))
    with open_snapshot(paths) as snap:
        made = compare_run_pairs(snap.con, pairs)
        flips = compare_run_pairs(snap.con, pairs, flips_only=True)
        rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in query(
            snap.con, "SELECT * FROM ab_compare_pairs(?, ?)", [[a for a, _ in pairs], [b for _, b in pairs]]
        ):
            rows.setdefault((r.pop("pair_a"), r.pop("pair_b")), []).append(r)
    seen = set()
    for c, f in zip(made, flips, strict=True):
        sql = rows[(c.run_a, c.run_b)]
        assert list(c.rows) == sql  # every row, in the macro's order
        assert c.counts == {change: sum(r["change"] == change for r in sql) for change in CHANGES}
        assert f.counts == c.counts and list(f.rows) == [
            r for r in sql if r["change"] in ("pass→fail", "fail→pass")
        ]
        assert f.changes() == [(r["task_id"], r["change"]) for r in f.rows]
        seen.update(r["change"] for r in sql)
        seen.update((r["outcome_a"], r["outcome_b"]) for r in sql)
    assert set(CHANGES) <= seen and ("unscored", "passed") in seen and ("missing", "failed") in seen


def test_two_runs_alone_give_what_the_leaderboard_gives(varied: tuple[GoatPaths, dict]) -> None:
    paths, _ = varied
    board = build_leaderboard(paths, run_ids=["m-b", "m-c", "m-d"], compare=("m-a", "m-d"))
    assert board.ranked and len(board.paired) == 3
    with open_snapshot(paths) as snap:
        for c in [*board.paired, *board.paired_ab]:
            assert compare_in(snap.con, c.run_a.run_id, c.run_b.run_id) == c
        # and the order of the pairs asked changes nothing
        pairs = [(c.run_a.run_id, c.run_b.run_id) for c in board.paired]
        again = comparisons_and_ranks(snap.con, list(reversed(pairs)), [])[0]
        assert list(reversed(again)) == board.paired


def outcome_table(runs: dict[str, dict[int, tuple[int, int]]]) -> duckdb.DuckDBPyConnection:
    """A connection whose `task_outcomes` holds these runs' (passed, scored) per task, and `ab_change`."""
    con = duckdb.connect()
    con.execute(AB_CHANGE[2])
    rows = [
        {
            "run_id": run,
            "task_id": f"t{t:02d}",
            "scored": s,
            "passed": p,
            "pass_frac": p / s,
            "outcome": "passed" if 2 * p > s else "failed",
            "cell": f"{p}/{s}",
        }
        for run, by_task in runs.items()
        for t, (p, s) in by_task.items()
    ]
    con.register("task_outcomes", pa.Table.from_pylist(rows))
    return con


def exact_mean_d(runs: dict[str, dict[int, tuple[int, int]]]) -> Fraction:
    d = [Fraction(*runs["y"][t]) - Fraction(*runs["x"][t]) for t in runs["x"]]
    return sum(d, Fraction(0)) / len(d)


def test_the_unit_divides_every_scored_count() -> None:
    """Scored counts 2 and 3 only (every task scored, none by one attempt): the unit is their least
    common multiple, 6, whichever of them is smallest."""
    runs = {"x": {1: (1, 2), 2: (2, 3), 3: (0, 3)}, "y": {1: (2, 3), 2: (1, 2), 3: (1, 2)}}
    matrix = OutcomeMatrix.load(outcome_table(runs), ["x", "y"])
    (got,) = matrix.pairs([("x", "y")])
    assert matrix.unit == 6 and got.mean_d == float(exact_mean_d(runs))


def test_sums_beyond_int64_are_exact() -> None:
    """23 epochs with every scored count from 1 to 23: L = lcm(1..23) and T x L^2 passes 2^62, so
    the sums are Python integers; the numbers are still the exact ones."""
    tasks = range(1, 24)
    runs = {"x": {t: (t // 2, t) for t in tasks}, "y": {t: ((3 * t) // 4, t) for t in tasks}}
    con = outcome_table(runs)
    matrix = OutcomeMatrix.load(con, ["x", "y"])
    assert matrix.x.dtype == object and matrix.unit == math.lcm(*tasks)
    (got,) = matrix.pairs([("x", "y")])
    d = [Fraction(runs["y"][t][0], t) - Fraction(runs["x"][t][0], t) for t in tasks]
    mean = sum(d, Fraction(0)) / len(d)
    assert got.mean_d == float(mean)
    assert got.sd_d == math.sqrt(float(sum(((x - mean) ** 2 for x in d), Fraction(0)) / (len(d) - 1)))
    assert got.pass_rate_a == float(sum((Fraction(p, s) for p, s in runs["x"].values()), Fraction(0)) / 23)

    twice = con.sql("SELECT * FROM task_outcomes UNION ALL (FROM task_outcomes LIMIT 1)").to_arrow_table()
    con.register("task_outcomes", twice)  # a (run, task) twice
    with pytest.raises(ValueError, match="run x has more than one row for task t01"):
        OutcomeMatrix.load(con, ["x", "y"])


def test_manifest_differences_once_per_distinct_pair(varied: tuple[GoatPaths, dict]) -> None:
    paths, _ = varied
    write_manifest_file(
        paths,
        manifest(
            "m-b", "beta", epochs=3, sampling={"temperature": 0.7, "tool_choice": "auto", "max_tokens": 1024}
        ),
    )
    (paths.lake_runs / "m-c.parquet").unlink()  # a run made before manifests
    with open_snapshot(paths) as snap:
        manifests = manifests_of(snap.con, list(RUNS))
    diffs = ManifestDifferences(manifests)
    for a, b in permutations(RUNS, 2):
        assert diffs(a, b) == manifest_differences(manifests.get(a), manifests.get(b)), (a, b)
    assert [d.field for d in diffs("m-a", "m-b")] == ["sampling.temperature"]
    assert [d.field for d in diffs("m-a", "m-c")] == ["manifest"]
