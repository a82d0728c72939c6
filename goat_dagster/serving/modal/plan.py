"""What goat deploys to Modal for a registry model: the `ServeSpec` of its app (the engine's
defaults, the commit its weights record resolved a branch to), the app built from it, the weights
record, and what it costs while up.

Host side only: in the container the apps rebuild themselves from the spec baked into their image
(`spec.spec_from_env`), never from the registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from goat_dagster import atomic, config
from goat_dagster.registry import HFWeights, ModelEntry, Registry, load_registry, slugify
from goat_dagster.serving.modal.spec import ENGINE_GPT_OSS, HF_CACHE_DIR, ServeSpec, app_name_for, is_commit

# EAGLE-3 draft models trained for each base model (RedHat's `speculators` project).
SPECULATORS: dict[str, str] = {
    "openai/gpt-oss-20b": "RedHatAI/gpt-oss-20b-speculator.eagle3",
    "openai/gpt-oss-120b": "RedHatAI/gpt-oss-120b-speculator.eagle3",
}
NUM_SPECULATIVE_TOKENS = 7
BLACKWELL = ("B200", "GB200")


def speculative_config(repo: str, revision: str | None = None) -> dict[str, Any] | None:
    draft = SPECULATORS.get(repo)
    if draft is None:
        return None
    cfg: dict[str, Any] = {
        "model": draft,
        "method": "eagle3",
        "num_speculative_tokens": NUM_SPECULATIVE_TOKENS,
    }
    if revision:
        cfg["revision"] = revision
    return cfg


def default_engine_args(repo: str, max_inputs: int, speculator_revision: str | None = None) -> dict[str, Any]:
    """The GPT-OSS recipe's settings; registry `engine_args` are merged over these."""
    args: dict[str, Any] = {
        "async-scheduling": True,
        "no-enforce-eager": True,  # compile + CUDA graphs: slower boot, faster tokens
        "compilation-config": {"pass_config": {"fuse_allreduce_rms": True, "eliminate_noops": True}},
        "kv-cache-dtype": "fp8",
        "max-cudagraph-capture-size": max_inputs,
        "max-num-batched-tokens": 16384,
        "stream-interval": 20,
    }
    spec_cfg = speculative_config(repo, speculator_revision)
    if spec_cfg:
        args["speculative-config"] = spec_cfg
    return args


def gpt_oss_spec(
    entry: ModelEntry, *, revision: str | None = None, speculator_revision: str | None = None
) -> ServeSpec:
    spec = base_spec(entry, revision=revision)
    if spec.engine != ENGINE_GPT_OSS:
        raise ValueError(
            f"{entry.key} uses engine {spec.engine!r}; deploy it with -m goat_dagster.serving.modal_vllm"
        )
    args = {**default_engine_args(spec.repo, spec.max_inputs, speculator_revision), **spec.engine_args}
    env = {"VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8": "1"} if spec.gpu.upper() in BLACKWELL else {}
    return ServeSpec(**{**spec.__dict__, "engine_args": args, "extra_env": env})


def base_spec(entry: ModelEntry, *, revision: str | None = None, **overrides: Any) -> ServeSpec:
    """The spec for a `provider: modal` registry entry (`gpt_oss_spec` adds the gpt-oss defaults)."""
    if entry.provider != "modal":
        raise ValueError(f"model {entry.key!r} has provider {entry.provider!r}, not 'modal'")
    weights = entry.weights
    assert isinstance(weights, HFWeights)  # the registry enforces hf weights for modal entries
    assert entry.gpu
    args = {k.replace("_", "-"): v for k, v in entry.engine_args.items()}
    fields: dict[str, Any] = {
        "key": entry.key,
        "engine": entry.engine,
        "app_name": app_name_for(entry.key),
        "repo": weights.repo,
        "revision": revision or weights.revision,
        "served_names": [entry.served_model, entry.key],
        "gpu": entry.gpu,
        "n_gpu": entry.modal.n_gpu,
        "engine_args": args,
        "scaledown_window_s": entry.modal.scaledown_window_s,
        "max_inputs": entry.modal.max_concurrent_inputs,
        "startup_timeout_s": entry.modal.startup_timeout_s,
        "timeout_s": entry.modal.timeout_s,
    }
    fields.update(overrides)
    return ServeSpec(**fields)


