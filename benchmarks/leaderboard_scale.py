"""The leaderboard as the lake grows: building it vs one bare DuckDB query over the same files.

    .venv/bin/python benchmarks/leaderboard_scale.py [--sizes 100000 1000000] [--repeat 3] [--keep DIR]
        [--json]

For each size, a synthetic lake (`synthetic_lake.py`: runs x 1000 tasks x 5 epochs, 20 models, 2
suites, one Parquet file per run; 20 runs for 100k rows, 200 for 1M) and two timings:

- the leaderboard: `build_leaderboard()` — the snapshot of the lake and everything computed from it,
  the same call the `leaderboard` asset makes — then its markdown, as the asset renders it;
- the floor: one bare DuckDB query over the same files giving the latest run per (model, suite) with
  its pass rate and error counts.

Target: the leaderboard within 3x of the bare query, and linear growth (10x the rows, about 10x the
time or less). Best of `--repeat`; the load average is printed with the figures (2 shared cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_lake import LakeShape, generate

from goat_dagster.analysis.leaderboard import build_leaderboard, details_markdown, leaderboard_markdown
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


def leaderboard(paths: GoatPaths) -> Any:
    board = build_leaderboard(paths)
    leaderboard_markdown(board), details_markdown(board)
    return board


def measure(home: Path, rows: int, repeat: int) -> dict[str, Any]:
    shape = LakeShape(runs=max(1, rows // (1000 * 5)), tasks=1000, epochs=5, models=20, suites=2)
    t0 = time.perf_counter()
    if not (home / "lake" / "results").is_dir():
        generate(home, shape)
    made = time.perf_counter() - t0
    paths = GoatPaths(home)
    t_bare, floor = best_of(repeat, lambda: bare(paths))
    t_board, board = best_of(repeat, lambda: leaderboard(paths))
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
        "ranked_runs": len(board.rows),
        "same_runs_ranked": same,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="keep (and reuse) the lakes under this directory")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="goat-lake-") as tmp:
        root = args.keep or Path(tmp)
        figures = [measure(root / f"lake-{n}", n, args.repeat) for n in args.sizes]
    out = {"load_average": os.getloadavg(), "cpus": os.cpu_count(), "sizes": figures}
    if len(figures) > 1:
        a, b = figures[0], figures[-1]
        out["growth"] = {
            "rows": b["rows"] / a["rows"],
            "leaderboard": b["leaderboard_s"] / a["leaderboard_s"],
            "bare_query": b["bare_query_s"] / a["bare_query_s"],
        }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    load = out["load_average"][0]
    cpus = out["cpus"]
    print(f"leaderboard vs bare DuckDB query, best of {args.repeat}; load average {load:.2f} on {cpus} CPUs")
    for f in figures:
        print(
            f"  {f['rows']:>9,} rows, {f['runs']:>3} files: leaderboard {f['leaderboard_s']:6.2f}s  "
            f"bare query {f['bare_query_s']:6.3f}s  ratio {f['ratio']:5.1f}x (target <= 3x)  "
            f"{f['ranked_runs']} ranked runs, same as the query's: {f['same_runs_ranked']}"
        )
    if "growth" in out:
        g = out["growth"]
        print(
            f"  growth for {g['rows']:.0f}x the rows: leaderboard {g['leaderboard']:.1f}x, "
            f"bare query {g['bare_query']:.1f}x"
        )


if __name__ == "__main__":
    main()
