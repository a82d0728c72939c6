"""Which assets of a selection need materializing for a partition — the "Materialize unsynced" of the
UI, decided from Dagster's data versions and code versions through its public event-log API:

- missing: never materialized (for this partition);
- its code version is not the one it was materialized with;
- a dependency's data version is not the one it had when the asset was materialized (for a
  partitioned dependency of an unpartitioned asset: any of its partitions; for an external asset
  such as `agent_prompts`, observable: its observations).

A dependency materialized again with the same content keeps its data version, so nothing below it
is out of date: `goat demo` runs only what a change reached.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import AssetKey, AssetRecordsFilter, AssetsDefinition, AssetSpec, DagsterInstance, EventLogRecord

DATA_VERSION_TAG = "dagster/data_version"
CODE_VERSION_TAG = "dagster/code_version"


def stale_or_missing(
    instance: DagsterInstance,
    assets: Sequence[AssetsDefinition | AssetSpec],
    keys: Sequence[AssetKey],
    partition_key: str | None,
) -> list[AssetKey]:
    """The keys among `keys` (materializable ones) that are missing or out of date for
    `partition_key` (unpartitioned assets ignore it)."""
    by_key: dict[AssetKey, AssetsDefinition | AssetSpec] = {
        key: a for a in assets for key in ([a.key] if isinstance(a, AssetSpec) else a.keys)
    }
    out = []
    for key in keys:
        definition = by_key[key]
        assert isinstance(definition, AssetsDefinition), f"{key.to_user_string()} is not materializable"
        pk = partition_key if definition.partitions_def is not None else None
        latest = _latest(instance, key, pk)
        if latest is None or _tag(latest, CODE_VERSION_TAG) != definition.code_versions_by_key.get(key):
            out.append(key)
            continue
        deps = [dep for dep in definition.asset_deps[key] if dep in by_key]
        if any(_changed_since(instance, by_key[dep], dep, pk, latest.storage_id) for dep in deps):
            out.append(key)
    return out


def _latest(
    instance: DagsterInstance,
    key: AssetKey,
    partition: str | None,
    before: int | None = None,
    *,
    observed: bool = False,
) -> EventLogRecord | None:
    """The latest materialization (`observed`: observation) of a key, before a storage id."""
    partitions = [partition] if partition else None
    fetch = instance.fetch_observations if observed else instance.fetch_materializations
    records = fetch(
        AssetRecordsFilter(key, asset_partitions=partitions, before_storage_id=before), limit=1
    ).records
    return records[0] if records else None


def _tag(record: EventLogRecord | None, tag: str) -> str | None:
    event = (record.asset_materialization or record.asset_observation) if record is not None else None
    return event.tags.get(tag) if event is not None and event.tags else None


def _changed_since(
    instance: DagsterInstance,
    dep: AssetsDefinition | AssetSpec,
    key: AssetKey,
    partition: str | None,
    storage_id: int,
) -> bool:
    """Whether `key`'s data version now differs from what it was when `storage_id` was written."""
    if isinstance(dep, AssetSpec) or dep.is_external:  # agent_prompts: its versions are observations
        now, then = (
            _latest(instance, key, None, observed=True),
            _latest(instance, key, None, storage_id, observed=True),
        )
        return _tag(now, DATA_VERSION_TAG) != _tag(then, DATA_VERSION_TAG)
    if dep.partitions_def is None:
        partitions: Sequence[str | None] = [None]
    elif partition is not None:
        partitions = [partition]
    else:  # an unpartitioned asset built from every partition of its dependency
        partitions = dep.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    for p in partitions:
        now, then = _latest(instance, key, p), _latest(instance, key, p, before=storage_id)
        if _tag(now, DATA_VERSION_TAG) != _tag(then, DATA_VERSION_TAG):
            return True
    return False
