"""The leaderboard as the lake grows: building it vs one bare DuckDB query over the same files.

    .venv/bin/python benchmarks/leaderboard_scale.py [--sizes 100000 1000000] [--repeat 3] [--keep DIR]
        [--json]

For each size, a synthetic lake (`synthetic_lake.py`: runs x 1000 tasks x 5 epochs, 20 models, 2
suites, one Parquet file per run and its manifest; 20 runs for 100k rows, 200 for 1M) and these
timings:

- the floor: one bare DuckDB query over the same files giving the latest run per (model, suite) with
  its pass rate and error counts;
- the leaderboard: `build_leaderboard()` — the snapshot of the lake and everything computed from it,
  the same call the `leaderboard` asset makes — then every markdown the asset renders (leaderboard,
  details, per-task matrix, A/B, paired comparisons, task health); read from the runs' summaries
  through the lake index (`lake/summaries/`, analysis/summaries.py and lake_index.py: what a run
  writes when it finishes, and the one file per kind the snapshots keep). These two are timed
  alternately (bare, board, bare, board, ...) in a fresh process of their own, as the asset's step
  is one, after one unmeasured run of each: the ratio compares the same minutes of the machine, not
  a board timed after the reads of every row below;
- the same, reading every results row instead (`summaries=False`: the same numbers);
- once: the first leaderboard of a lake without summaries (made before them), which writes them all,
  and what one run's summary costs when it finishes (`write_summary` of one file).

Target: the leaderboard within 3x of the bare query, and linear growth (10x the rows, about 10x the
time or less). Best of `--repeat`; the load average is printed with the figures (2 shared cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_lake import LakeShape, generate

from goat_dagster.analysis.leaderboard import build_leaderboard
from goat_dagster.analysis.leaderboard_render import (
    comparison_markdown,
    details_markdown,
    leaderboard_markdown,
    matrix_markdown,
    paired_markdown,
)
from goat_dagster.analysis.summaries import write_summary
from goat_dagster.analysis.task_health import health_markdown
from goat_dagster.config import GoatPaths

BARE_QUERY = """
WITH runs AS (
    SELECT model, suite, run_id, min(started_at) AS started_at, max(finished_at) AS finished_at,
        count(*) FILTER (WHERE status = 'passed') AS passed,
        count(*) FILTER (WHERE status = 'failed') AS failed,
        count(*) FILTER (WHERE status = 'error') AS errors,
        count(*) FILTER (WHERE error_kind = 'infra') AS errors_infra,
        count(*) FILTER (WHERE error_kind = 'timeout') AS errors_timeout,
        count(*) FILTER (WHERE error_kind = 'agent') AS errors_agent,
        count(*) FILTER (WHERE error_kind = 'budget') AS errors_budget
    FROM read_parquet(?)
    GROUP BY model, suite, run_id
)
SELECT *, passed / nullif(passed + failed, 0) AS pass_rate FROM runs
QUALIFY row_number() OVER (PARTITION BY model, suite
                           ORDER BY started_at DESC, finished_at DESC, run_id DESC) = 1
