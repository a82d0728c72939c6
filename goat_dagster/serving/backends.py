"""The one place that picks the serving backend of a model.

The registry decides which kind of backend serves a provider (`ModelEntry.backend`: local, modal,
cloud); `Backends` holds one configured backend of each kind and hands out the model's. The Dagster
resources build it from their config (`resources/serving.py`); `goat run`, `goat demo` and
`goat doctor` from the environment (`Backends.from_settings`).
"""

from __future__ import annotations

from dataclasses import dataclass

from goat_dagster.registry import ModelEntry
from goat_dagster.serving.backend import ServingBackend
from goat_dagster.serving.external import ExternalBackend
from goat_dagster.serving.local.backend import LocalBackend
from goat_dagster.serving.local.settings import ServeSettings
from goat_dagster.serving.modal.backend import ModalBackend
from goat_dagster.serving.modal.cloud import ModalCloud


@dataclass(frozen=True)
class Backends:
    local: LocalBackend
    modal: ModalBackend
    external: ExternalBackend

    def for_entry(self, entry: ModelEntry) -> ServingBackend:
        backends: dict[str, ServingBackend] = {
            "local": self.local,
            "modal": self.modal,
            "cloud": self.external,
        }
        return backends[entry.backend]

    @classmethod
    def from_settings(cls) -> Backends:
        """The backends as the environment configures them (GOAT_SERVE_*, GOAT_MODAL_*)."""
        return cls(LocalBackend(ServeSettings.from_env()), ModalBackend(ModalCloud()), ExternalBackend())
