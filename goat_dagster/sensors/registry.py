"""`model_registry_sensor`: keeps the `models` partitions in step with models.yaml.

Cursor: JSON with the sha256 of the file and a content hash per model, so an unchanged file is a
cheap no-op and a changed entry is told apart from an untouched one. An invalid file is a
SkipReason that names file, line, entry and field; no partition is added or removed then.
"""

import json
from dataclasses import dataclass, field

from dagster import (
    AddDynamicPartitionsRequest,
    DagsterInstance,
    DefaultSensorStatus,
    DeleteDynamicPartitionsRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from goat_dagster import config
from goat_dagster.partitions import MODELS_PARTITIONS_NAME
from goat_dagster.registry import Registry, RegistryError, file_hash, load_registry


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


def sync_model_partitions(instance: DagsterInstance, registry: Registry | None = None) -> PartitionDiff:
    """Apply models.yaml to the instance directly (what `goat demo` does before materializing)."""
    registry = registry or load_registry()
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


@sensor(
    name="model_registry_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds/removes `models` partitions when models.yaml changes.",
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
    cursor = json.dumps({"file_sha256": digest, "models": model_hashes(registry)}, sort_keys=True)
    return SensorResult(dynamic_partitions_requests=diff.requests(), cursor=cursor)
