"""Prompts as versioned files, against the real instance on embedded PostgreSQL: editing the system
prompt marks every benchmark made with the old prompts stale and makes `agent_prompts_sensor`
request one run per enabled model, once; a broken prompt file changes nothing and says why.

The sensor is ticked with `build_sensor_context` and its asset events are reported to the instance
the way the daemon reports them (before it submits the tick's runs); the benchmarks are real runs of
`benchmark_results` (the oracle agent: no model needed) in real sandboxes. Staleness is asked of
Dagster's own resolver, the computation behind the UI's "stale" (tests/ui asks the webserver), and of
goat's `stale_or_missing` (`goat demo`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, SensorResult, SkipReason, build_sensor_context, materialize
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.definitions.observe import observe  # what the UI's "Observe" runs
from dagster._time import get_current_datetime

from goat_dagster.assets.prompts import (
    AGENT_PROMPTS,
    agent_prompts,
    observed_prompts_version,
    prompts_observation,
)
from goat_dagster.bench.prompts import load_prompt_set
from goat_dagster.definitions import defs
from goat_dagster.freshness import stale_or_missing
from goat_dagster.partitions import MODELS_PARTITIONS_NAME
from goat_dagster.run_queue import RUN_TAG
from goat_dagster.sensors.prompts import PROMPTS_CHAIN, agent_prompts_sensor

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).resolve().parents[2]
BENCH = AssetKey("benchmark_results")
MODELS = ["pr-alpha", "pr-beta"]  # enabled; pr-idle is not


def entry(key: str, *, enabled: bool = True) -> str:
    return (
        f"  {key}:\n    provider: local\n    engine: llama.cpp\n    enabled: {str(enabled).lower()}\n"
        f"    weights: {{source: path, path: /models/m.gguf}}\n"
    )


def tick(instance, cursor):
    """One evaluation, its asset events reported as the daemon reports them."""
    result = agent_prompts_sensor(build_sensor_context(instance=instance, cursor=cursor))
    for event in getattr(result, "asset_events", None) or []:
        instance.report_runless_asset_event(event)
    return result


def stale(instance, partition: str) -> tuple[StaleStatus, list[str]]:
    """What the UI shows for a partition of benchmark_results: status and causes."""
    graph = defs.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    causes = resolver.get_stale_root_causes(BENCH, partition)
    return resolver.get_status(BENCH, partition), [
        f"{c.asset_key.to_user_string()}: {c.reason}" for c in causes
    ]


@pytest.fixture
def prompt_env(
    pg_instance, goat_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    prompts = tmp_path / "prompts"
    shutil.copytree(PROJECT / "prompts" / "builtin", prompts / "builtin")
    models = tmp_path / "models.yaml"
    models.write_text("models:\n" + "".join(entry(k) for k in MODELS) + entry("pr-idle", enabled=False))
    monkeypatch.setenv("GOAT_PROMPTS_DIR", str(prompts))
    monkeypatch.setenv("GOAT_MODELS_FILE", str(models))
    pg_instance.add_dynamic_partitions(MODELS_PARTITIONS_NAME, [*MODELS, "pr-idle"])
    yield prompts / "builtin"
    # the session's instance goes on with agent_prompts observed at the project's prompts
    project = load_prompt_set(str(PROJECT / "prompts" / "builtin"))
    if observed_prompts_version(pg_instance) != project.sha256:
        pg_instance.report_runless_asset_event(prompts_observation(project))


def benchmark(instance, partition: str) -> None:
    result = materialize(
        list(defs.assets),
        selection=[BENCH],
        partition_key=partition,
        instance=instance,
        resources=defs.resources,
        run_config={"ops": {"benchmark_results": {"config": {"agent": "oracle", "tasks": ["fizzbuzz"]}}}},
    )
    assert result.success


def test_editing_the_system_prompt_marks_benchmarks_stale_and_reruns_each_model_once(
    pg_instance, prompt_env: Path
) -> None:
    instance = pg_instance
    digest0 = load_prompt_set().sha256
    baseline = tick(instance, None)
    assert isinstance(baseline, SensorResult) and baseline.run_requests == []  # a baseline, not a change
    assert observed_prompts_version(instance) == digest0
    for model in MODELS:
        benchmark(instance, model)
        assert stale(instance, model)[0] == StaleStatus.FRESH, stale(instance, model)
    assert isinstance(tick(instance, baseline.cursor), SkipReason)

    system = prompt_env / "system.md"
    original = system.read_text()
    system.write_text(original.replace("Make the smallest change", "Make the simplest change"))
    changed = tick(instance, baseline.cursor)
    assert isinstance(changed, SensorResult)
    digest1 = json.loads(changed.cursor)["hash"]
    assert digest1 == load_prompt_set().sha256 != digest0
    # the new version is recorded in the tick, ahead of its runs: both benchmarks are stale now
    assert [e.asset_key for e in changed.asset_events] == [AGENT_PROMPTS]
    assert observed_prompts_version(instance) == digest1
    for model in MODELS:
        status, causes = stale(instance, model)
        assert status == StaleStatus.STALE and any(c.startswith("agent_prompts") for c in causes), causes
        assert stale_or_missing(instance, list(defs.assets), [BENCH], model) == [BENCH]
    # one run per enabled model, its backend tagged for the run queue; none for the disabled one
    assert sorted(r.partition_key for r in changed.run_requests) == MODELS
    n = json.loads(changed.cursor)["changes"]
    for req in changed.run_requests:
        assert req.asset_selection == PROMPTS_CHAIN and req.tags[RUN_TAG] == "local"
        assert req.run_key == f"prompts:{n}:{digest1[:16]}:{req.partition_key}"
    # once per change
    assert isinstance(tick(instance, changed.cursor), SkipReason)

    # the requested run brings a partition up to date; the other stays stale until its run
    benchmark(instance, MODELS[0])
    assert stale(instance, MODELS[0])[0] == StaleStatus.FRESH
    assert stale(instance, MODELS[1])[0] == StaleStatus.STALE

    # a broken prompt file: nothing observed, requested or moved, and the skip says why
    system.write_text("You are a coding agent. Work in the sandbox.\n")
    broken = tick(instance, changed.cursor)
    assert isinstance(broken, SkipReason)
    assert f"{system}: the placeholder {{{{workdir}}}} is missing" in broken.skip_message
    assert "No benchmark was requested" in broken.skip_message
    assert observed_prompts_version(instance) == digest1
    assert stale(instance, MODELS[0])[0] == StaleStatus.FRESH

    # changed back to the first content: a change again, with run keys of its own
    system.write_text(original)
    back = tick(instance, changed.cursor)
    assert isinstance(back, SensorResult) and sorted(r.partition_key for r in back.run_requests) == MODELS
    assert not {r.run_key for r in back.run_requests} & {r.run_key for r in changed.run_requests}
    assert observed_prompts_version(instance) == digest0


def test_a_broken_prompt_set_fails_the_benchmark_before_it_starts(pg_instance, prompt_env: Path) -> None:
    (prompt_env / "tools.yaml").write_text(
        "tools:\n  - name: Shell\n    description: x\n    parameters: {}\n"
    )
    result = materialize(
        list(defs.assets),
        selection=[BENCH],
        partition_key=MODELS[0],
        instance=pg_instance,
        resources=defs.resources,
        run_config={"ops": {"benchmark_results": {"config": {"tasks": ["fizzbuzz"]}}}},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)  # type: ignore[union-attr]
    assert f"{prompt_env / 'tools.yaml'}:2: tools[0]: unknown tool 'Shell'" in message


def test_observing_agent_prompts_in_dagster_records_the_prompt_set_hash(
    pg_instance, prompt_env: Path
) -> None:
    """`agent_prompts` is an observable source asset ("Observe" in the UI runs this function): its
    data version is the prompt set's hash, and broken files fail the observation, naming the file."""
    system = prompt_env / "system.md"
    system.write_text(system.read_text().replace("Make the smallest change", "Make a minimal change"))
    result = observe([agent_prompts], instance=pg_instance)
    assert result.success
    assert observed_prompts_version(pg_instance) == load_prompt_set().sha256
    before = observed_prompts_version(pg_instance)
    system.write_text("You are a coding agent.\n")
    result = observe([agent_prompts], instance=pg_instance, raise_on_error=False)
    assert not result.success and observed_prompts_version(pg_instance) == before
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert f"{system}: the placeholder {{{{workdir}}}} is missing" in str(
        failure.event_specific_data.error  # type: ignore[union-attr]
    )
