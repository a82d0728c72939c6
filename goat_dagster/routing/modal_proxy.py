"""`goat-services`: the LiteLLM proxy on Modal, so sandboxes in Modal's cloud can reach the models.

It serves the config `litellm_config.build_litellm_config(registry, endpoints) -> dict` generates
(the same dict the local proxy runs), adapted for a public URL (`for_modal`): entries pointing at
this machine's loopback are dropped (nothing in Modal's cloud can reach them), and the master key
is required. Provider keys come from the Modal secret `goat-llm-providers`, the master key from
`goat-litellm`, Langfuse credentials from `goat-langfuse`, the vLLM apps' key (VLLM_API_KEY) from
`goat-vllm` (all created by `goat setup`); the config
only ever names them (`os.environ/AZURE_API_KEY`), and a config that carries a literal key is
refused rather than baked into an image.

Deploy::

    modal deploy -m goat_dagster.routing.modal_proxy --env goat
    GOAT_LITELLM_CONFIG_FILE=litellm.yaml modal deploy -m goat_dagster.routing.modal_proxy --env goat

or `modal_deploy.ensure_modal_services(config, log)`. Point the proxy resource's `external` mode
(GOAT_LITELLM_URL) at the URL it prints. The local trace sink, if the config enables it, writes to
Volume `goat-results` (GOAT_HOME=/goat in the container).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import modal

from goat_dagster.serving.modal.spec import (
    SECRET_LANGFUSE,
    SECRET_LITELLM,
    SECRET_PROVIDERS,
    SECRET_VLLM,
    VOLUME_RESULTS,
)

APP_NAME = "goat-services"
PROXY_FUNCTION = "proxy"
PROXY_PORT = 4000
CONFIG_PATH = "/root/litellm_config.yaml"
SPEC_ENV = "GOAT_SERVICES_SPEC"
CONTAINER_GOAT_HOME = "/goat"
MASTER_KEY_REF = "os.environ/LITELLM_MASTER_KEY"
# Config keys whose values are credentials: they may only be `os.environ/NAME` references.
SECRET_FIELDS = ("api_key", "master_key", "aws_secret_access_key", "vertex_credentials", "database_url")


class ConfigError(ValueError):
    """The LiteLLM config cannot be deployed as it is (a literal secret, nothing to serve...)."""


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


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host in ("localhost", "0.0.0.0"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _literal_secrets(obj: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            where = f"{path}.{k}" if path else str(k)
            if k in SECRET_FIELDS and isinstance(v, str) and v and not v.startswith("os.environ/"):
                found.append(where)
            else:
                found += _literal_secrets(v, where)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += _literal_secrets(v, f"{path}[{i}]")
    return found


def for_modal(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The config adapted for a public proxy on Modal, and the model names dropped from it."""
    bad = _literal_secrets(config)
    if bad:
        raise ConfigError(
            "the LiteLLM config holds literal credentials at "
            + ", ".join(bad)
            + "; use os.environ/NAME references (values go in the Modal secrets via `goat setup`)"
        )
    cfg = json.loads(json.dumps(config))  # deep copy, and proof it is JSON-serialisable
    kept, dropped = [], []
    for m in cfg.get("model_list", []):
        base = (m.get("litellm_params") or {}).get("api_base") or ""
        if base and not base.startswith("os.environ/") and _is_loopback(base):
            dropped.append(m.get("model_name", "?"))
        else:
            kept.append(m)
    if not kept:
        raise ConfigError(
            "no model in the LiteLLM config is reachable from Modal (all point at this machine's "
            "loopback); enable a cloud or modal model in models.yaml"
        )
    cfg["model_list"] = kept
    names = {m.get("model_name") for m in kept}
    router = cfg.get("router_settings") or {}
    if isinstance(router.get("fallbacks"), list):  # fallbacks naming dropped models would not load
        router["fallbacks"] = [
            {k: [t for t in v if t in names]}
            for fb in router["fallbacks"]
            for k, v in fb.items()
            if k in names and any(t in names for t in v)
        ]
    general = cfg.get("general_settings") or {}
    if not general.get("master_key"):
        general["master_key"] = MASTER_KEY_REF  # a public URL must never be an open proxy
    cfg["general_settings"] = general
    return cfg, sorted(dropped)


def litellm_version() -> str:
    from importlib.metadata import version

    return version("litellm")


def load_config(source: dict[str, Any] | str | Path | None = None) -> dict[str, Any]:
    """The LiteLLM config to deploy: a dict, a YAML/JSON file, $GOAT_LITELLM_CONFIG_FILE, or built.

    Built means `goat_dagster.routing.config.build_litellm_config(registry, endpoints)`
    over models.yaml and the endpoint records in $GOAT_HOME/endpoints (the routing stage's builder).
    """
    if isinstance(source, dict):
        return source
    from goat_dagster.config import GoatSettings, settings

    path = source or settings().litellm_config_file
    if path:
        import yaml

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a LiteLLM config mapping")
        return data
    try:
        from goat_dagster.routing.config import build_litellm_config  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ConfigError(
            f"no LiteLLM config given and the config builder is not available ({exc}); "
            f"set {GoatSettings.env_name('litellm_config_file')}=<litellm config file>"
        ) from None
    from goat_dagster.registry import load_registry
    from goat_dagster.serving.endpoint import load_endpoints

    return build_litellm_config(load_registry(), load_endpoints())


def services_spec(config: dict[str, Any] | str | Path | None = None) -> tuple[ServicesSpec, list[str]]:
    cfg, dropped = for_modal(load_config(config))
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
