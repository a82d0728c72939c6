"""Dagster's fixed cost per run: one partition of `benchmark_results` through Dagster vs a bare `goat run`.

    .venv/bin/python benchmarks/dagster_run.py [--model smollm2-135m] [--repeat 3] [--json]

The work is the same in both: HumanEval's 164 tasks with the oracle agent (no model calls), so what
is left over is Dagster's. Timed end to end as the commands a user types:

- `goat run --suite humaneval --agent oracle` (the bare run);
- `dagster asset materialize --select benchmark_results --partition MODEL` (the partition added
  first), with the embedded PostgreSQL cold (the command starts it and stops it on exit, as on a
  machine where nothing else holds it) and warm (another process holds it, as `goat ui` or the daemon
  does while runs are launched from the UI).

Where the Dagster run's time goes, from its own event log (wall-clock timestamps) and probes:
interpreter and `import dagster`, loading the code location (`goat_dagster.definitions`), the instance
(PostgreSQL started or joined), up to RUN_START (run creation); the executor up to STEP_START (a step
subprocess re-loads the code location under the multiprocess executor); the step itself, split into
the benchmark's task phase (first task start to last task end, from its rows) and the rest (events
written to the instance, the run's summary, views, metadata, checks); the end of the run and the exit
of the process (the embedded PostgreSQL stopped when cold).

A run launched from the UI or a sensor goes through the run queue first: the daemon dequeues it on its
next tick (`dequeue_interval_seconds` of the run coordinator in dagster.yaml), the code server's run
launcher starts a run worker, which loads the code location and joins the warm instance: the "warm"
figures without the CLI, plus that wait.

Each measurement is repeated (`--repeat`); the best and the median are printed. The machine is shared:
the load average is printed with the figures.
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
from typing import Any

import duckdb
import yaml

PROJECT = Path(os.environ.get("GOAT_PROJECT_DIR") or Path(__file__).resolve().parents[1])
BIN = Path(sys.executable).parent
# a fresh interpreter's stamps (wall clock): started, dagster imported, code location loaded, instance up
PROBE = """
import time; t = [time.time()]
import dagster; t.append(time.time())
import goat_dagster.definitions; t.append(time.time())
from goat_dagster.instance import ensure_instance; ensure_instance(); t.append(time.time())
print(t)
"""
EVENTS = ("RUN_START", "STEP_WORKER_STARTING", "STEP_START", "STEP_SUCCESS", "RUN_SUCCESS")


def child_env(home: Path, warm: bool) -> dict[str, str]:
    env = {**os.environ, "GOAT_HOME": str(home), "GOAT_PROJECT_DIR": str(PROJECT)}
    env["DAGSTER_HOME"] = str(home / "dagster")
    if not warm:  # the child starts (and stops) the embedded server itself
        for name in ("DAGSTER_PG_URL", "GOAT_PG_EMBEDDED"):
            env.pop(name, None)
    return env


def bare_run(home: Path, model: str) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(
        [str(BIN / "goat"), "run", "--suite", "humaneval", "--model", model, "--agent", "oracle", "--json"],
        capture_output=True,
        text=True,
        env=child_env(home, warm=False),
    )
    took = time.perf_counter() - t0
    if res.returncode != 0 or json.loads(res.stdout)["passed"] != 164:
        raise SystemExit(f"goat run failed:\n{res.stdout[-1000:]}\n{res.stderr[-2000:]}")
    return took


def probe(home: Path, warm: bool) -> dict[str, float]:
    start = time.time()
    res = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=child_env(home, warm)
    )
    end = time.time()
    if res.returncode != 0:
        raise SystemExit(f"probe failed:\n{res.stderr[-2000:]}")
    t = json.loads(res.stdout.strip().splitlines()[-1])
    return {
        "interpreter": t[0] - start,
        "import_dagster": t[1] - t[0],
        "load_code_location": t[2] - t[1],
        "instance": t[3] - t[2],
        "exit": end - t[3],
    }


def materialize(home: Path, model: str, warm: bool) -> tuple[float, float, float]:
    run_config = {"ops": {"benchmark_results": {"config": {"suite": "humaneval", "agent": "oracle"}}}}
    cmd = [
        str(BIN / "dagster"), "asset", "materialize", "-m", "goat_dagster.definitions",
        "--select", "benchmark_results", "--partition", model, "--config-json", json.dumps(run_config),
    ]  # fmt: skip
    start = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, env=child_env(home, warm), cwd=PROJECT)
    end = time.time()
    if res.returncode != 0:
        raise SystemExit(f"dagster asset materialize failed:\n{res.stderr[-3000:]}")
    return start, end, end - start


def breakdown(instance: Any, home: Path, start: float, end: float) -> dict[str, float]:
    """The phases of the newest run, from its event log and its rows in the lake."""
    run = instance.get_runs(limit=1)[0]
    stamps: dict[str, float] = {}
    for entry in instance.all_logs(run.run_id):
        if entry.dagster_event and entry.dagster_event.event_type.name in EVENTS:
            stamps.setdefault(entry.dagster_event.event_type.name, entry.timestamp)
    lake = home / "lake" / "results" / f"dg-{run.run_id[:8]}-*.parquet"
    [(first, last)] = duckdb.sql(
        f"SELECT epoch(min(started_at)), epoch(max(finished_at)) FROM read_parquet('{lake}')"
    ).fetchall()
    step = stamps["STEP_SUCCESS"] - stamps["STEP_START"]
    return {
        "to_run_start": stamps["RUN_START"] - start,
        "executor_to_step_start": stamps["STEP_START"] - stamps["RUN_START"],
        "step_task_phase": last - first,
        "step_rest": step - (last - first),
        "step_to_run_end": stamps["RUN_SUCCESS"] - stamps["STEP_SUCCESS"],
        "run_end_to_exit": end - stamps["RUN_SUCCESS"],
        "subprocess_step": "STEP_WORKER_STARTING" in stamps,
    }


def summarize(xs: list[float]) -> dict[str, float]:
    return {"best": min(xs), "median": statistics.median(xs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="goat-dagster-run-") as tmp:
        home = Path(tmp)
        os.environ.update(GOAT_HOME=str(home), GOAT_PROJECT_DIR=str(PROJECT))
        from goat_dagster.instance import ensure_instance, stop_postgres

        instance = ensure_instance()
        instance.add_dynamic_partitions("models", [args.model])
        bare, runs, probes = [], {"cold": [], "warm": []}, {"cold": [], "warm": []}
        for _ in range(args.repeat):
            bare.append(bare_run(home, args.model))
            for mode in ("cold", "warm"):
                warm = mode == "warm"
                if not warm:
                    stop_postgres()  # nobody holds the embedded server: the command starts it
                probes[mode].append(probe(home, warm))
                start, end, took = materialize(home, args.model, warm)
                instance = ensure_instance()
                runs[mode].append({"wall": took, **breakdown(instance, home, start, end)})
        queue = yaml.safe_load((PROJECT / "dagster.yaml").read_text())["run_coordinator"]["config"]
        stop_postgres()

    figures: dict[str, Any] = {
        "model": args.model,
        "repeat": args.repeat,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "bare_goat_run_s": summarize(bare),
        "dequeue_interval_s": queue.get("dequeue_interval_seconds", 5),
    }
    for mode in ("cold", "warm"):
        best = min(runs[mode], key=lambda r: r["wall"])
        figures[mode] = {
            "dagster_run_s": summarize([r["wall"] for r in runs[mode]]),
            "overhead_s": min(r["wall"] for r in runs[mode]) - min(bare),
            "phases_of_best": best,
            "probe_median": {k: statistics.median(p[k] for p in probes[mode]) for k in probes[mode][0]},
        }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"HumanEval oracle, 164 tasks, model {args.model}, {args.repeat} repeats; "
        f"load average {figures['load_average'][0]:.2f} on {figures['cpus']} CPUs"
    )
    b = figures["bare_goat_run_s"]
    print(f"  bare goat run:                 best {b['best']:6.2f}s  median {b['median']:6.2f}s")
    for mode in ("cold", "warm"):
        f = figures[mode]
        d = f["dagster_run_s"]
        print(
            f"  dagster asset materialize ({mode} PostgreSQL): best {d['best']:6.2f}s  median "
            f"{d['median']:6.2f}s  overhead over bare {f['overhead_s']:+.2f}s (target < 4 s)"
        )
        p, q = f["phases_of_best"], f["probe_median"]
        print(f"    CLI start -> RUN_START        {p['to_run_start']:6.2f}s   of which (probe, median):")
        print(f"      interpreter                 {q['interpreter']:6.2f}s")
        print(f"      import dagster              {q['import_dagster']:6.2f}s")
        print(f"      load goat_dagster.definitions {q['load_code_location']:4.2f}s")
        print(f"      instance (PostgreSQL)       {q['instance']:6.2f}s")
        step_kind = "a step subprocess" if p["subprocess_step"] else "in process"
        print(f"    RUN_START -> STEP_START       {p['executor_to_step_start']:6.2f}s   ({step_kind})")
        print(f"    step: the benchmark's tasks   {p['step_task_phase']:6.2f}s")
        rest = p["step_rest"]
        print(f"    step: the rest                {rest:6.2f}s   (events, summary, views, metadata)")
        print(f"    STEP_SUCCESS -> RUN_SUCCESS   {p['step_to_run_end']:6.2f}s")
        exit_s = p["run_end_to_exit"]
        print(f"    RUN_SUCCESS -> exit           {exit_s:6.2f}s   (probe's exit: {q['exit']:.2f}s)")
    print(
        f"  a run launched from the UI or a sensor waits for the daemon's next dequeue tick too: up to "
        f"{figures['dequeue_interval_s']} s (dagster.yaml run_coordinator.config.dequeue_interval_seconds)"
    )


if __name__ == "__main__":
    main()
