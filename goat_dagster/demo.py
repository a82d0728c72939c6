"""`goat demo`: the main job on the embedded default.

Starts what the embedded default needs (the PostgreSQL-backed instance), loads the code location,
syncs the `models` partitions from models.yaml, materializes `model_registry` through the real
instance (the run shows in the UI afterwards) and prints the registry.
"""

from __future__ import annotations

from typing import Any

import click


def run_demo(echo: bool = True) -> dict[str, Any]:
    from dagster import materialize

    from goat_dagster.assets.registry import model_registry
    from goat_dagster.cli import format_table
    from goat_dagster.instance import describe, ensure_instance
    from goat_dagster.registry import load_registry
    from goat_dagster.sensors.registry import sync_model_partitions

    def say(msg: str) -> None:
        if echo:
            click.echo(msg)

    instance = ensure_instance()
    where = describe()
    say(f"instance: {where['dagster_home']} (PostgreSQL {where['postgres']}, embedded={where['embedded']})")

    from goat_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    say(f"code location: goat_dagster.definitions ({len(graph.get_all_asset_keys())} assets)")

    registry = load_registry()
    diff = sync_model_partitions(instance, registry)
    say(
        f"partitions 'models': +{len(diff.added)} -{len(diff.removed)} "
        f"({len(registry.partition_keys())} in models.yaml)"
    )

    result = materialize(
        [model_registry],
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    if not result.success:
        raise click.ClickException("materializing model_registry failed; see the run in `make ui`")
    say(f"materialized model_registry in run {result.run_id}\n")
    rows = registry.table()
    say(format_table(rows, ["key", "provider", "engine", "gateway_name", "gpu", "enabled"]))
    return {
        "instance": where,
        "partitions": registry.partition_keys(),
        "added": diff.added,
        "removed": diff.removed,
        "run_id": result.run_id,
        "models": rows,
    }
