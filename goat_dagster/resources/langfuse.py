"""`LangfuseResource`: reading traces back from Langfuse (when LANGFUSE_* is set)."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from goat_dagster.resources.env import env_vars
from goat_dagster.tracing.langfuse_reader import LangfuseSettings


class LangfuseResource(ConfigurableResource):
    public_key: str | None = Field(default=None, description="LANGFUSE_PUBLIC_KEY")
    secret_key: str | None = Field(default=None, description="LANGFUSE_SECRET_KEY")
    host: str | None = Field(default=None, description="LANGFUSE_HOST, e.g. https://cloud.langfuse.com")

    def settings(self) -> LangfuseSettings | None:
        """None when Langfuse is not configured: traces then come from the local sink."""
        if self.public_key and self.secret_key and self.host:
            return LangfuseSettings(self.public_key, self.secret_key, self.host)
        return None

    @property
    def configured(self) -> bool:
        return self.settings() is not None


def langfuse_resource_from_env() -> LangfuseResource:
    return LangfuseResource(
        **env_vars(
            {
                "public_key": "langfuse_public_key",
                "secret_key": "langfuse_secret_key",
                "host": "langfuse_host",
            }
        )
    )
