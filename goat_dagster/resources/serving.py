"""The serving resources: one per backend, and `ServingResource`, which holds them and hands out the
backend of a model (`Backends.for_entry`: the registry decides which kind serves a provider).

    @asset(...)
    def serving_endpoint(context, serving: ServingResource, registry: RegistryResource):
        entry = registry.entry(context.partition_key)
        ep = serving.backend(entry).endpoint(entry, context.log)
"""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from goat_dagster.registry import ModelEntry
from goat_dagster.resources.env import env_vars
from goat_dagster.resources.modal import ModalResource, modal_resource_from_env
from goat_dagster.serving.backend import ServingBackend
from goat_dagster.serving.backends import Backends
from goat_dagster.serving.external import ExternalBackend
from goat_dagster.serving.local.backend import LocalBackend
from goat_dagster.serving.local.settings import DEFAULT_HOST, DEFAULT_PORT, ENV, ServeSettings


class LocalServingResource(ConfigurableResource):
    """Where the local control plane listens and the memory it may use. Its backend makes sure
    `goat serve` runs (started detached under $GOAT_HOME/serve when it does not) and loads models."""

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

    def backend(self) -> LocalBackend:
        return LocalBackend(self.settings())


class ExternalServingResource(ConfigurableResource):
    """Cloud APIs and OpenAI-compatible servers goat does not run: registered and probed."""

    probe_timeout_s: float = Field(default=60.0, description="how long a probe call may take")

    def backend(self) -> ExternalBackend:
        return ExternalBackend(self.probe_timeout_s)


class ServingResource(ConfigurableResource):
    """Every serving backend, configured; `backend(entry)` is the one a model is served by."""

    local: LocalServingResource
    modal: ModalResource
    external: ExternalServingResource

    def backends(self) -> Backends:
        return Backends(self.local.backend(), self.modal.backend(), self.external.backend())

    def backend(self, entry: ModelEntry) -> ServingBackend:
        return self.backends().for_entry(entry)


def serving_resource_from_env() -> ServingResource:
    """The resource as `definitions.py` builds it: EnvVar for whatever the environment sets
    (GOAT_SERVE_HOST, GOAT_SERVE_PORT, GOAT_SERVE_BUDGET_MB, GOAT_SERVE_MARGIN_MB, GOAT_MODAL_*)."""
    return ServingResource(
        local=LocalServingResource(**env_vars(ENV)),
        modal=modal_resource_from_env(),
        external=ExternalServingResource(),
    )
