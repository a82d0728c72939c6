"""`--parallel 1` against `--parallel 2` with a local model: the smoke suite with the builtin agent
and the demo's limits (optionally fewer steps), the same `goat serve` and LiteLLM proxy for both, so
one task's check (a sandboxed subprocess) runs beside another task's generation at 2.

    flock /tmp/goat-test.lock .venv/bin/python benchmarks/parallel_local.py [--parallel 1 2] [--max-steps 4]

Prints per setting the wall time, tasks, model calls and completion tokens (from the warehouse SQL),
the thread budget goat serve saw (`/status` `threads`: most threads in use, requests that waited),
and the load average. Run each setting in its own lock hold on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import tempfile
import threading
import time

import httpx

from goat_dagster.analysis.runs import summarize_run
from goat_dagster.bench.run_request import RunRequest
from goat_dagster.bench.runner import run_benchmark
from goat_dagster.bench.usage import AgentLimits
from goat_dagster.demo import DEMO_BENCHMARK
from goat_dagster.registry import load_registry
from goat_dagster.routing.proxy import stop_proxy
from goat_dagster.routing.stack import ensure_model_stack
from goat_dagster.serving.backends import Backends
from goat_dagster.serving.local.client import running_control_plane, stop_control_plane

MODEL = "smollm2-135m"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadWatch:
    """Polls goat serve's /status twice a second and keeps the `threads` objects it saw."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            cp = running_control_plane()
            if cp is not None:
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    self.seen.append(httpx.get(f"{cp.root_url}/status", timeout=5).json()["threads"])
            self.stop.wait(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parallel", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--max-steps", type=int, default=DEMO_BENCHMARK["max_steps"])
    ap.add_argument("--tasks", default=None, help="comma-separated task ids (default: the whole suite)")
    args = ap.parse_args()
    os.environ.update(
        {
            "GOAT_HOME": tempfile.mkdtemp(prefix="goat-parallel-"),
            "GOAT_SERVE_PORT": "0",
            "GOAT_LITELLM_PORT": str(free_port()),
        }
    )
    limits = AgentLimits(
        max_steps=args.max_steps,
        max_output_tokens=DEMO_BENCHMARK["max_output_tokens"],
        max_seconds=DEMO_BENCHMARK["max_seconds"],
    )
    registry = load_registry()
    watch = ThreadWatch()
    try:
        ensure_model_stack(registry, registry.get(MODEL), Backends.from_settings())
        watch.thread.start()
        for parallel in args.parallel:
            watch.seen.clear()
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            outcome = run_benchmark(
                RunRequest(
                    suite="smoke",
                    model=MODEL,
                    parallel=parallel,
                    limits=limits,
                    task_ids=args.tasks.split(",") if args.tasks else None,
                    registry=registry,
                )
            )
            wall = time.perf_counter() - t0
            s = summarize_run(outcome)
            seen = watch.seen or [{}]
            busiest = max(t.get("in_use", 0) for t in seen)
            print(
                f"--parallel {parallel}: {wall:.1f} s wall, {s.n} tasks ({s.passed} passed, "
                f"{s.errors} errors), {s.completion_tokens} completion tokens; goat serve threads: "
                f"cores {seen[-1].get('cores')}, most in use {busiest}, requests that waited "
                f"{seen[-1].get('waited_total')}; "
                f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
                flush=True,
            )
    finally:
        watch.stop.set()
        stop_proxy()
        stop_control_plane()


if __name__ == "__main__":
    main()
