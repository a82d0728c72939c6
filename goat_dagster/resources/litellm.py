"""`LiteLLMProxyResource`: the LiteLLM proxy, managed (a detached process under $GOAT_HOME) or
external (a URL and its master key, e.g. a proxy deployed on Modal).

It makes sure the proxy serves a config (`ensure`) and hands out what a caller needs (`gateway`,
`sandbox_gateway`: base_url, a key, the model name) and never a provider key; provider keys stay in
the proxy's environment.
"""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from goat_dagster.config import settings
from goat_dagster.registry import ModelEntry
from goat_dagster.resources.env import env_vars
from goat_dagster.routing.config import LiteLLMConfig
from goat_dagster.routing.gateway import Gateway, resolve_gateway, sandbox_gateway
from goat_dagster.routing.proxy import DEFAULT_HOST, DEFAULT_PORT, ProxySettings, ProxyStatus, ensure_proxy
from goat_dagster.serving.backend import Log


class LiteLLMProxyResource(ConfigurableResource):
    mode: str = Field(default="managed", description="managed | external")
    host: str = Field(default=DEFAULT_HOST, description="managed: interface to bind")
    port: int = Field(default=DEFAULT_PORT, description="managed: port to bind")
    url: str | None = Field(default=None, description="external: the proxy's base URL")
    master_key: str | None = Field(
        default=None, description="external: the proxy's master key (managed: kept in $GOAT_HOME/litellm)"
    )
    start_timeout_s: float = Field(default=120.0, description="managed: how long to wait for readiness")

    def settings(self) -> ProxySettings:
        if self.mode not in ("managed", "external"):
            raise ValueError(f"LiteLLMProxyResource.mode must be managed or external, not {self.mode!r}")
        return ProxySettings(
            mode=self.mode,  # type: ignore[arg-type]
            host=self.host,
            port=self.port,
            url=self.url,
            master_key=self.master_key,
        )

    def ensure(self, cfg: LiteLLMConfig, log: Log) -> ProxyStatus:
        """Serve `cfg` (`routing.proxy.ensure_proxy`): managed, reused or (re)started; external,
        checked for readiness (its config is deployed with it)."""
        return ensure_proxy(cfg, self.settings(), timeout_s=self.start_timeout_s, log=log)

    def base_url(self) -> str:
        return self.settings().base_url()

    def gateway(self, entry: ModelEntry) -> Gateway:
        """Host-side: the proxy, with its master key."""
        return resolve_gateway(entry, self.settings())

    def sandbox_gateway(
        self, entry: ModelEntry, *, run_id: str | None = None, work_s: float = 6 * 3600
    ) -> Gateway:
        """For code in a sandbox: the proxy, with a key scoped to this model for `work_s` seconds."""
        return sandbox_gateway(entry, run_id=run_id, work_s=work_s, proxy=self.settings())


def litellm_resource_from_env() -> LiteLLMProxyResource:
    """The resource as `definitions.py` builds it: EnvVar for whatever the environment sets."""
    kwargs: dict[str, Any] = env_vars(
        {"mode": "litellm_mode", "url": "litellm_url", "host": "litellm_host", "port": "litellm_port"}
    )
    if settings().litellm_url:
        kwargs.setdefault("mode", "external")
        kwargs.update(env_vars({"master_key": "litellm_master_key"}))
    return LiteLLMProxyResource(**kwargs)