def weights_record_path(model_key: str) -> Path:
    return config.paths().models / "modal" / f"{slugify(model_key)}.json"


def load_weights_record(model_key: str) -> dict[str, Any] | None:
    p = weights_record_path(model_key)
    return json.loads(p.read_text()) if p.exists() else None


def save_weights_record(record: dict[str, Any]) -> Path:
    return atomic.write_text(
        weights_record_path(record["model_key"]), json.dumps(record, indent=2, default=str)
    )


def spec_for(entry: ModelEntry, weights: dict[str, Any] | None = None) -> ServeSpec:
    """The app spec for a modal entry. A branch revision is served at the commit the weights
    record resolved it to (and the gpt-oss speculator at the commit downloaded with it)."""
    revision = None
    w = entry.weights
    if (
        weights
        and isinstance(w, HFWeights)
        and not is_commit(w.revision)
        and (weights.get("repo"), weights.get("revision")) == (w.repo, w.revision)
    ):
        revision = weights.get("commit")
    if entry.engine == ENGINE_GPT_OSS:
        extra = {x["repo"]: x["commit"] for x in (weights or {}).get("extra", [])}
        spec = gpt_oss_spec(entry, revision=revision)
        draft = (spec.engine_args.get("speculative-config") or {}).get("model")
        if draft in extra:
            spec = gpt_oss_spec(entry, revision=revision, speculator_revision=extra[draft])
        return spec
    return base_spec(entry, revision=revision)


def spec_for_key(registry: Registry, key: str, expect_engine: str | None = None) -> ServeSpec:
    """For `GOAT_MODEL=<key> modal deploy -m ...`: the spec of that registry entry, checked."""
    entry = registry.get(key)
    if entry.provider != "modal":
        raise ValueError(
            f"GOAT_MODEL={key}: provider is {entry.provider!r}; only provider: modal models deploy here"
        )
    if expect_engine and entry.engine != expect_engine:
        module = "modal_gpt_oss" if entry.engine == "vllm-gpt-oss" else "modal_vllm"
        raise ValueError(
            f"GOAT_MODEL={key} has engine {entry.engine!r}: deploy with -m goat_dagster.serving.{module}"
        )
    return spec_for(entry, load_weights_record(entry.key))


def spec_from_settings(engine: str) -> ServeSpec | None:
    """For `GOAT_MODEL=<key> modal deploy -m goat_dagster.serving.modal_vllm`: the spec of that
    entry of models.yaml (an entry point of its own, so it loads the registry); None without one."""
    key = config.settings().model
    return spec_for_key(load_registry(), key, expect_engine=engine) if key else None


def hf_cache_path(repo: str, commit: str) -> str:
    return f"{HF_CACHE_DIR}/hub/models--{repo.replace('/', '--')}/snapshots/{commit}"


def cost_table(registry: Registry) -> str:
    """Markdown: what each Modal model costs while a replica is up (README "Cloud set-up")."""
    rows = ["| model | app | GPU | GPUs | $/GPU-hour | $/hour while up |", "|---|---|---|---|---|---|"]
    for m in registry.models.values():
        if m.provider != "modal":
            continue
        n = m.modal.n_gpu
        rate = m.pricing.gpu_hour_usd
        rows.append(
            f"| `{m.gateway_name}` | `{app_name_for(m.key)}` | {m.gpu} | {n} | {rate:.2f} | {n * rate:.2f} |"
        )
    return "\n".join(rows)
