"""Phase 1 (`config`: models.yaml, weights, .env, Modal credentials) and the engine's phase."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from goat_dagster import config
from goat_dagster.doctor.check import Check
from goat_dagster.registry import VLLM_KEY_ENV, HFWeights, Registry, RegistryError, load_registry
from goat_dagster.serving.local.engine_build import (
    REBUILD,
    EngineProbe,
    cpu_flags,
    describe_build,
    missing_features,
    probe_engine,
)
from goat_dagster.serving.modal.spec import SECRET_VLLM

# ---- phase 1: config -----------------------------------------------------------------------------


def check_config(cloud: Any, env_file: Path) -> tuple[list[Check], Registry | None]:
    out: list[Check] = []
    registry = None
    try:
        registry = load_registry()
        out.append(
            Check(
                "config",
                "models.yaml",
                "pass",
                f"{len(registry.models)} models, {len(registry.enabled())} enabled ({registry.source})",
            )
        )
        loose = [
            m.key
            for m in registry.models.values()
            if m.provider == "modal" and isinstance(m.weights, HFWeights) and not m.weights.pinned
        ]
        on_modal = [m.key for m in registry.enabled() if m.provider == "modal"]
        if on_modal and not config.settings().vllm_api_key:
            out.append(
                Check(
                    "config",
                    VLLM_KEY_ENV,
                    "fail",
                    f"not set, and {', '.join(on_modal)} run on Modal: their /v1 answers only with it",
                    f"export the value of the {SECRET_VLLM} secret (from .env; `goat setup` stores it)",
                )
            )
        elif on_modal:
            out.append(Check("config", VLLM_KEY_ENV, "pass", "set (sent to the goat-vllm-* apps)"))
        if loose:
            out.append(
                Check(
                    "config",
                    "pinned weights",
                    "warn",
                    f"not pinned to a commit: {', '.join(loose)}",
                    "set weights.revision to the commit recorded by model_weights",
                )
            )
    except RegistryError as exc:
        out.append(
            Check(
                "config",
                "models.yaml",
                "fail",
                str(exc).replace("\n", " "),
                "fix the entry and field named above (file:line)",
            )
        )
    if env_file.is_file():
        out.append(Check("config", ".env", "pass", f"{env_file} present"))
    else:
        out.append(
            Check(
                "config", ".env", "warn", f"no {env_file}", "create it (see .env.example), then `goat setup`"
            )
        )
    if cloud.credentials_present():
        out.append(Check("config", "Modal credentials", "pass", "token configured"))
    else:
        out.append(
            Check(
                "config",
                "Modal credentials",
                "fail",
                "Modal not logged in (no token)",
                "run `modal setup`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET",
            )
        )
    return out, registry


# ---- phase 1b: the engine -------------------------------------------------------------------------


def check_engine(
    registry: Registry | None, probe: Callable[[str], EngineProbe] = probe_engine
) -> list[Check]:
    """What the installed engine was built for, and one short real generation by it."""
    local = [m for m in registry.enabled() if m.provider == "local"] if registry else []
    if not local:
        return [Check("engine", "llama.cpp", "skip", "no enabled local model")]
    key = local[0].key
    p = probe(key)
    out = []
    if p.features is not None:
        flags = cpu_flags()
        missing = missing_features(p.features, flags) if flags is not None else []
        detail = f"llama-cpp-python {p.version}, built with {describe_build(p.features)}"
        detail += f"; this CPU lacks {', '.join(missing)}" if missing else "; this CPU lists all of them"
        out.append(
            Check("engine", "build", "fail" if missing else "pass", detail, REBUILD if missing else "")
        )
    if p.ok:
        g = p.generation or {}
        rate = (g.get("completion_tokens") or 0) / max(g.get("generate_s") or 0.0, 1e-6)
        detail = (
            f"{g.get('prompt_tokens')} prompt + {g.get('completion_tokens')} generated tokens in "
            f"{g.get('generate_s')}s with n_threads {g.get('n_threads')} ({rate:.0f} tokens/s)"
        )
        out.append(Check("engine", key, "pass", detail))
    else:
        fix = REBUILD if p.cause else "materialize model_weights (or `goat demo`); check engine_args"
        out.append(Check("engine", key, "fail", p.cause or p.error or "no generation", fix))
    return out
