"""gpt-oss-20b / gpt-oss-120b on Modal: their own image, FlashInfer cache and speculative decoding.

Deploy::

    GOAT_MODEL=gpt-oss-20b modal deploy -m goat_dagster.serving.modal_gpt_oss --env goat
    GOAT_MODEL=gpt-oss-20b modal run --env goat -m goat_dagster.serving.modal_gpt_oss   # smoke test

Differences from `modal_vllm` (seed 002; modal-labs/modal-examples `gpt_oss_inference.py`):
- CUDA 12.8.1 *devel* base image (FlashInfer JIT-compiles its MXFP4 MoE kernels with nvcc) and the
  pinned vLLM; the compiled kernels persist on Volume `goat-flashinfer-cache`.
- EAGLE-3 speculative decoding with RedHat's speculator for each size, FP8 KV cache, async
  scheduling, torch.compile with the GPT-OSS recipe's fusion passes, CUDA graphs sized to the
  replica's concurrency.
Anything under `engine_args` in models.yaml overrides these defaults (it is applied last), e.g.
`speculative-config: {...}` or `speculative-config: null` to switch speculation off.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Any

import modal

from goat_dagster.serving.modal.spec import (
    FLASHINFER_CACHE_DIR,
    HF_HUB_VERSION,
    MODEL_ENV,
    VLLM_VERSION,
    VOLUME_FLASHINFER,
    ServeSpec,
    base_spec,
    module_spec,
    spec_from_env,
    vllm_command,
)
from goat_dagster.serving.modal.vllm_app import build_serve_app, cache_volumes

if TYPE_CHECKING:
    from goat_dagster.registry import ModelEntry

ENGINE = "vllm-gpt-oss"
CUDA_BASE = "nvidia/cuda:12.8.1-devel-ubuntu22.04"
PYTHON_VERSION = "3.12"
IMAGE_PACKAGES = (f"vllm=={VLLM_VERSION}", f"huggingface_hub[hf_transfer]=={HF_HUB_VERSION}")

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
    if spec.engine != ENGINE:
        raise ValueError(
            f"{entry.key} uses engine {spec.engine!r}; deploy it with -m goat_dagster.serving.modal_vllm"
        )
    args = {**default_engine_args(spec.repo, spec.max_inputs, speculator_revision), **spec.engine_args}
    env = {"VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8": "1"} if spec.gpu.upper() in BLACKWELL else {}
    return ServeSpec(**{**spec.__dict__, "engine_args": args, "extra_env": env})


def gpt_oss_image(spec: ServeSpec) -> modal.Image:
    return (
        modal.Image.from_registry(CUDA_BASE, add_python=PYTHON_VERSION)
        .entrypoint([])
        .uv_pip_install(*IMAGE_PACKAGES)
        .env(spec.image_env())
    )


def gpt_oss_volumes() -> dict[str, modal.Volume]:
    return {
        **cache_volumes(),
        FLASHINFER_CACHE_DIR: modal.Volume.from_name(VOLUME_FLASHINFER, create_if_missing=True),
    }


def serve() -> None:
    """Container side: start vLLM in the background; Modal routes traffic once the port answers."""
    spec = spec_from_env()
    if spec is None:
        raise RuntimeError("GOAT_MODAL_SPEC is not set in this image; deploy through goat_dagster")
    cmd = vllm_command(spec)
    print("starting:", " ".join(cmd), flush=True)
    subprocess.Popen(cmd)


_serve_raw = serve


def smoke(prompt: str = "Say hello in five words.", wait_s: int = 0) -> None:
    """`modal run -m goat_dagster.serving.modal_gpt_oss`: wait for /health, ask, call a tool, print."""
    from goat_dagster.serving.modal.deploy import smoke_test

    assert SPEC is not None
    print(
        smoke_test(
            serve.get_web_url(), SPEC.served_model, prompt=prompt, timeout_s=wait_s or SPEC.startup_timeout_s
        )
    )


def build_gpt_oss_app(spec: ServeSpec) -> tuple[modal.App, modal.Function]:
    if spec.engine != ENGINE:
        raise ValueError(
            f"{spec.key} uses engine {spec.engine!r}; deploy it with -m goat_dagster.serving.modal_vllm"
        )
    return build_serve_app(spec, gpt_oss_image(spec), gpt_oss_volumes(), _serve_raw, smoke)


SPEC = module_spec(ENGINE)
if SPEC is not None:
    app, serve = build_gpt_oss_app(SPEC)


def __getattr__(name: str) -> Any:
    if name == "app":
        raise AttributeError(
            f"no Modal app to deploy: set {MODEL_ENV}=gpt-oss-20b (or another engine: vllm-gpt-oss key), "
            f"e.g. `{MODEL_ENV}=gpt-oss-20b modal deploy -m goat_dagster.serving.modal_gpt_oss`"
        )
    raise AttributeError(name)