ORDER BY suite, pass_rate DESC, model
"""


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def bare(paths: GoatPaths) -> list[tuple[Any, ...]]:
    with duckdb.connect(":memory:") as con:
        return con.execute(BARE_QUERY, [str(paths.lake_results / "*.parquet")]).fetchall()


def leaderboard(paths: GoatPaths, summaries: bool = True) -> Any:
    """What the asset computes and renders (its links apart)."""
    board = build_leaderboard(paths, summaries=summaries)
    leaderboard_markdown(board), details_markdown(board), matrix_markdown(board)
    comparison_markdown(board.comparisons, board.paired_ab), paired_markdown(board)
    health_markdown(board.health)
    return board


def alternating(home: Path, repeat: int) -> dict[str, Any]:
    """The bare query and the leaderboard, one after the other `repeat` times (after one of each
    unmeasured), in this process: each best of `repeat`, both taken in the same minutes."""
    paths = GoatPaths(home)
    bare(paths), leaderboard(paths)
    t_bare, t_board = [], []
    for _ in range(repeat):
        t_bare.append(best_of(1, lambda: bare(paths))[0])
        t_board.append(best_of(1, lambda: leaderboard(paths))[0])
    return {"bare_query_s": min(t_bare), "leaderboard_s": min(t_board)}


def measure(home: Path, rows: int, repeat: int) -> dict[str, Any]:
    shape = LakeShape(runs=max(1, rows // (1000 * 5)), tasks=1000, epochs=5, models=20, suites=2)
    t0 = time.perf_counter()
    if not (home / "lake" / "results").is_dir():
        generate(home, shape)
    made = time.perf_counter() - t0
    paths = GoatPaths(home)
    shutil.rmtree(paths.lake_summaries, ignore_errors=True)  # a lake from before summaries
    t_rows, from_rows = best_of(repeat, lambda: leaderboard(paths, summaries=False))
    t_first, _ = best_of(1, lambda: leaderboard(paths))
    board = leaderboard(paths)
    one = sorted(paths.lake_results.glob("*.parquet"))[-1]
    t_write, _ = best_of(repeat, lambda: write_summary(one, paths.lake_summaries))
    # the bare query and the leaderboard alternately, in a process of their own (as the asset's step
    # is): not after the reads of every row above in this one
    timed = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--alternating", str(home), "--repeat", str(repeat)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    t_bare, t_board = timed["bare_query_s"], timed["leaderboard_s"]
    floor = bare(paths)
    same = sorted((r[0], r[1], r[2]) for r in floor) == sorted(
        (r["model"], r["suite"], r["run_id"]) for r in board.rows
    )
    return {
        "rows": shape.rows,
        "runs": shape.runs,
        "generated_s": made,
        "bare_query_s": t_bare,
        "leaderboard_s": t_board,
        "ratio": t_board / t_bare,
        "leaderboard_from_rows_s": t_rows,
        "ratio_from_rows": t_rows / t_bare,
        "first_leaderboard_writing_summaries_s": t_first,
        "one_run_summary_s": t_write,
        "ranked_runs": len(board.rows),
        "same_runs_ranked": same,
        "same_numbers_from_rows": details_markdown(board) == details_markdown(from_rows),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="keep (and reuse) the lakes under this directory")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--alternating", type=Path, help=argparse.SUPPRESS)  # measure()'s own process
    args = ap.parse_args()
    if args.alternating:
        print(json.dumps(alternating(args.alternating, args.repeat)))
        return
    with tempfile.TemporaryDirectory(prefix="goat-lake-") as tmp:
        root = args.keep or Path(tmp)
        figures = [measure(root / f"lake-{n}", n, args.repeat) for n in args.sizes]
    out = {"load_average": os.getloadavg(), "cpus": os.cpu_count(), "sizes": figures}
    if len(figures) > 1:
        a, b = figures[0], figures[-1]
        out["growth"] = {
            "rows": b["rows"] / a["rows"],
            "leaderboard": b["leaderboard_s"] / a["leaderboard_s"],
            "leaderboard_from_rows": b["leaderboard_from_rows_s"] / a["leaderboard_from_rows_s"],
            "bare_query": b["bare_query_s"] / a["bare_query_s"],
        }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    load = ", ".join(f"{x:.2f}" for x in out["load_average"])
    cpus = out["cpus"]
    print(f"leaderboard vs bare DuckDB query, best of {args.repeat}; load average {load} on {cpus} CPUs")
    for f in figures:
        print(
            f"  {f['rows']:>9,} rows, {f['runs']:>3} files: bare query {f['bare_query_s']:6.3f}s\n"
            f"    leaderboard from summaries {f['leaderboard_s']:6.2f}s  ratio {f['ratio']:5.1f}x "
            f"(target <= 3x)  {f['ranked_runs']} ranked runs, same as the query's: {f['same_runs_ranked']}\n"
            f"    leaderboard from rows      {f['leaderboard_from_rows_s']:6.2f}s  ratio "
            f"{f['ratio_from_rows']:5.1f}x  same numbers: {f['same_numbers_from_rows']}\n"
            f"    first leaderboard, writing every summary "
            f"{f['first_leaderboard_writing_summaries_s']:.2f}s; "
            f"one run's summary {1000 * f['one_run_summary_s']:.0f} ms"
        )
    if "growth" in out:
        g = out["growth"]
        print(
            f"  growth for {g['rows']:.0f}x the rows: leaderboard {g['leaderboard']:.1f}x "
            f"(from rows {g['leaderboard_from_rows']:.1f}x), "
            f"bare query {g['bare_query']:.1f}x"
        )


if __name__ == "__main__":
    main()
