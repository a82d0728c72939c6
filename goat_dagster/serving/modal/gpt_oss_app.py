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
`speculative-config: {...}` or `speculative-config: null` to switch speculation off. The defaults
are part of the spec (`plan.gpt_oss_spec`); this module builds the image and the app.
"""

from __future__ import annotations

from typing import Any

import modal

from goat_dagster.serving.modal.spec import (
    ENGINE_GPT_OSS,
    FLASHINFER_CACHE_DIR,
    HF_HUB_VERSION,
    VLLM_VERSION,
    VOLUME_FLASHINFER,
    ServeSpec,
)
from goat_dagster.serving.modal.vllm_app import (
    build_serve_app,
    cache_volumes,
    check_engine,
    missing,
    module_spec,
    run_smoke,
    start_vllm,
)

ENGINE = ENGINE_GPT_OSS
CUDA_BASE = "nvidia/cuda:12.8.1-devel-ubuntu22.04"
PYTHON_VERSION = "3.12"
IMAGE_PACKAGES = (f"vllm=={VLLM_VERSION}", f"huggingface_hub[hf_transfer]=={HF_HUB_VERSION}")


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
    """The app's web server (`vllm_app.start_vllm`; defined here, where the container finds it)."""
    start_vllm()


_serve_raw = serve


def smoke(prompt: str = "Say hello in five words.", wait_s: int = 0) -> None:
    """`modal run -m goat_dagster.serving.modal_gpt_oss`: wait for /health, ask, call a tool, print."""
    run_smoke(serve, SPEC, prompt, wait_s)


def build_gpt_oss_app(spec: ServeSpec) -> tuple[modal.App, modal.Function]:
    check_engine(spec, ENGINE)
    return build_serve_app(spec, gpt_oss_image(spec), gpt_oss_volumes(), _serve_raw, smoke)


SPEC = module_spec(ENGINE)
if SPEC is not None:
    app, serve = build_gpt_oss_app(SPEC)


def __getattr__(name: str) -> Any:
    raise missing(name, ENGINE, "gpt-oss-20b", "modal_gpt_oss")
