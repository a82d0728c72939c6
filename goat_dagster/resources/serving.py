"""`LocalServingResource`: the local `goat serve` control plane as a Dagster resource."""

from __future__ import annotations

from collections.abc import Callable

from dagster import ConfigurableResource
from pydantic import Field

from goat_dagster.registry import ModelEntry
from goat_dagster.resources.env import env_vars
from goat_dagster.serving.endpoint import Endpoint
from goat_dagster.serving.local.backend import ensure_local_endpoint
from goat_dagster.serving.local.settings import DEFAULT_HOST, DEFAULT_PORT, ENV, ServeSettings


class LocalServingResource(ConfigurableResource):
    """Where the local control plane listens and the memory it may use. Assets call it to make sure
    `goat serve` runs (started detached under $GOAT_HOME/serve when it does not) and to load models."""

    host: str = Field(default=DEFAULT_HOST, description="address goat serve listens on")
    port: int = Field(
        default=DEFAULT_PORT, description="port of goat serve; 0 = any free port (reuse the running one)"
    )
    budget_mb: int | None = Field(
        default=None, description="memory budget for loaded models (default: half the RAM)"
    )
    margin_mb: int | None = Field(default=None, description="head-room kept free within the budget")

    def settings(self) -> ServeSettings:
        return ServeSettings(
            host=self.host, port=self.port, budget_mb=self.budget_mb, margin_mb=self.margin_mb
        )

    def ensure_endpoint(self, entry: ModelEntry, log: Callable[[str], None] | None = None) -> Endpoint:
        return ensure_local_endpoint(entry, self.settings(), log=log)


def local_serving_resource_from_env() -> LocalServingResource:
    """The resource as `definitions.py` builds it: EnvVar for whatever the environment sets
    (GOAT_SERVE_HOST, GOAT_SERVE_PORT, GOAT_SERVE_BUDGET_MB, GOAT_SERVE_MARGIN_MB)."""
    return LocalServingResource(**env_vars(ENV))
