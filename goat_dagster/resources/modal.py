"""`ModalResource`: Modal for the asset graph (environment, credentials) and the calls assets make.

    @asset(...)
    def serving_endpoint(context, modal: ModalResource):
        ep = modal.ensure_endpoint(entry, context.log)

Credentials: `token_id` / `token_secret` (EnvVar MODAL_TOKEN_ID / MODAL_TOKEN_SECRET); when unset,
Modal's own configuration (~/.modal.toml from `modal setup`) is used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from goat_dagster.config import GoatSettings
from goat_dagster.registry import ModelEntry
from goat_dagster.resources.env import env_vars
from goat_dagster.serving.endpoint import Endpoint
from goat_dagster.serving.modal import deploy as modal_deploy


class ModalResource(ConfigurableResource):
    """The Modal environment goat deploys into, and the Modal operations assets use."""

    environment: str = Field(
        default=GoatSettings.model_fields["modal_environment"].default,
        description="Modal environment (goat setup creates it)",
    )
    token_id: str | None = Field(default=None, description="Modal token id; default: ~/.modal.toml")
    token_secret: str | None = Field(default=None, description="Modal token secret; default: ~/.modal.toml")

    def cloud(self) -> modal_deploy.ModalCloud:
        return modal_deploy.ModalCloud(
            self.environment, token_id=self.token_id, token_secret=self.token_secret
        )

    def ensure_weights(self, entry: ModelEntry, log: Any) -> dict[str, Any]:
        """Weights of a `provider: modal` model in Volume goat-model-cache; what is there."""
        return modal_deploy.ensure_modal_weights(entry, log, cloud=self.cloud())

    def ensure_endpoint(self, entry: ModelEntry, log: Any, redeploy: bool = False) -> Endpoint:
        """The model's goat-vllm-<key> app deployed and answering; the saved Endpoint."""
        return modal_deploy.ensure_modal_endpoint(entry, log, cloud=self.cloud(), redeploy=redeploy)

    def stop(self, entry: ModelEntry, log: Any) -> bool:
        """Stop (undeploy) the model's app: containers end, GPU billing stops."""
        return modal_deploy.stop_modal_endpoint(entry, log, cloud=self.cloud())

    def ensure_services(self, litellm_config: dict[str, Any] | str | Path | None, log: Any) -> str:
        """The LiteLLM proxy app goat-services; its URL (for the proxy resource's external mode)."""
        return modal_deploy.ensure_modal_services(litellm_config, log, cloud=self.cloud())


def modal_resource_from_env() -> ModalResource:
    """The resource for `Definitions`: EnvVar for every setting present in the environment, so a
    machine without Modal still loads the code location (Modal's own config fills the gaps)."""
    kwargs: dict[str, Any] = env_vars({"environment": "modal_environment"})
    for field, var in (("token_id", "MODAL_TOKEN_ID"), ("token_secret", "MODAL_TOKEN_SECRET")):
        if os.environ.get(var):  # Modal's own variables, read as Modal reads them
            kwargs[field] = EnvVar(var)
    return ModalResource(**kwargs)
