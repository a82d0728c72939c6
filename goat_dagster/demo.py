"""`goat demo`: the main job on the embedded default.

1. the Dagster instance (embedded PostgreSQL unless DAGSTER_PG_URL) and the code location;
2. the `models` partitions synced from models.yaml;
3. the prompt set observed (`agent_prompts`), then for each enabled *local* model, one Dagster run
   of the whole graph for its partition —
   weights -> `goat serve` endpoint -> LiteLLM proxy config -> suite -> benchmark -> traces ->
   leaderboard — through the real instance (the runs show in `make ui` afterwards). Assets that are
   fresh (nothing upstream changed since their last materialization) are skipped, so a second
   `goat demo` reuses what is up and fresh;
4. the leaderboard, printed.

A condition that degrades a run without stopping it (Langfuse configured but unreachable: traces
exported from the local sink) or stops it (a step that fails) is printed as one line per problem
(`problem_lines`), with what to do, not as a stack trace; `--json` has them under `problems`.

The benchmark uses demo-sized limits (`DEMO_BENCHMARK`) so it finishes in minutes on a laptop CPU;
materialize `benchmark_results` from the UI (or `goat run`) for the full defaults.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click
from dagster import AssetCheckSeverity, AssetKey, DagsterInstance, ExecuteInProcessResult, materialize

from goat_dagster.analysis.leaderboard import build_leaderboard
from goat_dagster.analysis.leaderboard_render import render_leaderboard_text
from goat_dagster.assets.prompts import observed_prompts_version, prompts_observation
from goat_dagster.bench.prompts import load_prompt_set
from goat_dagster.bench.suite import load_suite
from goat_dagster.config import paths
from goat_dagster.definitions import defs
from goat_dagster.freshness import stale_or_missing
from goat_dagster.instance import describe, ensure_instance
from goat_dagster.registry import load_registry
from goat_dagster.routing import proxy
from goat_dagster.sensors.registry import sync_model_partitions
from goat_dagster.viewer.links import leaderboard_url

# small limits: a 135M-parameter model on 2 CPU cores (one task at a time, as for any local model:
# `ServingBackend.default_parallel`, so the steps of a task share llama.cpp's prompt cache)
DEMO_BENCHMARK: dict[str, Any] = {
    "max_steps": 8,
    "max_output_tokens": 256,
    "max_seconds": 180.0,
}


def changed_roots(instance: DagsterInstance, registry_version: str, suite_version: str) -> list[AssetKey]:
    """`model_registry` / `benchmark_suite` when their file's content differs from the data version
    of their last materialization (or they never were): only those are materialized again."""
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
    def say(msg: str) -> None:
        if echo:
            click.echo(msg)

    t0 = time.monotonic()
    instance = ensure_instance()
    # the proxy's imports (~6-9 s) beside the partitions, the weights and goat serve: the
    # `litellm_config` asset then starts the proxy on that interpreter (`routing.proxy.prewarm`)
    proxy.prewarm()
    try:
        return _run_demo(instance, say, t0, suite)
    finally:
        proxy.release_warm()


def _run_demo(instance: DagsterInstance, say: Callable[[str], None], t0: float, suite: str) -> dict[str, Any]:
    where = describe()
    say(f"instance: {where['dagster_home']} (PostgreSQL {where['postgres']}, embedded={where['embedded']})")
    runner = DemoRuns(instance, suite, say)
    say(f"code location: goat_dagster.definitions ({len(runner.all_keys)} assets)")

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
    # the files behind the root assets may have changed since they were last materialized
    roots = changed_roots(instance, registry.content_hash, load_suite(suite).version)
    if roots:
        runner.run(roots, None, "registry and suite")
    observe_prompts(instance, say)
    for entry in local:
        if not runner.bring_up_to_date(entry.slug, entry.key):
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
        "problems": runner.problems,
        "instance": where,
        "partitions": registry.partition_keys(),
        "added": diff.added,
        "removed": diff.removed,
        "runs": runner.runs,
        "leaderboard": board.to_json(),
        "models": [m.key for m in local],
        "viewer": leaderboard_url(),
    }


def observe_prompts(instance: DagsterInstance, say: Callable[[str], None]) -> None:
    """`agent_prompts` observed at the prompt set's content, when it was not (what the sensor does
    under `goat ui`): benchmarks made with other prompts are then out of date. A prompt file that
    does not validate stops the demo here, with its path and the problem."""
    prompts = load_prompt_set()
    if observed_prompts_version(instance) != prompts.sha256:
        instance.report_runless_asset_event(prompts_observation(prompts))
        say(f"prompt set {prompts.name}: version {prompts.sha256[:12]} observed")


class DemoRuns:
    """The demo's runs: in-process materializations of the code location's assets on the instance."""

    def __init__(self, instance: DagsterInstance, suite: str, say: Callable[[str], None]) -> None:
        self.instance, self.say = instance, say
        self.assets = list(defs.assets or [])
        graph = defs.resolve_asset_graph()
        self.all_keys = sorted(graph.materializable_asset_keys)
        self.partitioned = {k for k in self.all_keys if graph.get(k).partitions_def is not None}
        self.op_config = {
            "benchmark_suite": {"config": {"suite": suite}},
            "benchmark_results": {"config": {"suite": suite, **DEMO_BENCHMARK}},
        }
        self.runs: list[dict[str, Any]] = []
        self.problems: list[str] = []

    def bring_up_to_date(self, partition: str, label: str) -> bool:
        """Materialize what is missing or out of date for one model; whether anything ran. In
        rounds: an asset whose data version changes makes its children out of date only then, and
        content hashes stop the wave where nothing really changed (a registry edit elsewhere
        re-checks weights and the proxy config, not the benchmark)."""
        ran = False
        for _ in range(len(self.all_keys)):
            wanted = stale_or_missing(self.instance, self.assets, self.all_keys, partition)
            if not wanted:
                break
            if AssetKey("benchmark_results") in wanted:  # a benchmark needs its servers up
                wanted = sorted({*wanted, AssetKey("serving_endpoint"), AssetKey("litellm_config")})
            self.run(wanted, partition, label)
            ran = True
        return ran

    def run(self, wanted: list[AssetKey], partition: str | None, label: str) -> None:
        self.say(f"{label}: materializing {', '.join(k.to_user_string() for k in wanted)}")
        result = materialize(
            self.assets,
            selection=wanted,
            # a run of only unpartitioned assets (say, just the leaderboard) takes no partition key
            partition_key=partition if self.partitioned.intersection(wanted) else None,
            instance=self.instance,
            resources=defs.resources,
            run_config={
                "ops": {k: v for k, v in self.op_config.items() if AssetKey(k) in wanted},
                "loggers": {"console": {"config": {"log_level": "INFO"}}},
            },
            tags={"goat/reason": "goat demo"},
            raise_on_error=False,
        )
        self.runs.append({"for": label, "run_id": result.run_id, "success": result.success})
        for line in problem_lines(result, label):
            self.problems.append(line)
            self.say(click.style(line, fg="yellow"))
        if not result.success:
            raise click.ClickException(
                f"the demo run for {label} failed (run {result.run_id}): the lines above say why; "
                "its logs are in the UI"
            )


def problem_lines(result: ExecuteInProcessResult, label: str) -> list[str]:
    """One line per problem of a run, each saying what happened: a step that failed (its error's
    message, not its stack) and a check that did not pass (its description: a degraded path such as
    Langfuse unreachable and traces taken from the sink, or a check failing outright)."""
    out = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error if event.step_failure_data else None
        message = (error.message if error else None) or "failed"
        out.append(f"problem: {label}: step {event.step_key} failed: {' '.join(message.split())}")
    for check in result.get_asset_check_evaluations():
        if not check.passed:
            kind = "warning" if check.severity == AssetCheckSeverity.WARN else "problem"
            what = " ".join((check.description or "did not pass").split())
            out.append(f"{kind}: {label}: {check.asset_key.to_user_string()} {check.check_name}: {what}")
    return out
