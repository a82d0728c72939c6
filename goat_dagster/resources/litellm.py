"""`LiteLLMProxyResource`: the LiteLLM proxy, managed (a detached process under $GOAT_HOME) or
external (a URL and its master key, e.g. a proxy deployed on Modal).

It hands out what a client needs (`client`, `sandbox_client`: base_url, a key, the model name) and
never a provider key; provider keys stay in the proxy's environment.
"""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from goat_dagster.config import settings
from goat_dagster.registry import ModelEntry
from goat_dagster.resources.env import env_vars
from goat_dagster.routing import proxy
from goat_dagster.routing.gateway import GatewayClient, GatewaySettings, client_for, sandbox_client


class LiteLLMProxyResource(ConfigurableResource):
    mode: str = Field(default="managed", description="managed | external")
    host: str = Field(default=proxy.DEFAULT_HOST, description="managed: interface to bind")
    port: int = Field(default=proxy.DEFAULT_PORT, description="managed: port to bind")
    url: str | None = Field(default=None, description="external: the proxy's base URL")
    master_key: str | None = Field(
        default=None, description="external: the proxy's master key (managed: kept in $GOAT_HOME/litellm)"
    )
    start_timeout_s: float = Field(default=120.0, description="managed: how long to wait for readiness")

    def settings(self) -> GatewaySettings:
        if self.mode not in ("managed", "external"):
            raise ValueError(f"LiteLLMProxyResource.mode must be managed or external, not {self.mode!r}")
        return GatewaySettings(
            mode=self.mode,  # type: ignore[arg-type]
            host=self.host,
            port=self.port,
            url=self.url,
            master_key=self.master_key,
        )

    @property
    def managed(self) -> bool:
        return self.mode == "managed"

    def apply(self, cfg: dict[str, Any], log: Any = None) -> dict[str, Any]:
        """Serve `cfg`. Managed: reuse the proxy if its config is unchanged, else (re)start it (after
        running benchmarks release their lease). External: only checks readiness (its config is
        deployed with it). Returns metadata."""
        if self.managed:
            handle = proxy.ensure_proxy(
                cfg, host=self.host, port=self.port, timeout_s=self.start_timeout_s, log=log
            )
            return {
                "mode": "managed",
                "action": handle.action,
                "base_url": handle.base_url,
                "pid": handle.state.pid,
            }
        url = self.settings().base_url()
        return {
            "mode": "external",
            "action": "none",
            "base_url": url,
            "ready": proxy.is_ready(url, timeout_s=10),
        }

    def base_url(self) -> str:
        return self.settings().base_url()

    def client(self, model: str | ModelEntry) -> GatewayClient:
        return client_for(model, settings=self.settings())

    def sandbox_client(
        self, model: str | ModelEntry, *, run_id: str | None = None, work_s: float = 6 * 3600
    ) -> GatewayClient:
        return sandbox_client(model, run_id=run_id, work_s=work_s, settings=self.settings())


def litellm_resource_from_env() -> LiteLLMProxyResource:
    """The resource as `definitions.py` builds it: EnvVar for whatever the environment sets."""
    kwargs = env_vars(
        {"mode": "litellm_mode", "url": "litellm_url", "host": "litellm_host", "port": "litellm_port"}
    )
    if settings().litellm_url:
        kwargs.setdefault("mode", "external")
        kwargs.update(env_vars({"master_key": "litellm_master_key"}))
    return LiteLLMProxyResource(**kwargs)
