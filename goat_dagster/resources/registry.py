"""`RegistryResource`: models.yaml for the asset graph, loaded once per run (on first use) and handed
to every asset that needs a model's entry; nothing downstream reads the file itself."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from goat_dagster import config
from goat_dagster.registry import ModelEntry, Registry, load_registry


class RegistryResource(ConfigurableResource):
    """The model registry (a `RegistryError` naming file, line and field when it is invalid)."""

    path: str | None = Field(
        default=None, description="models.yaml; default GOAT_MODELS_FILE or the project's"
    )
    _loaded: Registry | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._loaded = None  # each run reads the file as it is when the run needs it

    @property
    def file(self) -> Path:
        return Path(self.path).expanduser().resolve() if self.path else config.models_file()

    def registry(self) -> Registry:
        if self._loaded is None:
            self._loaded = load_registry(self.file)
        return self._loaded

    def entry(self, key_or_partition: str) -> ModelEntry:
        return self.registry().get(key_or_partition)
