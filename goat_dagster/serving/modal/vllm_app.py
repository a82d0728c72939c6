"""One Modal app per model: vLLM's OpenAI-compatible server on the GPU models.yaml names.

Deploy (the key is a models.yaml key with `provider: modal`, `engine: vllm`)::

    GOAT_MODEL=qwen3-4b modal deploy -m goat_dagster.serving.modal_vllm --env goat
    GOAT_MODEL=qwen3-4b modal run --env goat -m goat_dagster.serving.modal_vllm   # smoke test

or let Dagster do it: `serving_endpoint` calls `modal_deploy.ensure_modal_endpoint`, which builds
the same app with `build_vllm_app` and deploys it. gpt-oss models have their own image:
`modal_gpt_oss`.

What the app is, from the registry entry (see `modal_spec.ServeSpec`): app `goat-vllm-<key>`;
GPU `gpu` x `modal.n_gpu`; vLLM `--revision` pinned to the weights' commit; `engine_args` as vLLM
flags; HF weights cache on Volume `goat-model-cache` and vLLM's compile cache on `goat-vllm-cache`;
scale to zero after `modal.scaledown_window_s` (5 min default); `@modal.concurrent` with
`modal.max_concurrent_inputs`; `@modal.web_server` waiting up to `modal.startup_timeout_s` for the
port; the `goat-hf-token` and `goat-vllm` secrets always attached (a conditional secret changes the
function's dependency count between the local and the container import, which Modal rejects).
`goat-vllm` holds VLLM_API_KEY, which vLLM requires as a bearer token on /v1 (the URL is public).
"""

from __future__ import annotations

import subprocess
from typing import Any

import modal

from goat_dagster.serving.modal.spec import (
    ENGINE_GPT_OSS,
    ENGINE_VLLM,
    HF_CACHE_DIR,
    HF_HUB_VERSION,
    MODEL_ENV,
    SERVE_SECRETS,
    VLLM_CACHE_DIR,
    VLLM_PORT,
    VLLM_VERSION,
    VOLUME_MODELS,
    VOLUME_VLLM,
    ServeSpec,
    spec_from_env,
    vllm_command,
)

ENGINE = ENGINE_VLLM
PYTHON_VERSION = "3.12"
IMAGE_PACKAGES = (f"vllm=={VLLM_VERSION}", f"huggingface_hub[hf_transfer]=={HF_HUB_VERSION}")


def vllm_image(spec: ServeSpec) -> modal.Image:
    """Debian slim + pinned vLLM (its wheels bring CUDA); the spec and cache paths baked in."""
    return (
        modal.Image.debian_slim(python_version=PYTHON_VERSION)
        .uv_pip_install(*IMAGE_PACKAGES)
        .env(spec.image_env())
    )


def cache_volumes() -> dict[str, modal.Volume]:
    return {
        HF_CACHE_DIR: modal.Volume.from_name(VOLUME_MODELS, create_if_missing=True),
        VLLM_CACHE_DIR: modal.Volume.from_name(VOLUME_VLLM, create_if_missing=True),
    }


def start_vllm() -> None:
    """Container side: start vLLM for the spec baked into the image, in the background; Modal routes
    traffic once its port answers."""
    spec = spec_from_env()
    if spec is None:
        raise RuntimeError("GOAT_MODAL_SPEC is not set in this image; deploy through goat_dagster")
    cmd = vllm_command(spec)
    print("starting:", " ".join(cmd), flush=True)
    subprocess.Popen(cmd)


def run_smoke(fn: Any, spec: ServeSpec | None, prompt: str, wait_s: int) -> None:
    """What an app's `smoke` entrypoint does: wait for /health, ask, call a tool, print."""
    # a local entrypoint: it runs on the host, where goat's dependencies are (not in the image)
    from goat_dagster.serving.modal.health import smoke_test

    assert spec is not None
    timeout_s = wait_s or spec.startup_timeout_s
    print(smoke_test(fn.get_web_url(), spec.served_model, prompt=prompt, timeout_s=timeout_s))


def serve() -> None:
    """The app's web server (`start_vllm`)."""
    start_vllm()


_serve_raw = serve  # the module-level name is rebound to the Modal Function below


def module_spec(engine: str) -> ServeSpec | None:
    """What an app module builds at import: in the container, the spec baked into its image (Modal
    re-imports the module there); on the host, the registry entry $GOAT_MODEL names (`modal deploy
    -m goat_dagster.serving.modal_vllm`), else nothing."""
    if not modal.is_local():
        spec = spec_from_env()
        return spec if spec is not None and spec.engine == engine else None
    # host only: the container has neither models.yaml nor goat's dependencies, so the registry side
    # is imported here, never at the top of a module shipped into the image
    from goat_dagster.serving.modal.plan import spec_from_settings

    return spec_from_settings(engine)


def smoke(prompt: str = "Say hello in five words.", wait_s: int = 0) -> None:
    """`modal run -m goat_dagster.serving.modal_vllm`: wait for /health, ask, call a tool, print."""
    run_smoke(serve, SPEC, prompt, wait_s)


def build_serve_app(
    spec: ServeSpec, image: modal.Image, volumes: dict[str, modal.Volume], raw_serve: Any, raw_smoke: Any
) -> tuple[modal.App, modal.Function]:
    """The app around a raw `serve` function; shared by the vLLM and gpt-oss modules.

    `raw_serve` and `raw_smoke` must be module-level functions of the module that rebuilds this app
    on import in the container (Modal imports the function's module there and looks the name up).
    """
    app = modal.App(
        spec.app_name, tags={"goat-model": spec.app_name[len("goat-vllm-") :], "goat-spec": spec.digest}
    )
    web = modal.web_server(port=VLLM_PORT, startup_timeout=spec.startup_timeout_s)(raw_serve)
    fn = app.function(
        image=image,
        gpu=spec.gpu_request,
        volumes=volumes,
        secrets=[modal.Secret.from_name(name) for name in SERVE_SECRETS],
        scaledown_window=spec.scaledown_window_s,
        timeout=spec.timeout_s,
        startup_timeout=spec.startup_timeout_s,
    )(modal.concurrent(max_inputs=spec.max_inputs)(web))

    app.local_entrypoint(name="smoke")(raw_smoke)
    return app, fn


def check_engine(spec: ServeSpec, engine: str) -> None:
    """Refuse a spec of the other engine, naming the module that deploys it."""
    if spec.engine != engine:
        module = "modal_gpt_oss" if spec.engine == ENGINE_GPT_OSS else "modal_vllm"
        raise ValueError(
            f"{spec.key} uses engine {spec.engine!r}; deploy it with -m goat_dagster.serving.{module}"
        )


def missing(name: str, engine: str, example: str, module: str) -> AttributeError:
    """The error for a missing module attribute; for `app` (what `modal deploy -m` asks for), how to
    name the model to deploy."""
    if name != "app":
        return AttributeError(name)
    return AttributeError(
        f"no Modal app to deploy: set {MODEL_ENV}=<key of a provider: modal, engine: {engine} model in "
        f"models.yaml>, e.g. `{MODEL_ENV}={example} modal deploy -m goat_dagster.serving.{module}`"
    )


def build_vllm_app(spec: ServeSpec) -> tuple[modal.App, modal.Function]:
    check_engine(spec, ENGINE)
    return build_serve_app(spec, vllm_image(spec), cache_volumes(), _serve_raw, smoke)


SPEC = module_spec(ENGINE)
if SPEC is not None:
    app, serve = build_vllm_app(SPEC)


def __getattr__(name: str) -> Any:
    raise missing(name, ENGINE, "qwen3-4b", "modal_vllm")
