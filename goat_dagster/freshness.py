"""Which assets of a selection need materializing: Dagster's own stale status (the "Materialize
unsynced" of the UI) — missing, or upstream data version / code version changed.

Dagster exposes this to sensors (`RunRequest(stale_assets_only=True)`) and the UI, but not to a
plain in-process `materialize()`, so this module asks the same resolver the UI uses. It is the one
place goat touches that part of Dagster's internals; `stale_or_missing` falls back to "everything"
if they move (the graph tests would show it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from dagster import AssetKey, DagsterInstance

log = logging.getLogger(__name__)


def stale_or_missing(
    instance: DagsterInstance, asset_graph: object, keys: Sequence[AssetKey], partition_key: str | None
) -> list[AssetKey]:
    try:
        from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
        from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
        from dagster._time import get_current_datetime

        view = AssetGraphView(
            temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
            instance=instance,
            asset_graph=asset_graph,  # type: ignore[arg-type]
        )
        resolver = CachingStaleStatusResolver(instance, asset_graph, loading_context=view)  # type: ignore[arg-type]
        out = []
        for key in keys:
            pk = partition_key if asset_graph.get(key).is_partitioned else None  # type: ignore[attr-defined]
            if resolver.get_status(key, pk) != StaleStatus.FRESH:
                out.append(key)
        return out
    except Exception as exc:  # Dagster moved its internals: materialize everything, say why
        log.warning(f"cannot tell fresh assets apart ({type(exc).__name__}: {exc}); materializing all")
        return list(keys)
