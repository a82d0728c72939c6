"""What a Modal vLLM app serves, as plain data that survives the trip into the container.

Modal imports the app module again inside the container, and every object the app was built with
(image, volumes, secrets) must come out identical there, or the deployment is rejected. The
container cannot read models.yaml (nor import pydantic), so the local side turns a registry entry
into a `ServeSpec`, bakes it into the image as JSON (`GOAT_MODAL_SPEC`, via `Image.env()`: a
`modal.Secret` would only appear at call time, after the module was imported), and the container
rebuilds the very same app from it. This module is stdlib-only for that reason.

Names: one app per model key, `goat-vllm-<key>` with dots turned into hyphens (Modal does the same
to URLs, so the app name and its URL slug agree: `llama-3.1-8b` -> `goat-vllm-llama-3-1-8b`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

# ---- names shared by setup, doctor, the apps and the README -------------------------------------

SECRET_PROVIDERS = "goat-llm-providers"
SECRET_LITELLM = "goat-litellm"
SECRET_LANGFUSE = "goat-langfuse"
SECRET_HF = "goat-hf-token"
SECRET_VLLM = "goat-vllm"  # VLLM_API_KEY: the bearer token every goat-vllm-* app requires on /v1
SECRETS = (SECRET_PROVIDERS, SECRET_LITELLM, SECRET_LANGFUSE, SECRET_HF, SECRET_VLLM)
# The secret holds VLLM_API_KEY (`registry.VLLM_KEY_ENV`), which vLLM's OpenAI server reads when
# `--api-key` is not given: the key never appears in the image, the spec or the command line.
SERVE_SECRETS = (SECRET_HF, SECRET_VLLM)  # what every goat-vllm-* app attaches (part of its digest)

VOLUME_MODELS = "goat-model-cache"  # Hugging Face hub cache (weights)
VOLUME_VLLM = "goat-vllm-cache"  # vLLM torch.compile / CUDA graph artifacts
VOLUME_FLASHINFER = "goat-flashinfer-cache"  # FlashInfer MoE kernels (gpt-oss)
VOLUME_RESULTS = "goat-results"  # the proxy's trace sink and anything runs leave behind
VOLUMES = (VOLUME_MODELS, VOLUME_VLLM, VOLUME_FLASHINFER, VOLUME_RESULTS)

HF_CACHE_DIR = "/root/.cache/huggingface"
VLLM_CACHE_DIR = "/root/.cache/vllm"
FLASHINFER_CACHE_DIR = "/root/.cache/flashinfer"

VLLM_VERSION = "0.13.0"  # the version seed 002 verified gpt-oss with; one pin for every vLLM app
HF_HUB_VERSION = "0.36.0"  # what vLLM 0.13's transformers accepts (< 1.0)
VLLM_PORT = 8000
SERVE_FUNCTION = "serve"
ENGINE_VLLM = "vllm"  # app module vllm_app
ENGINE_GPT_OSS = "vllm-gpt-oss"  # app module gpt_oss_app
SPEC_ENV = "GOAT_MODAL_SPEC"
MODEL_ENV = (
    "GOAT_MODEL"  # `GOAT_MODEL=<key> modal deploy -m goat_dagster.serving.modal_vllm` (GoatSettings.model)
)

# Memory per GPU (GB) of the types Modal offers; used to refuse a model that cannot fit before a
# GPU is paid for. Keys are matched case-insensitively; "A100" alone is the 40 GB card.
GPU_MEMORY_GB: dict[str, int] = {
    "T4": 16,
    "L4": 24,
    "A10": 24,
    "A10G": 24,
    "L40S": 48,
    "A100": 40,
    "A100-40GB": 40,
    "A100-80GB": 80,
    "H100": 80,
    "H100!": 80,
    "H200": 141,
    "B200": 180,
}

_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def app_name_for(key: str) -> str:
    """`goat-vllm-<key>`, dots to hyphens (what Modal does to URLs anyway)."""
    return "goat-vllm-" + key.replace(".", "-").lower()


def url_label(app_name: str, function: str = SERVE_FUNCTION) -> str:
    """The `<app>-<function>` part of a web URL, as Modal derives it (dots and underscores -> hyphens).

    A deployed URL is `https://<workspace>[-<env>]--<label>.modal.run`; the authoritative value is
    `Function.get_web_url()`, this is for documentation and for recognising URLs.
    """
    return re.sub(r"[._]", "-", f"{app_name}-{function}".lower())


def gpu_memory_gb(gpu: str) -> int | None:
    return {k.upper(): v for k, v in GPU_MEMORY_GB.items()}.get(gpu.split(":")[0].upper())


# ---- the spec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeSpec:
    """Everything a `goat-vllm-<key>` app is built from. JSON-serialisable, stdlib only."""

    key: str
    engine: str  # vllm | vllm-gpt-oss
    app_name: str
    repo: str
    revision: str
    served_names: list[str]
    gpu: str
    n_gpu: int
    engine_args: dict[str, Any]
    scaledown_window_s: int
    max_inputs: int
    startup_timeout_s: int
    timeout_s: int
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def gpu_request(self) -> str:
        """Modal's `gpu=` string, e.g. `A100-80GB:4`."""
        return self.gpu if self.n_gpu == 1 else f"{self.gpu}:{self.n_gpu}"

    @property
    def served_model(self) -> str:
        return self.served_names[0]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ServeSpec:
        return cls(**json.loads(text))

    @property
    def digest(self) -> str:
        """32 hex chars identifying what is deployed (fits a Modal app tag): the spec and the
        secrets the app attaches, so an app deployed before a secret was added is redeployed."""
        return hashlib.sha256((self.to_json() + ",".join(SERVE_SECRETS)).encode()).hexdigest()[:32]

    def image_env(self) -> dict[str, str]:
        """Environment baked into the image (seed 002: `.env()`, not a Secret)."""
        return {
            "HF_HOME": HF_CACHE_DIR,
            "VLLM_CACHE_ROOT": VLLM_CACHE_DIR,
            "HF_HUB_ENABLE_HF_TRANSFER": "1",
            **self.extra_env,
            SPEC_ENV: self.to_json(),
        }


