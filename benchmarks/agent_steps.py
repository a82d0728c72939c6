"""Agent steps at the engine's rate: a recorded multi-step agent conversation (a real builtin-agent
run on the smoke suite, with its tools) replayed step by step through a real `goat serve`.

    flock /tmp/goat-test.lock .venv/bin/python benchmarks/agent_steps.py [--conversation FILE]
    flock /tmp/goat-test.lock .venv/bin/python benchmarks/agent_steps.py --record fibonacci

`--record TASK` makes a new conversation: what `goat run --suite smoke --model smollm2-135m` does
(the model's endpoint and the LiteLLM proxy, `routing.stack.ensure_model_stack`, then
`run_benchmark`) for that one task with the demo's limits, in a fresh GOAT_HOME with the trace
sink capturing each call's input (GOAT_TRACE_IO): every successful call's messages become a step.

Per step it prints the measured latency against the model of issue 15
(new prompt tokens / engine prompt rate + completion tokens / engine unconstrained generation rate,
both rates of the engine one token per pass, measured in this process with the worker's settings
right after the replay), the constrained (grammar) and unconstrained generation rates of the step,
the draft tokens the worker verified and how many it kept (`GOAT_SERVE_DRAFT_TOKENS`; 0 replays
without drafts), and then the floor: the same prompts straight to the engine in this process
(llama-cpp-python, the same settings), the prefix cached, the same number of tokens generated
without tools, grammar or drafts. Targets: every step <= 1.3x the model, the whole conversation
<= 1.2x the floor. Run it through the test lock on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from llama_cpp import Llama

from goat_dagster.bench.prompts import load_prompt_set
from goat_dagster.bench.run_request import RunRequest
from goat_dagster.bench.runner import run_benchmark
from goat_dagster.bench.usage import AgentLimits
from goat_dagster.demo import DEMO_BENCHMARK
from goat_dagster.registry import load_registry
from goat_dagster.routing.proxy import stop_proxy
from goat_dagster.routing.stack import ensure_model_stack
from goat_dagster.serving.backends import Backends
from goat_dagster.serving.local import llama_patches
from goat_dagster.serving.local.client import ensure_control_plane, stop_control_plane
from goat_dagster.serving.local.engine import worker_spec
from goat_dagster.serving.local.generation import Budget, run_piece
from goat_dagster.serving.local.settings import ServeSettings
from goat_dagster.serving.local.threads import WORKER_ENV
from goat_dagster.serving.local.tool_calling import render
from goat_dagster.serving.local.weights import locate_weights
from goat_dagster.tracing.sink_store import iter_lines, run_file

DATA = Path(__file__).resolve().parent / "data" / "agent_steps.json"
MODEL = "smollm2-135m"
DEMO_LIMITS = {k: v for k, v in DEMO_BENCHMARK.items() if k != "parallel"}  # the demo's limits


def run_as_worker() -> None:
    """Run this script again with the OpenMP settings goat serve gives its workers where the
    environment lacks them (`threads.WORKER_ENV`; libgomp reads them once, when llama.cpp loads), so
    the engine in this process (the raw rates, the floor) waits at its barriers as the worker's does."""
    if any(k not in os.environ for k in WORKER_ENV):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**WORKER_ENV, **os.environ})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- recording ------------------------------------------------------------------------------------


def record(task: str, out: Path) -> None:
    """A real builtin-agent run of one smoke task (demo limits) with trace capture on, in a fresh
    GOAT_HOME; its calls' inputs (from the trace sink) become the conversation's steps."""
    home = Path(tempfile.mkdtemp(prefix="goat-record-"))
    os.environ.update(
        {
            "GOAT_HOME": str(home),
            "GOAT_TRACE_IO": "1",
            "GOAT_TRACE_IO_MAX_CHARS": "1000000",
            "GOAT_SERVE_PORT": "0",
            "GOAT_LITELLM_PORT": str(free_port()),  # not the default 4000 another checkout may hold
        }
    )
    registry = load_registry()
    try:
        ensure_model_stack(registry, registry.get(MODEL), Backends.from_settings())
        outcome = run_benchmark(
            RunRequest(
                suite="smoke",
                model=MODEL,
                parallel=1,
                task_ids=[task],
                limits=AgentLimits(**DEMO_LIMITS),
                registry=registry,
            )
        )
        calls = sorted(iter_lines(run_file(outcome.spec.run_id)), key=lambda r: r.get("step") or 0)
    finally:
        stop_proxy()
        stop_control_plane()
    steps = []
    for c in calls:
        if c.get("status") != "success" or not c.get("input"):
            continue
        params = c.get("request_params") or {}
        steps.append(
            {
                "messages": json.loads(c["input"]),  # the sink keeps the input as JSON text
                "max_tokens": params.get("max_tokens") or DEMO_LIMITS["max_output_tokens"],
                "temperature": params.get("temperature"),
                "recorded": {
                    "latency_s": c.get("latency_s"),
                    "prompt_tokens": c.get("prompt_tokens"),
                    "completion_tokens": c.get("completion_tokens"),
                },
            }
        )
    doc = {
        "source": f"goat run --suite smoke --model {MODEL} --agent builtin, task {task}, {DEMO_LIMITS}",
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": MODEL,
        "tools": load_prompt_set().tool_schemas,  # the builtin agent's tools (prompts/builtin/tools.yaml)
        "steps": steps,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"recorded {len(steps)} steps of {task} to {out}")


