"""Raw speed of the installed llama.cpp engine (llama-cpp-python, in process), no server in between:
prompt tokens/s and generation tokens/s of SmolLM2-135M with a given number of threads.

    .venv/bin/python benchmarks/engine.py [--threads 1] [--prompt-tokens 512] [--gen-tokens 128] [--repeat 3]

Run it once per build to compare builds (README, "The engine build": the portable x86-64-v3 build
was measured against a -march=native one this way). It prints the CPU features the engine was compiled with
(`llama_print_system_info`) so the figures say which build produced them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import llama_cpp

from goat_dagster.registry import load_registry
from goat_dagster.serving.local.weights import locate_weights

PROJECT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    gguf = locate_weights(load_registry(PROJECT / "models.yaml").get(args.model)).gguf
    llm = llama_cpp.Llama(
        model_path=str(gguf), n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads, verbose=False
    )
    text = " ".join(f"word{i}" for i in range(args.prompt_tokens))
    prompt = llm.tokenize(text.encode())[: args.prompt_tokens]

    prompt_rates, gen_rates = [], []
    for _ in range(args.repeat):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        prompt_rates.append(len(prompt) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        n = 0
        for tok in llm.generate(prompt, temp=0.0, reset=False):
            n += 1
            if n >= args.gen_tokens or tok == llm.token_eos():
                break
        gen_rates.append(n / (time.perf_counter() - t0))

    info = llama_cpp.llama_print_system_info().decode().strip()
    print(f"engine: llama-cpp-python {llama_cpp.__version__}; {info}")
    print(f"model: {args.model} ({gguf.name}), threads: {args.threads}, best of {args.repeat}")
    print(f"prompt eval:  {max(prompt_rates):8.1f} tokens/s  (median {statistics.median(prompt_rates):.1f})")
    print(f"generation:   {max(gen_rates):8.1f} tokens/s  (median {statistics.median(gen_rates):.1f})")


if __name__ == "__main__":
    main()
