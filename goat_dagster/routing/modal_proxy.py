"""`goat-services`: the LiteLLM proxy on Modal, so sandboxes in Modal's cloud can reach the models.

It serves the config the routing stage wrote (`litellm_config`; the same the local proxy runs, or
$GOAT_LITELLM_CONFIG_FILE), adapted for a public URL (`config.for_public_proxy`): entries pointing
at this machine's loopback are dropped (nothing in Modal's cloud can reach them), and the master
key is required. Provider keys come from the Modal secret `goat-llm-providers`, the master key from
`goat-litellm`, Langfuse credentials from `goat-langfuse`, the vLLM apps' key (VLLM_API_KEY) from
`goat-vllm` (all created by `goat setup`); the config
only ever names them (`os.environ/AZURE_API_KEY`), and a config that carries a literal key is
refused rather than baked into an image.

Deploy::

    modal deploy -m goat_dagster.routing.modal_proxy --env goat
    GOAT_LITELLM_CONFIG_FILE=litellm.yaml modal deploy -m goat_dagster.routing.modal_proxy --env goat

or `ensure_modal_proxy(config, cloud, log)`
(what `ModalResource.ensure_services` calls). Point the proxy resource's `external` mode
(GOAT_LITELLM_URL) at the URL it prints. The local trace sink, if the config enables it, writes to
Volume `goat-results` (GOAT_HOME=/goat in the container).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import modal

from goat_dagster import atomic, config
from goat_dagster.config import ConfigError, GoatSettings, settings
from goat_dagster.routing.config import config_path, for_public_proxy, read_config
from goat_dagster.serving.modal.spec import (
    SECRET_LANGFUSE,
    SECRET_LITELLM,
    SECRET_PROVIDERS,
    SECRET_VLLM,
    VOLUME_RESULTS,
)

if TYPE_CHECKING:  # the container imports this module and has none of goat's host-side deps
    from goat_dagster.serving.backend import Log
    from goat_dagster.serving.modal.cloud import ModalCloud

APP_NAME = "goat-services"
PROXY_FUNCTION = "proxy"
PROXY_PORT = 4000
CONFIG_PATH = "/root/litellm_config.yaml"
SPEC_ENV = "GOAT_SERVICES_SPEC"
CONTAINER_GOAT_HOME = "/goat"


@dataclass(frozen=True)
class ServicesSpec:
    config: dict[str, Any]
    litellm_version: str
    max_inputs: int = 100
    scaledown_window_s: int = 900
    startup_timeout_s: int = 300

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ServicesSpec:
        return cls(**json.loads(text))

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:32]


def litellm_version() -> str:
    """The LiteLLM version of this environment: the image installs the same."""
    return version("litellm")


def services_spec(litellm_config: dict[str, Any] | Path | None = None) -> tuple[ServicesSpec, list[str]]:
    """The spec of `goat-services` for a LiteLLM config: the dict `routing.config.build_config`
    made, a file, or (None) $GOAT_LITELLM_CONFIG_FILE, else the config the routing stage wrote
    ($GOAT_HOME/litellm/config.yaml); adapted for a public URL. Also the model names left out."""
    if not isinstance(litellm_config, dict):
        path = litellm_config or settings().litellm_config_file or config_path()
        if not Path(path).exists():
            raise ConfigError(
                f"{path}: no LiteLLM config yet; materialize litellm_config (or `goat run` a model) "
                f"first, or set {GoatSettings.env_name('litellm_config_file')} to a config file"
            )
        litellm_config = read_config(Path(path))
    cfg, dropped = for_public_proxy(litellm_config)
    return ServicesSpec(config=cfg, litellm_version=litellm_version()), dropped


def services_image(spec: ServicesSpec) -> modal.Image:
    # The generated config loads goat's trace sink (`callbacks`) and scoped-key check
    # (`custom_auth`) from the goat_dagster package: ship it (they import only litellm + pydantic).
    return (
        modal.Image.debian_slim(python_version="3.12")
        .uv_pip_install(f"litellm[proxy]=={spec.litellm_version}")
        .env({SPEC_ENV: spec.to_json(), "GOAT_HOME": CONTAINER_GOAT_HOME})
        .add_local_python_source("goat_dagster")
    )


def proxy() -> None:
    """Container side: write the config and start the proxy; Modal routes once port 4000 answers."""
    raw = os.environ.get(SPEC_ENV)
    if not raw:
        raise RuntimeError(f"{SPEC_ENV} is not set in this image; deploy through goat_dagster")
    spec = ServicesSpec.from_json(raw)
    Path(CONFIG_PATH).write_text(json.dumps(spec.config, indent=2))  # JSON is YAML
    cmd = ["litellm", "--config", CONFIG_PATH, "--host", "0.0.0.0", "--port", str(PROXY_PORT)]
    print("starting:", " ".join(cmd), flush=True)
    subprocess.Popen(cmd)


_proxy_raw = proxy


def build_services_app(spec: ServicesSpec) -> tuple[modal.App, modal.Function]:
    app = modal.App(APP_NAME, tags={"goat-spec": spec.digest})
    web = modal.web_server(port=PROXY_PORT, startup_timeout=spec.startup_timeout_s)(_proxy_raw)
    fn = app.function(
        image=services_image(spec),
        secrets=[
            modal.Secret.from_name(SECRET_PROVIDERS),
            modal.Secret.from_name(SECRET_LITELLM),
            modal.Secret.from_name(SECRET_LANGFUSE),
            modal.Secret.from_name(SECRET_VLLM),  # the key the proxy sends to the goat-vllm-* apps
        ],
        volumes={CONTAINER_GOAT_HOME: modal.Volume.from_name(VOLUME_RESULTS, create_if_missing=True)},
        scaledown_window=spec.scaledown_window_s,
        timeout=3600,
        startup_timeout=spec.startup_timeout_s,
        cpu=1.0,
        memory=2048,
    )(modal.concurrent(max_inputs=spec.max_inputs)(web))
    return app, fn


# ---- deploying it -----------------------------------------------------------------------


def services_record_path() -> Path:
    return config.paths().home / "modal" / "services.json"


def ensure_modal_proxy(litellm_config: dict[str, Any] | Path | None, cloud: ModalCloud, log: Log) -> str:
    """Deploy (or find, if current) `goat-services` serving a LiteLLM config (see
    `services_spec`); its URL, for GOAT_LITELLM_URL (the external mode)."""
    spec, dropped = services_spec(litellm_config)
    if dropped:
        log.warning(f"not served on Modal (they point at this machine): {', '.join(dropped)}")
    tags = cloud.app_tags(APP_NAME)
    if tags is None or tags.get("goat-spec") != spec.digest:
        log.info(f"deploying {APP_NAME} to Modal environment {cloud.environment}")
        app, _ = build_services_app(spec)
        cloud.deploy(app)
    url = cloud.web_url(APP_NAME, PROXY_FUNCTION)
    if url is None:
        raise RuntimeError(f"{APP_NAME} was deployed but Modal has no URL for it in {cloud.environment}")
    record = {
        "app_name": APP_NAME,
        "url": url,
        "environment": cloud.environment,
        "spec_digest": spec.digest,
        "models": [m.get("model_name") for m in spec.config.get("model_list", [])],
        "dropped": dropped,
        "checked_at": datetime.now(UTC).isoformat(),
    }
    atomic.write_text(services_record_path(), json.dumps(record, indent=2))
    log.info(f"LiteLLM proxy on Modal: {url} (set GOAT_LITELLM_URL={url} to route through it)")
    return url


if not modal.is_local() and os.environ.get(SPEC_ENV):
    app, proxy = build_services_app(ServicesSpec.from_json(os.environ[SPEC_ENV]))


def __getattr__(name: str) -> Any:
    """`modal deploy -m goat_dagster.routing.modal_proxy` asks for `app`: build it then."""
    if name == "app" and modal.is_local():
        spec, dropped = services_spec()
        if dropped:
            print(f"not on Modal (loopback endpoints): {', '.join(dropped)}")
        built, _ = build_services_app(spec)
        globals()["app"] = built
        return built
    raise AttributeError(name)
