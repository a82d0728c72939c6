"""The one `Definitions` object of goat-dagster, assembled from assets/, resources/ and sensors/."""

from __future__ import annotations

from dagster import Definitions

from goat_dagster import config
from goat_dagster.assets.leaderboard import leaderboard
from goat_dagster.assets.registry import model_registry
from goat_dagster.assets.routing import litellm_config
from goat_dagster.assets.traces import trace_export
from goat_dagster.resources.langfuse import langfuse_resource_from_env
from goat_dagster.resources.litellm import litellm_resource_from_env
from goat_dagster.resources.modal import modal_resource_from_env
from goat_dagster.sensors.registry import model_registry_sensor

config.export_environment()

defs = Definitions(
    assets=[model_registry, litellm_config, trace_export, leaderboard],
    sensors=[model_registry_sensor],
    resources={
        "modal": modal_resource_from_env(),
        "litellm": litellm_resource_from_env(),
        "langfuse": langfuse_resource_from_env(),
    },
)
