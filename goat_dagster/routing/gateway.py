"""The one door to every model: what a client needs to call a model through the LiteLLM proxy.

Two modes (`GatewaySettings`):
- `managed` (default): the proxy this GOAT_HOME runs (`serving/proxy.py`) on 127.0.0.1:4000
  (`GOAT_LITELLM_HOST` / `GOAT_LITELLM_PORT`).
- `external`: a proxy somewhere else (e.g. deployed on Modal): `GOAT_LITELLM_URL` and its
  `LITELLM_MASTER_KEY`. Chosen when `GOAT_LITELLM_MODE=external` or `GOAT_LITELLM_URL` is set.

`client_for(model)` is for code on the host (the builtin agent loop): master key. `sandbox_client(...)`
is for anything running inside a sandbox (`command:` agents): a scoped key that can call only the
given models until it expires (see `proxy_auth.py`); never the master key, never a provider key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from goat_dagster import config
from goat_dagster.registry import ModelEntry, Registry, load_registry
from goat_dagster.routing import proxy
from goat_dagster.routing.auth import mint_scoped_key
from goat_dagster.routing.config import MASTER_KEY_ENV, BuiltConfig, plan_litellm_config
from goat_dagster.serving.endpoint import Endpoint, load_endpoints

if TYPE_CHECKING:
    import openai

Mode = Literal["managed", "external"]


class GatewayError(RuntimeError):
    pass


@dataclass(frozen=True)
class GatewaySettings:
    mode: Mode = "managed"
    host: str = proxy.DEFAULT_HOST
    port: int = proxy.DEFAULT_PORT
    url: str | None = None  # external proxy base URL (without /v1)
    master_key: str | None = None  # external proxy's master key (managed: from $GOAT_HOME)

    @classmethod
    def from_env(cls) -> GatewaySettings:
        s = config.settings()
        return cls(
            mode="external" if s.litellm_external else "managed",
            host=s.litellm_host,
            port=s.litellm_port,
            url=s.litellm_url,
            master_key=s.litellm_master_key.get_secret_value() if s.litellm_master_key else None,
        )

    def base_url(self) -> str:
        """The proxy's base URL (no /v1). Managed: the running proxy's, else the configured port."""
        if self.mode == "external":
            if not self.url:
                raise GatewayError("external LiteLLM proxy: set GOAT_LITELLM_URL")
            return self.url.rstrip("/").removesuffix("/v1")
        st = proxy.read_state()
        if st is not None:
            return st.base_url
        return f"http://{self.host}:{self.port}"

    def admin_key(self) -> str:
        if self.mode == "external":
            if not self.master_key:
                raise GatewayError(f"external LiteLLM proxy: set {MASTER_KEY_ENV}")
            return self.master_key
        return proxy.master_key()


@dataclass(frozen=True)
class GatewayClient:
    """base_url (OpenAI-compatible, ends in /v1), api_key and the model name to send."""

    base_url: str
    api_key: str
    model: str

    def openai(self, **kwargs: object) -> openai.OpenAI:
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=self.api_key, **kwargs)  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        """Environment for an OpenAI-compatible agent process (e.g. goat-eval in a sandbox)."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": self.api_key, "OPENAI_MODEL": self.model}

    def __repr__(self) -> str:  # keys stay out of logs
        return f"GatewayClient(base_url={self.base_url!r}, model={self.model!r}, api_key='***')"


def gateway_name(model: str | ModelEntry, registry: Registry | None = None) -> str:
    """The model name clients send: `<key>-local` for self-hosted models, the key otherwise."""
    if isinstance(model, ModelEntry):
        return model.gateway_name
    reg = registry or load_registry()
    return reg.get(model).gateway_name


def client_for(
    model: str | ModelEntry, *, registry: Registry | None = None, settings: GatewaySettings | None = None
) -> GatewayClient:
    """Host-side client for a model (key, slug or gateway name), with the proxy's master key."""
    s = settings or GatewaySettings.from_env()
    return GatewayClient(s.base_url() + "/v1", s.admin_key(), gateway_name(model, registry))


SCOPED_KEY_GRACE_S = 600.0  # a sandbox's key outlives the work it was minted for by this much


def sandbox_key(
    admin_key: str,
    name: str,
    *,
    run_id: str | None = None,
    work_s: float,
    ids: dict[str, str] | None = None,
) -> str:
    """The key a sandbox gets: scoped to the gateway model `name` (and `run_id`), valid for as long
    as the sandbox's work may take (`work_s`) plus SCOPED_KEY_GRACE_S, signed with the proxy's
    `admin_key`; `ids` name the attempt, so the trace sink files calls made with it there. Every
    scoped key handed to a sandbox is minted here."""
    return mint_scoped_key(
        admin_key, models=[name], run_id=run_id, ttl_s=work_s + SCOPED_KEY_GRACE_S, ids=ids
    )


def sandbox_client(
    model: str | ModelEntry,
    *,
    run_id: str | None = None,
    work_s: float = 6 * 3600,
    registry: Registry | None = None,
    settings: GatewaySettings | None = None,
) -> GatewayClient:
    """Client for code inside a sandbox: a `sandbox_key` for this one model, for `work_s` seconds
    of work.

    `base_url` is the proxy as the host sees it; a sandbox on another machine (Modal) needs the
    proxy reachable from there (external mode, e.g. the proxy deployed on Modal).
    """
    s = settings or GatewaySettings.from_env()
    name = gateway_name(model, registry)
    return GatewayClient(
        s.base_url() + "/v1", sandbox_key(s.admin_key(), name, run_id=run_id, work_s=work_s), name
    )


def build_config(
    registry: Registry | None = None, endpoints: dict[str, Endpoint] | None = None
) -> BuiltConfig:
    """The proxy config for the registry (default: models.yaml) and the endpoint records."""
    return plan_litellm_config(
        registry or load_registry(), load_endpoints() if endpoints is None else endpoints
    )


def ensure_gateway(
    registry: Registry | None = None,
    endpoints: dict[str, Endpoint] | None = None,
    *,
    settings: GatewaySettings | None = None,
) -> str:
    """Make sure a proxy serving this registry is up; return its base URL (no /v1).

    Managed: (re)starts the proxy only if the config changed. External: checks readiness only (the
    config of a remote proxy is deployed with it).
    """
    s = settings or GatewaySettings.from_env()
    if s.mode == "external":
        url = s.base_url()
        if not proxy.is_ready(url, timeout_s=10):
            raise GatewayError(f"external LiteLLM proxy at {url} is not ready (/health/readiness)")
        return url
    built = build_config(registry, endpoints)
    return proxy.ensure_proxy(built.config, host=s.host, port=s.port).base_url
