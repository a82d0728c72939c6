"""The benchmark of `goat demo`, call by call: the smoke suite, the builtin agent, the demo's limits
(`demo.DEMO_BENCHMARK`: one task at a time, 8 model calls of at most 256 tokens) through the same
stack as `goat run` (goat serve + the LiteLLM proxy, `routing.stack.ensure_model_stack`), in a fresh
GOAT_HOME, then what the engine did for every call, from the worker's log (one `goat-turn` line per
response: prompt tokens cached / evaluated and their time, tokens generated and their time, the time
per phase of the turn, draft tokens verified and kept).

    flock /tmp/goat-test.lock .venv/bin/python benchmarks/demo_calls.py [--tasks ID,ID]
    GOAT_SERVE_DRAFT_TOKENS=0 flock /tmp/goat-test.lock .venv/bin/python benchmarks/demo_calls.py

Then the engine's raw rates (in this process, the worker's settings, one token per pass) and the
floor of the run with these limits: evaluated prompt tokens / prompt rate + generated tokens /
generation rate. Run it through the test lock on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from agent_steps import free_port, open_engine, raw_rates, run_as_worker

from goat_dagster.analysis.runs import summarize_run
from goat_dagster.bench.run_request import RunRequest
from goat_dagster.bench.runner import run_benchmark
from goat_dagster.bench.usage import AgentLimits
from goat_dagster.config import paths, settings
from goat_dagster.demo import DEMO_BENCHMARK
from goat_dagster.registry import load_registry
from goat_dagster.routing.proxy import stop_proxy
from goat_dagster.routing.stack import ensure_model_stack
from goat_dagster.serving.backends import Backends
from goat_dagster.serving.local.client import stop_control_plane

MODEL = "smollm2-135m"
MARK = "goat-turn "


def turns(slug: str) -> list[dict]:
    log = paths().logs / "workers" / f"{slug}.log"
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return [json.loads(line[len(MARK) :]) for line in lines if line.startswith(MARK)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=None, help="comma-separated task ids (default: the whole suite)")
    args = ap.parse_args()
    run_as_worker()
    os.environ.update(
        {
            "GOAT_HOME": tempfile.mkdtemp(prefix="goat-demo-calls-"),
            "GOAT_SERVE_PORT": "0",
            "GOAT_LITELLM_PORT": str(free_port()),
        }
    )
    limits = AgentLimits(**DEMO_BENCHMARK)
    registry = load_registry()
    entry = registry.get(MODEL)
    load0 = os.getloadavg()[0]
    try:
        t0 = time.perf_counter()
        ensure_model_stack(registry, entry, Backends.from_settings())
        up_s = time.perf_counter() - t0
        before = len(turns(entry.slug))  # the endpoint's probe
        t0 = time.perf_counter()
        outcome = run_benchmark(
            RunRequest(
                suite="smoke",
                model=MODEL,
                parallel=None,  # as the demo: the backend's default (one task at a time for a local model)
                limits=limits,
                task_ids=args.tasks.split(",") if args.tasks else None,
                registry=registry,
            )
        )
        wall = time.perf_counter() - t0
        load1 = os.getloadavg()[0]
    finally:
        stop_proxy()
        stop_control_plane()
    calls = turns(entry.slug)[before:]
    s = summarize_run(outcome)
    p_rate, g_rate = raw_rates(open_engine(MODEL))

    print(
        f"demo benchmark (smoke, {limits}, drafts {settings().serve_draft_tokens}, OpenMP "
        f"{os.environ['OMP_WAIT_POLICY']} spin {os.environ['GOMP_SPINCOUNT']}): {wall:.1f} s wall "
        f"({up_s:.1f} s to bring goat serve and the proxy up before), {s.n} tasks, {len(calls)} calls; "
        f"load average {load0:.2f} at start, {load1:.2f} at end on {os.cpu_count()} CPUs"
    )
    print(f"{'call':>4} {'prompt':>6} {'cached':>6} {'eval':>5} {'eval s':>6} {'gen':>4} {'gen s':>6} "
          f"{'draft ok/n':>10} {'calls':>5} {'finish':>10}  time by phase")  # fmt: skip
    for i, c in enumerate(calls, 1):
        phases = ", ".join(f"{k} {v / 1000:.2f}s" for k, v in c["phases"].items())
        eval_s, gen_s = c["prompt_ms"] / 1000, c["predicted_ms"] / 1000
        print(
            f"{i:>4} {c['prompt_tokens']:>6} {c['cache_n']:>6} {c['prompt_n']:>5} {eval_s:>6.2f} "
            f"{c['predicted_n']:>4} {gen_s:>6.2f} {c['draft_accepted']:>5}/{c['draft_n']:<4} "
            f"{c['calls']:>5} {c['finish_reason']:>10}  {phases}"
        )
    if not calls:
        return
    evaluated = sum(c["prompt_n"] for c in calls)
    generated = sum(c["predicted_n"] for c in calls)
    engine_s = sum(c["prompt_ms"] + c["predicted_ms"] for c in calls) / 1000
    by_phase: dict[str, float] = {}
    for c in calls:
        for k, v in c["phases"].items():
            by_phase[k] = by_phase.get(k, 0.0) + v / 1000
    capped = sum(1 for c in calls if c["predicted_n"] >= limits.max_output_tokens)
    floor_s = evaluated / p_rate + generated / g_rate
    accepted, drafted = sum(c["draft_accepted"] for c in calls), sum(c["draft_n"] for c in calls)
    passes = sum(c.get("passes", 0) for c in calls)
    print(
        f"calls: p50 {statistics.median(c['prompt_ms'] + c['predicted_ms'] for c in calls) / 1000:.2f} s in "
        f"the engine; {capped} of {len(calls)} hit the {limits.max_output_tokens}-token cap; prompt tokens "
        f"{sum(c['prompt_tokens'] for c in calls)} of which evaluated {evaluated}; generated {generated}; "
        f"drafts kept {accepted} of {drafted}; {passes} engine passes sampled "
        f"({generated / max(passes, 1):.1f} tokens per pass)"
    )
    print(
        f"time: wall {wall:.1f} s = engine {engine_s:.1f} s ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in by_phase.items())
        + f") + {wall - engine_s:.1f} s outside the engine (proxy, agent, sandboxes, checks, lake)"
    )
    print(
        f"engine one token per pass (in process, after the run): prompt {p_rate:.0f} tok/s, generation "
        f"{g_rate:.1f} tok/s; floor without drafts {floor_s:.1f} s ({evaluated} / {p_rate:.0f} + "
        f"{generated} / {g_rate:.1f}); load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
