"""`benchmark_suite_sensor`: re-runs benchmarks when the configured suite changes.

Cursor: the hash of the suite's file (a built-in suite's content version) and a change counter.
A change requests, for every enabled model partition, one run of suite -> endpoint -> proxy
config -> benchmark -> traces -> leaderboard: `benchmark_suite` is in each model's run, so no
benchmark can record the suite before its new version is (with no enabled model, a run of
`benchmark_suite` alone). Run key = change number + suite
hash + model: each change runs each model once, and a suite changed back to an earlier content
runs again. A suite that does not validate is a SkipReason naming file, task and field; nothing
runs. The first look at a suite is a baseline, not a change.
"""

import hashlib
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

from goat_dagster.assets.benchmarks import DEFAULT_SUITE
from goat_dagster.bench.suite import SuiteError, load_suite, suite_path
from goat_dagster.partitions import MODELS_PARTITIONS_NAME
from goat_dagster.registry import RegistryError, load_registry
from goat_dagster.run_queue import backend_tags, priority_tags

BENCHMARK_CHAIN = [
    AssetKey("benchmark_suite"),
    AssetKey("serving_endpoint"),
    AssetKey("litellm_config"),
    AssetKey("benchmark_results"),
    AssetKey("trace_export"),
    AssetKey("leaderboard"),
]


def suite_fingerprint(name: str) -> str:
    """Hash of the suite file's bytes (the content version for built-in suites such as humaneval);
    raises SuiteError when the suite does not validate."""
    suite = load_suite(name)
    path = suite_path(name)
    if path is None:
        return suite.version
    return hashlib.sha256(path.read_bytes()).hexdigest()


@sensor(
    name="benchmark_suite_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    target=AssetSelection.assets(*BENCHMARK_CHAIN),
    description=f"Benchmarks every enabled model again when the suite ({DEFAULT_SUITE}) changes.",
)
def benchmark_suite_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    name = DEFAULT_SUITE
    try:
        digest = suite_fingerprint(name)
    except SuiteError as exc:
        return SkipReason(f"{exc}\nNo benchmark was requested.")
    state = json.loads(context.cursor) if context.cursor else {}
    if state.get("hash") == digest:
        return SkipReason(f"suite {name} unchanged ({digest[:12]})")
    change = int(state.get("changes", 0)) + 1
    cursor = json.dumps({"suite": name, "hash": digest, "changes": change})
    if not state:
        return SensorResult(run_requests=[], cursor=cursor)
    try:
        registry = load_registry()
    except RegistryError as exc:
        return SkipReason(f"suite {name} changed, but models.yaml is invalid:\n{exc}")
    partitions = set(context.instance.get_dynamic_partitions(MODELS_PARTITIONS_NAME))
    runs = []
    for entry in registry.enabled():
        if entry.slug not in partitions:
            continue  # the registry sensor adds it (and benchmarks it) first
        runs.append(
            RunRequest(
                run_key=f"suite:{change}:{digest[:16]}:{entry.slug}",
                partition_key=entry.slug,
                asset_selection=BENCHMARK_CHAIN,
                tags={
                    **backend_tags(entry),
                    **priority_tags("suite_change"),
                    "goat/reason": f"suite {name} changed",
                },
            )
        )
    context.log.info(f"suite {name} changed ({digest[:12]}): {len(runs)} model runs requested")
    if not runs:  # no model to benchmark: the suite's table is still brought up to date
        runs = [
            RunRequest(
                run_key=f"suite:{change}:{digest[:16]}",
                asset_selection=[BENCHMARK_CHAIN[0]],
                tags=priority_tags("suite_change"),
            )
        ]
    return SensorResult(run_requests=runs, cursor=cursor)
