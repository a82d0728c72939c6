"""`model_registry_sensor`: keeps the `models` partitions in step with models.yaml and benchmarks
new or changed models.

Cursor: JSON with the sha256 of the file and a content hash per model, so an unchanged file is a
cheap no-op and a changed entry is told apart from an untouched one. On a change it adds/removes
partitions and, for every new or changed *enabled* model, requests registry -> weights ->
endpoint -> proxy config -> benchmark -> traces -> leaderboard in one run of that partition
(`model_registry` first in each, so no step reads the registry before its new version is
recorded); with no such model, `model_registry` runs alone. An invalid file is a SkipReason that
names file, line, entry and field; no partition is added or removed and nothing runs then.
"""

import json
from dataclasses import dataclass, field

from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DefaultSensorStatus,
    DeleteDynamicPartitionsRequest,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from goat_dagster import config
from goat_dagster.partitions import MODELS_PARTITIONS_NAME
from goat_dagster.registry import Registry, RegistryError, file_hash, load_registry
from goat_dagster.run_queue import backend_tags, priority_tags

# what a new or changed model needs, in lineage order (one run per partition)
MODEL_CHAIN = [
    AssetKey("model_registry"),
    AssetKey("model_weights"),
    AssetKey("serving_endpoint"),
    AssetKey("litellm_config"),
    AssetKey("benchmark_suite"),
    AssetKey("benchmark_results"),
    AssetKey("trace_export"),
    AssetKey("leaderboard"),
]


@dataclass
class PartitionDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def requests(self) -> list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest]:
        out: list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest] = []
        if self.added:
            out.append(AddDynamicPartitionsRequest(MODELS_PARTITIONS_NAME, self.added))
        if self.removed:
            out.append(DeleteDynamicPartitionsRequest(MODELS_PARTITIONS_NAME, self.removed))
        return out


def model_hashes(registry: Registry) -> dict[str, str]:
    return {m.slug: m.content_hash() for m in registry.models.values()}


def diff_partitions(
    instance: DagsterInstance, registry: Registry, previous_hashes: dict[str, str] | None = None
) -> PartitionDiff:
    existing = set(instance.get_dynamic_partitions(MODELS_PARTITIONS_NAME))
    hashes = model_hashes(registry)
    wanted = set(hashes)
    prev = previous_hashes or {}
    return PartitionDiff(
        added=sorted(wanted - existing),
        removed=sorted(existing - wanted),
        changed=sorted(k for k in wanted & existing if k in prev and prev[k] != hashes[k]),
    )


def sync_model_partitions(instance: DagsterInstance, registry: Registry) -> PartitionDiff:
    """Apply models.yaml to the instance directly (what `goat demo` does before materializing)."""
    diff = diff_partitions(instance, registry)
    if diff.added:
        instance.add_dynamic_partitions(MODELS_PARTITIONS_NAME, diff.added)
    for key in diff.removed:
        instance.delete_dynamic_partition(MODELS_PARTITIONS_NAME, key)
    return diff


def _read_cursor(cursor: str | None) -> dict:
    if not cursor:
        return {}
    try:
        data = json.loads(cursor)
        return data if isinstance(data, dict) else {}
    except json.JSONDecodeError:
        return {}


def model_run_requests(registry: Registry, slugs: list[str], reason: str, change: int) -> list[RunRequest]:
    """One run per enabled model among `slugs`: its whole chain. The run key carries the change
    number, so a file changed back to an earlier content (A -> B -> A) runs again."""
    out = []
    for slug in slugs:
        entry = registry.by_slug[slug]
        if not entry.enabled:
            continue
        out.append(
            RunRequest(
                run_key=f"registry:{change}:{slug}:{entry.content_hash()[:16]}",
                partition_key=slug,
                asset_selection=MODEL_CHAIN,
                tags={**backend_tags(entry), **priority_tags("model_change"), "goat/reason": reason},
            )
        )
    return out


@sensor(
    name="model_registry_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    target=AssetSelection.assets(*MODEL_CHAIN),
    description="Adds/removes `models` partitions when models.yaml changes and benchmarks new or "
    "changed enabled models.",
)
def model_registry_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    path = config.models_file()
    try:
        digest = file_hash(path)
    except FileNotFoundError:
        return SkipReason(f"{path}: file not found; no partition changed")
    state = _read_cursor(context.cursor)
    if state.get("file_sha256") == digest:
        return SkipReason(f"{path.name} unchanged ({digest[:12]})")
    try:
        registry = load_registry(path)
    except RegistryError as exc:
        return SkipReason(f"{exc}\nNo partition was added or removed.")

    diff = diff_partitions(context.instance, registry, state.get("models"))
    context.log.info(
        f"{path.name}: +{diff.added or '[]'} -{diff.removed or '[]'} changed {diff.changed or '[]'}"
    )
    change = int(state.get("changes", 0)) + 1
    cursor = json.dumps(
        {"file_sha256": digest, "models": model_hashes(registry), "changes": change}, sort_keys=True
    )
    runs = []
    if state:  # the first look at the file is a baseline, not a change: no benchmarks for it
        runs += model_run_requests(registry, diff.added, "new model in models.yaml", change)
        runs += model_run_requests(registry, diff.changed, "model changed in models.yaml", change)
    if not runs:  # each model's run has model_registry first; without one, it runs alone
        runs = [
            RunRequest(
                run_key=f"registry:{change}:{registry.content_hash[:16]}",
                asset_selection=[MODEL_CHAIN[0]],
                tags=priority_tags("model_change"),
            )
        ]
    return SensorResult(dynamic_partitions_requests=diff.requests(), run_requests=runs, cursor=cursor)
