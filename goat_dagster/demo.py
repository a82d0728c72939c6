"""`goat demo`: the main job on the embedded default.

1. the Dagster instance (embedded PostgreSQL unless DAGSTER_PG_URL) and the code location;
2. the `models` partitions synced from models.yaml;
3. for each enabled *local* model, one Dagster run of the whole graph for its partition —
   weights -> `goat serve` endpoint -> LiteLLM proxy config -> suite -> benchmark -> traces ->
   leaderboard — through the real instance (the runs show in `make ui` afterwards). Assets that are
   fresh (nothing upstream changed since their last materialization) are skipped, so a second
   `goat demo` reuses what is up and fresh;
4. the leaderboard, printed.

The benchmark uses demo-sized limits (`DEMO_BENCHMARK`) so it finishes in minutes on a laptop CPU;
materialize `benchmark_results` from the UI (or `goat run`) for the full defaults.
"""

from __future__ import annotations

import time
from typing import Any

import click

# small limits: a 135M-parameter model on 2 CPU cores; one task at a time shares llama.cpp's
# prompt cache between the steps of a task instead of thrashing it
DEMO_BENCHMARK: dict[str, Any] = {
    "parallel": 1,
    "max_steps": 8,
    "max_output_tokens": 256,
    "max_seconds": 180.0,
}


def changed_roots(instance: Any, registry_version: str, suite_version: str) -> list[Any]:
    """`model_registry` / `benchmark_suite` when their file's content differs from the data version
    of their last materialization (or they never were): only those are materialized again."""
    from dagster import AssetKey

    out = []
    for key, version in (
        (AssetKey("model_registry"), registry_version),
        (AssetKey("benchmark_suite"), suite_version),
    ):
        event = instance.get_latest_materialization_event(key)
        recorded = event.asset_materialization.tags.get("dagster/data_version") if event else None
        if recorded != version:
            out.append(key)
    return out


def run_demo(echo: bool = True, suite: str = "smoke") -> dict[str, Any]:
    from dagster import AssetKey, materialize

    from goat_dagster.analysis.leaderboard import build_leaderboard, render_leaderboard_text
    from goat_dagster.bench.suite import load_suite
    from goat_dagster.config import paths
    from goat_dagster.freshness import stale_or_missing
    from goat_dagster.instance import describe, ensure_instance
    from goat_dagster.registry import load_registry
    from goat_dagster.sensors.registry import sync_model_partitions
    from goat_dagster.viewer.links import leaderboard_url

    def say(msg: str) -> None:
        if echo:
            click.echo(msg)

    t0 = time.monotonic()
    instance = ensure_instance()
    where = describe()
    say(f"instance: {where['dagster_home']} (PostgreSQL {where['postgres']}, embedded={where['embedded']})")

    from goat_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    assets = list(defs.assets or [])
    say(f"code location: goat_dagster.definitions ({len(graph.materializable_asset_keys)} assets)")

    registry = load_registry()
    diff = sync_model_partitions(instance, registry)
    say(
        f"partitions 'models': +{len(diff.added)} -{len(diff.removed)} "
        f"({len(registry.partition_keys())} in {registry.source})"
    )
    local = [m for m in registry.enabled() if m.provider == "local"]
    if not local:
        raise click.ClickException(
            f"no enabled local model in {registry.source}: enable one (e.g. smollm2-135m)"
        )

    op_config = {
        "benchmark_suite": {"config": {"suite": suite}},
        "benchmark_results": {"config": {"suite": suite, **DEMO_BENCHMARK}},
    }
    runs: list[dict[str, Any]] = []

    def run(wanted: list[AssetKey], partition: str | None, label: str) -> None:
        say(f"{label}: materializing {', '.join(k.to_user_string() for k in wanted)}")
        result = materialize(
            assets,
            selection=wanted,
            # a run of only unpartitioned assets (say, just the leaderboard) takes no partition key
            partition_key=partition if any(graph.get(k).is_partitioned for k in wanted) else None,
            instance=instance,
            resources=defs.resources,
            run_config={
                "ops": {k: v for k, v in op_config.items() if AssetKey(k) in wanted},
                "loggers": {"console": {"config": {"log_level": "INFO"}}},
            },
            tags={"goat/reason": "goat demo"},
            raise_on_error=False,
        )
        runs.append({"for": label, "run_id": result.run_id, "success": result.success})
        if not result.success:
            raise click.ClickException(
                f"the demo run for {label} failed (run {result.run_id}); its logs are above and in the UI"
            )

    # the files behind the root assets may have changed since they were last materialized
    roots = changed_roots(instance, registry.content_hash, load_suite(suite).version)
    if roots:
        run(roots, None, "registry and suite")
    all_keys = sorted(graph.materializable_asset_keys)
    for entry in local:
        # rounds: an asset whose data version changes makes its children stale only then; content
        # hashes stop the wave where nothing really changed (a registry edit elsewhere re-checks
        # weights and the proxy config, not the benchmark)
        for _ in range(len(all_keys)):
            wanted = stale_or_missing(instance, graph, all_keys, entry.slug)
            if not wanted:
                break
            if AssetKey("benchmark_results") in wanted:  # a benchmark needs its servers up
                wanted = sorted({*wanted, AssetKey("serving_endpoint"), AssetKey("litellm_config")})
            run(wanted, entry.slug, entry.key)
        if not any(r["for"] == entry.key for r in runs):
            say(f"{entry.key}: every asset is fresh; nothing to run")

    board = build_leaderboard()
    say("")
    say(render_leaderboard_text(board))
    say(f"\ndone in {time.monotonic() - t0:.0f}s; `make ui` shows these runs; results in {paths().lake}")
    say(
        "goat serve and the LiteLLM proxy stay up in the background for the next run (`goat stop` stops them)"
    )
    say(f"leaderboard in the viewer (`goat view`): {leaderboard_url()}")
    return {
        "instance": where,
        "partitions": registry.partition_keys(),
        "added": diff.added,
        "removed": diff.removed,
        "runs": runs,
        "leaderboard": board.to_json(),
        "models": [m.key for m in local],
        "viewer": leaderboard_url(),
    }
