"""How `definitions.py` builds resources from the environment: an `EnvVar` (resolved by Dagster
when a run starts, and shown by name in the UI) for every setting the environment sets now, the
resource's own default for the rest. Which variables exist is `GoatSettings`'."""

from __future__ import annotations

from typing import Any

from dagster import EnvVar

from goat_dagster.config import GoatSettings, settings


def env_vars(fields: dict[str, str]) -> dict[str, Any]:
    """`{resource field: EnvVar}` for each `{resource field: GoatSettings field}` set in the environment."""
    now = settings()
    out: dict[str, Any] = {}
    for resource_field, setting in fields.items():
        if setting not in now.model_fields_set:
            continue
        name = GoatSettings.env_name(setting)
        out[resource_field] = EnvVar.int(name) if type(getattr(now, setting)) is int else EnvVar(name)
    return out
