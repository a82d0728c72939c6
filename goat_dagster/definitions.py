"""The one `Definitions` object of goat-dagster, assembled from assets/, resources/ and sensors/."""

from __future__ import annotations

from dagster import Definitions

from goat_dagster import config
from goat_dagster.assets.endpoints import serving_endpoint, serving_endpoint_answers
from goat_dagster.assets.registry import model_registry
from goat_dagster.assets.weights import model_weights
from goat_dagster.resources.serving import LocalServingResource
from goat_dagster.sensors.registry import model_registry_sensor

config.export_environment()

defs = Definitions(
    assets=[model_registry, model_weights, serving_endpoint],
    asset_checks=[serving_endpoint_answers],
    sensors=[model_registry_sensor],
    resources={"local_serving": LocalServingResource()},
)
