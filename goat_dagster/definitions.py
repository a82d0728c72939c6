"""The one `Definitions` object of goat-dagster, assembled from assets/, resources/ and sensors/."""

from __future__ import annotations

import atexit
import gc

from dagster import Definitions, in_process_executor

from goat_dagster import config
from goat_dagster.assets.benchmarks import benchmark_results, benchmark_suite
from goat_dagster.assets.checks import no_significant_regression
from goat_dagster.assets.endpoints import serving_endpoint, serving_endpoint_answers
from goat_dagster.assets.leaderboard import leaderboard, spend_within_budget
from goat_dagster.assets.registry import model_registry
from goat_dagster.assets.routing import litellm_config
from goat_dagster.assets.traces import trace_export
from goat_dagster.assets.weights import model_weights
from goat_dagster.resources.langfuse import langfuse_resource_from_env
from goat_dagster.resources.litellm import litellm_resource_from_env
from goat_dagster.resources.registry import RegistryResource
from goat_dagster.resources.sandbox import sandbox_resource_from_env
from goat_dagster.resources.serving import serving_resource_from_env
from goat_dagster.sensors.registry import model_registry_sensor
from goat_dagster.sensors.suite import benchmark_suite_sensor

config.export_environment()
# A process that loaded the code location (a run worker, `dagster asset materialize`, the CLI) spends
# ~1 s at exit in the interpreter's last garbage collections over the objects Dagster, pydantic and
# the rest leave behind; the OS frees that memory anyway. Frozen objects are left out of those passes
# (atexit handlers, pgserver's stop among them, still run; plain reference counting still frees).
atexit.register(gc.freeze)

defs = Definitions(
    # Every step of a run in the run's own process: a step subprocess loads the code location again
    # (~3-5 s per step, more than HumanEval's 164 oracle tasks take). A run of one partition is one
    # step; a sensor's chain for one model is a line of steps that waits on each other anyway.
    executor=in_process_executor,
    assets=[
        model_registry,
        model_weights,
        serving_endpoint,
        litellm_config,
        benchmark_suite,
        benchmark_results,
        trace_export,
        leaderboard,
    ],
    asset_checks=[serving_endpoint_answers, no_significant_regression, spend_within_budget],
    sensors=[model_registry_sensor, benchmark_suite_sensor],
    resources={
        "registry": RegistryResource(),
        "serving": serving_resource_from_env(),
        "litellm": litellm_resource_from_env(),
        "langfuse": langfuse_resource_from_env(),
        "sandbox": sandbox_resource_from_env(),
    },
)
