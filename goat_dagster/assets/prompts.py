"""`agent_prompts`: the builtin agent's prompt set (prompts/builtin/: system.md, task.md, tools.yaml)
as an external asset upstream of `benchmark_results`.

goat does not make the files, people edit them; so the asset is observed, not materialized: its data
version is the prompt set's content hash (`PromptSet.sha256`), recorded by `agent_prompts_sensor`
when the files change (and by `goat demo`). Every `benchmark_results` partition made with other
prompts then shows stale in the UI ("upstream data version changed"), and the sensor re-runs them.
"""

from __future__ import annotations

from dagster import (
    AssetKey,
    AssetObservation,
    AssetRecordsFilter,
    AssetSpec,
    DagsterInstance,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
)

from goat_dagster.assets.common import OWNERS
from goat_dagster.bench.prompts import PromptSet
from goat_dagster.freshness import DATA_VERSION_TAG

AGENT_PROMPTS = AssetKey("agent_prompts")

agent_prompts = AssetSpec(
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


def prompts_observation(prompts: PromptSet) -> AssetObservation:
    """An observation of `agent_prompts` at this content (its data version: the prompt set's hash)."""
    return AssetObservation(
        asset_key=AGENT_PROMPTS,
        tags={DATA_VERSION_TAG: prompts.sha256},
        metadata={
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
        },
    )


def observed_prompts_version(instance: DagsterInstance) -> str | None:
    """The data version `agent_prompts` was last observed at (None: never)."""
    records = instance.fetch_observations(AssetRecordsFilter(asset_key=AGENT_PROMPTS), limit=1).records
    observation = records[0].asset_observation if records else None
    return observation.tags.get(DATA_VERSION_TAG) if observation is not None and observation.tags else None
