"""`LangfuseResource`: reading traces back from Langfuse (when LANGFUSE_* is set)."""

from __future__ import annotations

import os
from typing import Any

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

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
    kwargs: dict[str, Any] = {}
    for field_name, env in (
        ("public_key", "LANGFUSE_PUBLIC_KEY"),
        ("secret_key", "LANGFUSE_SECRET_KEY"),
        ("host", "LANGFUSE_HOST"),
    ):
        if os.environ.get(env):
            kwargs[field_name] = EnvVar(env)
    return LangfuseResource(**kwargs)