# ---- replay through goat serve ----------------------------------------------------------------------


def post(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    r = client.post(url, json=body, timeout=600)
    dt = time.perf_counter() - t0
    r.raise_for_status()
    return r.json(), dt


def engine_rates(client: httpx.Client, url: str, served: str) -> tuple[float, float]:
    """The worker's prompt rate (a fresh ~500-token prompt) and its unconstrained generation rate
    (256 tokens, no tools, no grammar), from its own timings."""
    text = " ".join(f"word{i}" for i in range(250))
    body = {
        "model": served,
        "messages": [{"role": "user", "content": f"{time.time()} {text}"}],
        "max_tokens": 1,
    }
    prompt, _ = post(client, url, body)
    body = {
        "model": served,
        "messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
        "max_tokens": 256,
    }
    gen, _ = post(client, url, body)
    return prompt["timings"]["prompt_per_second"], gen["timings"]["predicted_per_second"]


def replay(doc: dict[str, Any], base_url: str, served: str) -> dict[str, Any]:
    url = f"{base_url}/chat/completions"
    with httpx.Client() as client:
        post(client, url, {"model": served, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
        p_rate, g_rate = engine_rates(client, url, served)
        rows = []
        for i, step in enumerate(doc["steps"], 1):
            body = {
                "model": served,
                "messages": step["messages"],
                "tools": doc["tools"],
                "tool_choice": "auto",
                "max_tokens": step["max_tokens"],
                "temperature": step.get("temperature") if step.get("temperature") is not None else 0.3,
            }
            resp, dt = post(client, url, body)
            t = resp["timings"]
            grammar = [p for p in t["phases"] if p["grammar"]]
            free = [p for p in t["phases"] if not p["grammar"]]
            rows.append(
                {
                    "step": i,
                    "prompt": resp["usage"]["prompt_tokens"],
                    "cached": resp["usage"]["prompt_tokens_details"]["cached_tokens"],
                    "evaluated": t["prompt_n"],
                    "completion": resp["usage"]["completion_tokens"],
                    "latency_s": dt,
                    "drafted": sum(p.get("draft_n", 0) for p in t["phases"]),
                    "accepted": sum(p.get("draft_accepted", 0) for p in t["phases"]),
                    "constrained_tps": rate(grammar),
                    "unconstrained_tps": rate(free),
                    "completions": len(t["phases"]),
                    "phases_s": phase_seconds(t["phases"]),
                    "recorded_s": step["recorded"].get("latency_s"),
                }
            )
    return {"prompt_rate": p_rate, "gen_rate": g_rate, "rows": rows}


def rate(phases: list[dict[str, Any]]) -> float | None:
    n, ms = sum(p["predicted_n"] for p in phases), sum(p["predicted_ms"] for p in phases)
    return n * 1000 / ms if ms else None


def phase_seconds(phases: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in phases:
        out[p["phase"]] = out.get(p["phase"], 0.0) + (p["prompt_ms"] + p["predicted_ms"]) / 1000
    return out


# ---- the floor: the engine in this process -------------------------------------------------------------


def open_engine(model: str) -> Llama:
    """The model in this process, with the settings goat serve's worker gets."""
    entry = load_registry().get(model)
    spec = worker_spec(entry, locate_weights(entry).gguf)
    kwargs = {k: v for k, v in spec.settings.items() if k in ("n_threads", "n_threads_batch", "n_batch")}
    llama_patches.install()
    return Llama(spec.model_path, n_ctx=spec.n_ctx, verbose=False, **kwargs)


def raw_rates(llama: Llama) -> tuple[float, float]:
    """The engine's own rates, one token per pass (no draft, no grammar): a fresh ~500-token prompt,
    then 256 tokens generated."""
    text = " ".join(f"word{i}" for i in range(250))
    prompt = llama.tokenize(f"{time.time()} {text}".encode(), add_bos=True)
    llama.reset()
    p = run_piece(llama, prompt, phase="prompt", sampling={"temp": 0.3}, budget=Budget(1), draft_max=0)
    g = run_piece(
        llama, prompt, phase="gen", sampling={"temp": 0.3}, budget=Budget(256), ignore_eog=True, draft_max=0
    )
    return p.evaluated * 1000 / p.prompt_ms, len(g.tokens) * 1000 / g.predicted_ms


def floor(doc: dict[str, Any], completions: list[int], llama: Llama) -> list[float]:
    """Each step's prompt (rendered as goat's handler renders it) evaluated with the prefix cached,
    then exactly as many tokens generated as the replay's step produced, unconstrained and one
    token per engine pass (no draft)."""
    out = []
    for step, n in zip(doc["steps"], completions, strict=True):
        prompt = llama.tokenize(render(step["messages"], doc["tools"]).encode(), add_bos=True, special=True)
        t0 = time.perf_counter()
        budget = Budget(max(n, 1))
        run_piece(
            llama, prompt, phase="floor", sampling={"temp": 0.3}, budget=budget, ignore_eog=True, draft_max=0
        )
        out.append(time.perf_counter() - t0)
    return out


# ---- main ---------------------------------------------------------------------------------------------


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conversation", type=Path, default=DATA)
    ap.add_argument("--record", metavar="TASK", help="record a new conversation of this smoke task")
    args = ap.parse_args()
    run_as_worker()
    if args.record:
        record(args.record, args.conversation)
        return
    doc = json.loads(args.conversation.read_text())

    os.environ["GOAT_HOME"] = tempfile.mkdtemp(prefix="goat-agent-steps-")
    load0 = os.getloadavg()[0]
    served = load_registry().get(doc["model"]).served_model
    cp = ensure_control_plane(ServeSettings(port=0))
    try:
        result = replay(doc, cp.base_url, served)
    finally:
        stop_control_plane()
    rows = result["rows"]
    llama = open_engine(doc["model"])
    p_rate, g_rate = raw_rates(llama)  # the model of issue 15: the engine one token per pass
    floors = floor(doc, [r["completion"] for r in rows], llama)
    for r in rows:
        r["model_s"] = (r["prompt"] - r["cached"]) / p_rate + r["completion"] / g_rate

    print(f"{args.conversation.name}: {len(rows)} steps of {doc['source']}")
    print(
        f"engine (in process after the replay, one token per pass): prompt {p_rate:.0f} tok/s, "
        f"unconstrained generation {g_rate:.1f} tok/s; the worker: prompt {result['prompt_rate']:.0f} "
        f"tok/s, a free-text answer {result['gen_rate']:.1f} tok/s (drafts: "
        f"{os.environ.get('GOAT_SERVE_DRAFT_TOKENS', 'default')}); load average {load0:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at end on {os.cpu_count()} CPUs"
    )
    head = (
        f"{'step':>4} {'prompt':>6} {'cached':>6} {'eval':>5} {'compl':>5} {'calls':>5} {'latency':>8} "
        f"{'model':>7} {'ratio':>6} {'grammar t/s':>11} {'free t/s':>8} {'draft ok/n':>10} {'floor':>6}"
        "  time by phase"
    )
    print(head)
    for r, f in zip(rows, floors, strict=True):
        phases = ", ".join(f"{k} {v:.2f}s" for k, v in r["phases_s"].items())
        print(
            f"{r['step']:>4} {r['prompt']:>6} {r['cached']:>6} {r['evaluated']:>5} {r['completion']:>5} "
            f"{r['completions']:>5} {r['latency_s']:>7.2f}s {r['model_s']:>6.2f}s "
            f"{r['latency_s'] / r['model_s']:>6.2f} {fmt(r['constrained_tps']):>11} "
            f"{fmt(r['unconstrained_tps']):>8} {r['accepted']:>5}/{r['drafted']:<4} {f:>5.2f}s  {phases}"
        )
    total, model_total, floor_total = (
        sum(r["latency_s"] for r in rows),
        sum(r["model_s"] for r in rows),
        sum(floors),
    )
    recorded = [r["recorded_s"] for r in rows if r["recorded_s"]]
    worst = max(r["latency_s"] / r["model_s"] for r in rows)
    print(
        f"conversation: {total:.2f}s through goat serve, model {model_total:.2f}s, floor {floor_total:.2f}s; "
        f"worst step {worst:.2f}x the model (target <= 1.3), conversation {total / floor_total:.2f}x the "
        f"floor (target <= 1.2)" + (f"; as recorded: {sum(recorded):.2f}s" if recorded else "")
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
