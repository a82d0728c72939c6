"""What the control plane costs: tokens/s and time to first token through `goat serve` vs. the same
llama.cpp server (llama-cpp-python, same model settings) called directly. Same prompts, greedy
decoding, requests interleaved (direct, goat, direct, goat, ...) so machine noise hits both alike.

    .venv/bin/python benchmarks/serving.py [--model smollm2-135m] [--prompts 8] [--max-tokens 128]

Prints one table and the ratios goat/direct (1.00 = no overhead; the target is within 5%).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from goat_dagster.registry import load_registry
from goat_dagster.serving.local.engine import worker_spec
from goat_dagster.serving.local.weights import locate_weights

PROMPTS = [
    "Write a Python function that reverses a string.",
    "Explain what a hash map is in two sentences.",
    "List three uses of the Unix `find` command.",
    "Write a haiku about compilers.",
    "What does HTTP status 429 mean?",
    "Write a SQL query that counts rows per day in a table `events(ts)`.",
    "Describe the difference between a process and a thread.",
    "Give a one-paragraph summary of how git rebase works.",
    "Write a bash loop that prints the numbers 1 to 10.",
    "What is a mutex and when do you need one?",
]


@dataclass
class Sample:
    ttft_s: list[float] = field(default_factory=list)
    tok_per_s: list[float] = field(default_factory=list)
    tokens: int = 0
    wall_s: float = 0.0
    full_latency_s: list[float] = field(default_factory=list)


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU of one process (not its children)."""
    t = proc.cpu_times()
    return t.user + t.system


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[:4]} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def stream_once(
    client: httpx.Client, url: str, model: str, prompt: str, max_tokens: int
) -> tuple[float, int, float]:
    """(time to first token, completion tokens, seconds from first to last token)."""
    body = {
        "model": model,
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 1,
        "messages": [{"role": "user", "content": prompt}],
    }
    t0 = time.perf_counter()
    first = last = None
    n = 0
    with client.stream("POST", url, json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"]
            if delta.get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                n += 1
    assert first is not None and last is not None, "no tokens streamed"
    return first - t0, n, last - first


def complete_once(client: httpx.Client, url: str, model: str, prompt: str, max_tokens: int) -> float:
    body = {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 1,
        "messages": [{"role": "user", "content": prompt}],
    }
    t0 = time.perf_counter()
    client.post(url, json=body).raise_for_status()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="a local model key of models.yaml")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2, help="how many times each prompt runs on each path")
    ap.add_argument("--short-pairs", type=int, default=40, help="max_tokens=1 request pairs (fixed cost)")
    args = ap.parse_args()

    entry = load_registry().get(args.model)
    gguf = locate_weights(entry).gguf
    spec = worker_spec(entry, gguf)
    home = Path(tempfile.mkdtemp(prefix="goat-bench-serving-"))
    env = {**os.environ, "GOAT_HOME": str(home)}
    procs: list[subprocess.Popen] = []
    try:
        # the same llama.cpp server goat serve starts for this model, called directly
        direct_port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--host",
            "127.0.0.1",
            "--port",
            str(direct_port),
            "--interrupt_requests",
            "false",
        ]
        for k, v in spec.model_settings_kwargs().items():
            cmd += [f"--{k}", str(v).lower() if isinstance(v, bool) else str(v)]
        direct = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
        )
        procs.append(direct)
        goat_port = free_port()
        goat = subprocess.Popen(
            [sys.executable, "-m", "goat_dagster.cli", "serve", "--port", str(goat_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        procs.append(goat)
        direct_url = f"http://127.0.0.1:{direct_port}/v1/chat/completions"
        goat_url = f"http://127.0.0.1:{goat_port}/v1/chat/completions"
        wait_http(f"http://127.0.0.1:{direct_port}/v1/models", direct)
        wait_http(f"http://127.0.0.1:{goat_port}/healthz", goat)

        prompts = (PROMPTS * (args.prompts // len(PROMPTS) + 1))[: args.prompts] * args.rounds
        results = {"direct": Sample(), "goat serve": Sample()}
        urls = {"direct": direct_url, "goat serve": goat_url}
        with httpx.Client(timeout=600) as client:
            for url in urls.values():  # warm-up: load the model, compile the chat template
                stream_once(client, url, spec.served_model, "Hello", 8)
            status = httpx.get(f"http://127.0.0.1:{goat_port}/status", timeout=10).json()
            worker_pid = next(i["pid"] for i in status["instances"] if i["model"] == spec.served_model)
            cpu_procs = {
                "goat": psutil.Process(goat.pid),
                "worker": psutil.Process(worker_pid),
                "direct": psutil.Process(direct.pid),
            }
            cpu_before = {k: cpu_seconds(p) for k, p in cpu_procs.items()}
            for i, prompt in enumerate(prompts):
                order = list(urls) if i % 2 == 0 else list(reversed(urls))
                for name in order:
                    s = results[name]
                    t0 = time.perf_counter()
                    ttft, n, gen_s = stream_once(
                        client, urls[name], spec.served_model, prompt, args.max_tokens
                    )
                    s.wall_s += time.perf_counter() - t0
                    s.ttft_s.append(ttft)
                    s.tokens += n
                    if n > 1 and gen_s > 0:
                        s.tok_per_s.append((n - 1) / gen_s)
                    s.full_latency_s.append(
                        complete_once(client, urls[name], spec.served_model, prompt, args.max_tokens)
                    )
            cpu = {k: cpu_seconds(p) - cpu_before[k] for k, p in cpu_procs.items()}
            short = {"direct": [], "goat serve": []}
            for i in range(args.short_pairs):
                for name in list(urls) if i % 2 == 0 else list(reversed(urls)):
                    short[name].append(
                        complete_once(client, urls[name], spec.served_model, PROMPTS[i % 3], 1)
                    )
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    d, g = results["direct"], results["goat serve"]

    def row(name: str, s: Sample) -> str:
        return (
            f"{name:<11} {statistics.median(s.ttft_s) * 1000:>10.1f} {statistics.median(s.tok_per_s):>10.1f} "
            f"{s.tokens / s.wall_s:>12.1f} {statistics.median(s.full_latency_s) * 1000:>12.1f} {s.tokens:>7d}"
        )

    def paired(a: list[float], b: list[float]) -> float:
        """Median of per-prompt ratios b/a: each prompt ran back to back on both paths."""
        return statistics.median(y / x for x, y in zip(a, b, strict=True) if x > 0)

    print(
        f"model {spec.served_model} ({Path(spec.model_path).name}, n_ctx {spec.n_ctx}), "
        f"{args.prompts} prompts x {args.rounds} rounds x max {args.max_tokens} tokens, greedy, "
        "streamed + non-streamed"
    )
    print(
        f"{'path':<11} {'TTFT ms':>10} {'decode t/s':>10} {'stream t/s':>12} {'non-str ms':>12} {'tokens':>7}"
    )
    print(row("direct", d))
    print(row("goat serve", g))
    ttft_ratio = paired(d.ttft_s, g.ttft_s)
    tps_ratio = paired(d.tok_per_s, g.tok_per_s)
    full_ratio = paired(d.full_latency_s, g.full_latency_s)
    wall_ratio = g.wall_s / d.wall_s
    print(
        f"ratio goat/direct (median of per-prompt pairs): TTFT {ttft_ratio:.3f}  "
        f"decode tokens/s {tps_ratio:.3f}  non-streamed latency {full_ratio:.3f}  "
        f"streamed wall time {wall_ratio:.3f}"
    )
    diffs_ms = [(g_ - d_) * 1000 for d_, g_ in zip(short["direct"], short["goat serve"], strict=True)]
    print(
        f"fixed cost per request (max_tokens=1, {args.short_pairs} pairs): "
        f"{statistics.median(diffs_ms):+.1f} ms median "
        f"(direct {statistics.median(short['direct']) * 1000:.1f} ms, "
        f"ratio {paired(short['direct'], short['goat serve']):.3f})"
    )
    n_requests = 2 * len(prompts)
    print(
        f"control-plane CPU: {cpu['goat'] * 1000 / n_requests:.1f} ms per request "
        f"({cpu['goat'] * 1e6 / g.tokens:.0f} us per streamed token) = "
        f"{100 * cpu['goat'] / cpu['worker']:.2f}% of its worker's CPU "
        f"(worker {cpu['worker']:.1f} s, direct server {cpu['direct']:.1f} s, "
        f"control plane {cpu['goat']:.2f} s)"
    )
    overhead = max(ttft_ratio - 1, 1 - tps_ratio, full_ratio - 1)
    verdict = "within" if overhead < 0.05 else "OVER"
    print(
        f"control-plane overhead: {overhead * 100:.1f}% ({verdict} the 5% target)"
        f"; load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
