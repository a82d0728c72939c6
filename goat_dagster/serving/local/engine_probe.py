"""`python -m goat_dagster.serving.local.engine_probe MODEL_KEY`: one short real generation by the
installed llama.cpp engine, with the settings a `goat serve` worker of that model gets (its
`n_threads` included). `goat doctor` runs it in a subprocess (`engine_build.probe_engine`), so an
engine built for CPU features this machine cannot execute dies of SIGILL there, not in doctor.

It prints JSON lines on stdout: first what the engine was built with (before anything is loaded,
so a death while loading still says it), then the generation; a model that cannot be prepared
(weights not there, bad engine_args) is a line with an `error` and exit status 2.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

PROMPT = "Name three colours of the rainbow, in one short sentence."
MAX_TOKENS = 16


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m goat_dagster.serving.local.engine_probe MODEL_KEY")
    # imported here, in the subprocess: loading the engine is what may trap
    import llama_cpp
    from llama_cpp.server.model import LlamaProxy

    from goat_dagster.registry import RegistryError, load_registry
    from goat_dagster.serving.local.engine import EngineArgsError, isolated_model_settings, worker_spec
    from goat_dagster.serving.local.engine_build import parse_system_info
    from goat_dagster.serving.local.weights import WeightsError, locate_weights

    info = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    emit({"version": llama_cpp.__version__, "features": parse_system_info(info), "system_info": info})
    try:
        entry = load_registry().get(args[0])
        spec = worker_spec(entry, locate_weights(entry).gguf or "")
    except (KeyError, RegistryError, WeightsError, EngineArgsError) as exc:
        emit({"error": str(exc.args[0] if isinstance(exc, KeyError) else exc)})
        sys.exit(2)
    settings = isolated_model_settings()(**spec.model_settings_kwargs())
    t0 = time.monotonic()
    llama = LlamaProxy.load_llama_from_model_settings(settings)  # exactly as a worker loads it
    loaded = time.monotonic()
    out = llama.create_chat_completion(
        messages=[{"role": "user", "content": PROMPT}], max_tokens=MAX_TOKENS, temperature=0.0
    )
    took = time.monotonic() - loaded
    usage = out.get("usage") or {}
    emit(
        {
            "model": entry.key,
            "n_threads": llama.n_threads,
            "n_threads_batch": llama.n_threads_batch,
            "load_s": round(loaded - t0, 3),
            "generate_s": round(took, 3),
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "text": (out["choices"][0]["message"].get("content") or "")[:200],
        }
    )


if __name__ == "__main__":
    main()