def spec_from_env() -> ServeSpec | None:
    """The spec baked into this container's image, if any."""
    raw = os.environ.get(SPEC_ENV)
    return ServeSpec.from_json(raw) if raw else None


def cli_arg(name: str, value: Any) -> list[str]:
    """One engine arg as vLLM CLI tokens: True -> flag, False/None -> omitted, dict/list -> JSON."""
    flag = "--" + name.replace("_", "-")
    if value is True:
        return [flag]
    if value is False or value is None:
        return []
    if isinstance(value, dict | list):
        return [flag, json.dumps(value, sort_keys=True, separators=(",", ":"))]
    return [flag, str(value)]


def vllm_command(spec: ServeSpec) -> list[str]:
    """The `vllm serve` command line for a spec (registry engine args last, so they win)."""
    cmd = [
        "vllm",
        "serve",
        spec.repo,
        "--revision",
        spec.revision,
        "--served-model-name",
        *spec.served_names,
        "--host",
        "0.0.0.0",
        "--port",
        str(VLLM_PORT),
        "--tensor-parallel-size",
        str(spec.n_gpu),
        "--uvicorn-log-level",
        "info",
    ]
    for name, value in spec.engine_args.items():
        cmd += cli_arg(name, value)
    return cmd


def fits_message(spec: ServeSpec, weight_bytes: int) -> str | None:
    """A clear reason the weights cannot fit the GPUs asked for, or None when they can."""
    per_gpu = gpu_memory_gb(spec.gpu)
    if per_gpu is None or weight_bytes <= 0:
        return None
    total_gb = per_gpu * spec.n_gpu
    need_gb = weight_bytes / 1e9
    if need_gb > 0.9 * total_gb:
        return (
            f"{spec.key}: {need_gb:.0f} GB of weights do not fit {spec.n_gpu}x {spec.gpu} "
            f"({total_gb} GB, vLLM uses ~90% of it and needs room for the KV cache); "
            "raise modal.n_gpu or pick a larger gpu in models.yaml"
        )
    return None


def is_commit(revision: str) -> bool:
    return bool(_SHA_RE.match(revision))
