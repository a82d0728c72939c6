"""`agent_prompts_sensor`: re-runs benchmarks when the builtin agent's prompt set changes.

Cursor: the prompt set's content hash (`PromptSet.sha256`: what the model is shown; comments and
layout of tools.yaml do not count) and a change counter. A change:

- records an observation of `agent_prompts` at the new hash, in the same tick and ahead of the runs
  (the daemon reports a tick's asset events before it submits its run requests): every
  `benchmark_results` partition made with the old prompts shows stale in the UI at once, and no run
  this change requests can record the old version as its input;
- requests, for every enabled model with a partition, one run of endpoint -> proxy config ->
  benchmark -> traces -> leaderboard, tagged with its serving backend for the run queue. Run key =
  change number + hash + model: each change runs each model once, and prompts changed back to an
  earlier content run again.

Files that do not validate: a SkipReason naming the file and the problem; nothing is observed,
requested or moved (the cursor stays). The first look is a baseline: `agent_prompts` is observed
at the current hash when it was not already, and no benchmark runs.
"""

from __future__ import annotations

import json

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from goat_dagster.assets.benchmarks import DEFAULT_PROMPTS
from goat_dagster.assets.prompts import observed_prompts_version, prompts_observation
from goat_dagster.bench.prompts import PromptError, load_prompt_set
from goat_dagster.partitions import MODELS_PARTITIONS_NAME
from goat_dagster.registry import RegistryError, load_registry
from goat_dagster.run_queue import backend_tags

PROMPTS_CHAIN = [
    AssetKey("serving_endpoint"),
    AssetKey("litellm_config"),
    AssetKey("benchmark_results"),
    AssetKey("trace_export"),
    AssetKey("leaderboard"),
]


@sensor(
    name="agent_prompts_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    target=AssetSelection.assets(*PROMPTS_CHAIN),
    description=f"Benchmarks every enabled model again when the builtin agent's prompt set "
    f"({DEFAULT_PROMPTS}) changes.",
)
def agent_prompts_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    try:
        prompts = load_prompt_set(DEFAULT_PROMPTS)
    except PromptError as exc:
        return SkipReason(f"{exc}\nNo benchmark was requested; agent_prompts keeps its last version.")
    digest = prompts.sha256
    state = json.loads(context.cursor) if context.cursor else {}
    if state.get("hash") == digest:
        return SkipReason(f"prompt set {prompts.name} unchanged ({digest[:12]})")
    change = int(state.get("changes", 0)) + 1
    cursor = json.dumps({"prompts": prompts.name, "hash": digest, "changes": change})
    observed = observed_prompts_version(context.instance) == digest
    events = [] if observed else [prompts_observation(prompts)]
    if not state:  # the first look: a baseline
        return SensorResult(run_requests=[], cursor=cursor, asset_events=events)
    try:
        registry = load_registry()
    except RegistryError as exc:
        return SkipReason(f"prompt set {prompts.name} changed, but models.yaml is invalid:\n{exc}")
    partitions = set(context.instance.get_dynamic_partitions(MODELS_PARTITIONS_NAME))
    runs = [
        RunRequest(
            run_key=f"prompts:{change}:{digest[:16]}:{entry.slug}",
            partition_key=entry.slug,
            asset_selection=PROMPTS_CHAIN,
            tags={**backend_tags(entry), "goat/reason": f"prompt set {prompts.name} changed ({digest[:12]})"},
        )
        for entry in registry.enabled()
        if entry.slug in partitions  # the registry sensor adds (and benchmarks) a new model first
    ]
    context.log.info(f"prompt set {prompts.name} changed ({digest[:12]}): {len(runs)} model runs requested")
    return SensorResult(run_requests=runs, cursor=cursor, asset_events=events)
