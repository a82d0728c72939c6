"""`ModalResource`: Modal for the asset graph (environment, credentials): the Modal serving backend
and the proxy on Modal.

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
from goat_dagster.resources.env import env_vars
from goat_dagster.routing.modal_proxy import ensure_modal_proxy
from goat_dagster.serving.backend import Log
from goat_dagster.serving.modal.backend import ModalBackend
from goat_dagster.serving.modal.cloud import ModalCloud


class ModalResource(ConfigurableResource):
    """The Modal environment goat deploys into."""

    environment: str = Field(
        default=GoatSettings.model_fields["modal_environment"].default,
        description="Modal environment (goat setup creates it)",
    )
    token_id: str | None = Field(default=None, description="Modal token id; default: ~/.modal.toml")
    token_secret: str | None = Field(default=None, description="Modal token secret; default: ~/.modal.toml")

    def cloud(self) -> ModalCloud:
        """The edge to Modal's API (every call to Modal goes through it)."""
        return ModalCloud(self.environment, token_id=self.token_id, token_secret=self.token_secret)

    def backend(self) -> ModalBackend:
        return ModalBackend(self.cloud())

    def ensure_services(self, litellm_config: dict[str, Any] | Path | None, log: Log) -> str:
        """The LiteLLM proxy app goat-services; its URL (for the proxy resource's external mode)."""
        return ensure_modal_proxy(litellm_config, self.cloud(), log)


def modal_resource_from_env() -> ModalResource:
    """EnvVar for every setting present in the environment, so a machine without Modal still loads
    the code location (Modal's own config fills the gaps)."""
    kwargs: dict[str, Any] = env_vars({"environment": "modal_environment"})
    for field, var in (("token_id", "MODAL_TOKEN_ID"), ("token_secret", "MODAL_TOKEN_SECRET")):
        if os.environ.get(var):  # Modal's own variables, read as Modal reads them
            kwargs[field] = EnvVar(var)
    return ModalResource(**kwargs)
