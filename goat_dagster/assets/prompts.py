"""`agent_prompts`: the builtin agent's prompt set (prompts/builtin/: system.md, task.md, tools.yaml)
as an external asset upstream of `benchmark_results`.

goat does not make the files, people edit them; so the asset is observed, not materialized: an
observable source asset whose data version is the prompt set's content hash (`PromptSet.sha256`),
recorded by `agent_prompts_sensor` when the files change (and by `goat demo`, or "Observe" in the
UI). Dagster reads the current version of an external asset from its observations only when the
asset is observable (a plain `AssetSpec` stays at "INITIAL" whatever was observed, so every run
showed stale against it). Every `benchmark_results` partition made with other prompts then shows
stale in the UI ("agent_prompts: has a new data version"), and the sensor re-runs them.
"""

import warnings
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetRecordsFilter,
    AssetSpec,
    BetaWarning,
    DagsterInstance,
    DataVersion,
    Failure,
    MetadataValue,
    ObserveResult,
    TableColumn,
    TableRecord,
    TableSchema,
    multi_observable_source_asset,
)

from goat_dagster import config
from goat_dagster.assets.common import OWNERS
from goat_dagster.bench.prompts import PromptError, PromptSet, load_prompt_set
from goat_dagster.freshness import DATA_VERSION_TAG

AGENT_PROMPTS = AssetKey("agent_prompts")

AGENT_PROMPTS_SPEC = AssetSpec(
    key=AGENT_PROMPTS,
    group_name="benchmark",
    kinds={"markdown", "yaml"},
    owners=OWNERS,
    description=(
        "The builtin agent's prompt set ($GOAT_PROMPTS, prompts/builtin/): system prompt, first user "
        "message, tool descriptions. Observed by agent_prompts_sensor; data version = the content hash "
        "of what the model is shown. A change re-runs every enabled model's benchmark."
    ),
)


def _observe(context: AssetExecutionContext) -> ObserveResult:
    """Observe the prompt set ("Observe" in the UI); broken files fail the observation, naming them."""
    try:
        prompts = load_prompt_set(config.settings().prompts)
    except PromptError as exc:
        raise Failure(description=f"{exc}\nagent_prompts keeps its last version.") from None
    context.log.info(f"prompt set {prompts.name}: {prompts.sha256[:12]}")
    return ObserveResult(
        asset_key=AGENT_PROMPTS, data_version=DataVersion(prompts.sha256), metadata=_metadata(prompts)
    )


with warnings.catch_warnings():  # observable source assets are "beta" in Dagster 1.13; we need one
    warnings.simplefilter("ignore", BetaWarning)
    agent_prompts = multi_observable_source_asset(specs=[AGENT_PROMPTS_SPEC], name="agent_prompts")(_observe)


def prompts_observation(prompts: PromptSet) -> AssetObservation:
    """An observation of `agent_prompts` at this content (its data version: the prompt set's hash)."""
    return AssetObservation(
        asset_key=AGENT_PROMPTS, tags={DATA_VERSION_TAG: prompts.sha256}, metadata=_metadata(prompts)
    )


def _metadata(prompts: PromptSet) -> dict[str, Any]:
    return {
        "prompt_set": prompts.name,
        "path": MetadataValue.path(str(prompts.path)),
        "sha256": prompts.sha256,
        "system.md": MetadataValue.md(f"```\n{prompts.system}\n```"),
        "task.md": MetadataValue.md(f"```\n{prompts.task}\n```"),
        "tools": MetadataValue.table(
            records=[TableRecord(r) for r in prompts.table()],
            schema=TableSchema(
                columns=[TableColumn(c, "string") for c in ("tool", "arguments", "description")]
            ),
        ),
    }


def observed_prompts_version(instance: DagsterInstance) -> str | None:
    """The data version `agent_prompts` was last observed at (None: never)."""
    records = instance.fetch_observations(AssetRecordsFilter(asset_key=AGENT_PROMPTS), limit=1).records
    observation = records[0].asset_observation if records else None
    return observation.tags.get(DATA_VERSION_TAG) if observation is not None and observation.tags else None
