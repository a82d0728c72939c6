"""The sensors' run requests against the real instance on embedded PostgreSQL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from dagster import AssetKey, SensorResult, SkipReason, build_sensor_context

from goat_dagster.partitions import MODELS_PARTITIONS_NAME
from goat_dagster.run_queue import RUN_TAG
from goat_dagster.sensors.registry import MODEL_CHAIN, model_registry_sensor
from goat_dagster.sensors.suite import BENCHMARK_CHAIN, benchmark_suite_sensor

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).resolve().parents[2]


def tick(sensor, instance, cursor):
    return sensor(build_sensor_context(instance=instance, cursor=cursor))


def entry(key: str, *, enabled: bool = True, n_ctx: int = 2048) -> str:
    return (
        f"  {key}:\n    provider: local\n    engine: llama.cpp\n    enabled: {str(enabled).lower()}\n"
        f"    weights: {{source: path, path: /models/m.gguf}}\n    context_length: {n_ctx}\n"
    )


@pytest.fixture
def clean_partitions(pg_instance):
    for key in pg_instance.get_dynamic_partitions(MODELS_PARTITIONS_NAME):
        pg_instance.delete_dynamic_partition(MODELS_PARTITIONS_NAME, key)
    return pg_instance


def apply(instance, result: SensorResult) -> None:
    for req in result.dynamic_partitions_requests or []:
        if type(req).__name__ == "AddDynamicPartitionsRequest":
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        else:
            for key in req.partition_keys:
                instance.delete_dynamic_partition(req.partitions_def_name, key)


def test_registry_sensor_requests_the_chain_for_new_and_changed_models(
    clean_partitions, tmp_path, monkeypatch
):
    instance = clean_partitions
    models = tmp_path / "models.yaml"
    monkeypatch.setenv("GOAT_MODELS_FILE", str(models))
    models.write_text("models:\n" + entry("alpha") + entry("beta"))

    first = tick(model_registry_sensor, instance, None)
    apply(instance, first)
    # the first look is a baseline: partitions and the registry asset, no benchmarks
    assert [r.asset_selection for r in first.run_requests] == [[AssetKey("model_registry")]]

    models.write_text(
        "models:\n"
        + entry("alpha", n_ctx=4096)
        + entry("beta")
        + entry("gamma")
        + entry("delta", enabled=False)
    )
    second = tick(model_registry_sensor, instance, first.cursor)
    apply(instance, second)
    by_partition = {r.partition_key: r for r in second.run_requests if r.partition_key}
    assert set(by_partition) == {"alpha", "gamma"}  # changed + new enabled; not the disabled one
    for req in by_partition.values():
        assert req.asset_selection == MODEL_CHAIN and MODEL_CHAIN[0] == AssetKey("model_registry")
        assert req.tags[RUN_TAG] == "local"
    assert [r for r in second.run_requests if not r.partition_key] == []
    assert by_partition["alpha"].run_key != by_partition["gamma"].run_key
    assert sorted(instance.get_dynamic_partitions(MODELS_PARTITIONS_NAME)) == [
        "alpha",
        "beta",
        "delta",
        "gamma",
    ]

    # the same file again: nothing
    assert isinstance(tick(model_registry_sensor, instance, second.cursor), SkipReason)
    # alpha changed back: a change again, not a run key seen before
    models.write_text(
        "models:\n" + entry("alpha") + entry("beta") + entry("gamma") + entry("delta", enabled=False)
    )
    third = tick(model_registry_sensor, instance, second.cursor)
    assert [r.partition_key for r in third.run_requests if r.partition_key] == ["alpha"]
    assert not {r.run_key for r in third.run_requests} & {r.run_key for r in second.run_requests}


def test_suite_sensor_fires_once_per_change(clean_partitions, tmp_path, monkeypatch):
    instance = clean_partitions
    suites = tmp_path / "suites"
    suites.mkdir()
    shutil.copy(PROJECT / "suites" / "smoke.yaml", suites / "smoke.yaml")
    models = tmp_path / "models.yaml"
    models.write_text("models:\n" + entry("alpha") + entry("beta") + entry("idle", enabled=False))
    monkeypatch.setenv("GOAT_SUITES_DIR", str(suites))
    monkeypatch.setenv("GOAT_MODELS_FILE", str(models))
    instance.add_dynamic_partitions(MODELS_PARTITIONS_NAME, ["alpha", "beta", "idle"])

    baseline = tick(benchmark_suite_sensor, instance, None)
    assert isinstance(baseline, SensorResult) and baseline.run_requests == []
    unchanged = tick(benchmark_suite_sensor, instance, baseline.cursor)
    assert isinstance(unchanged, SkipReason) and "unchanged" in unchanged.skip_message

    text = (suites / "smoke.yaml").read_text()
    (suites / "smoke.yaml").write_text(
        text.replace('reverse_string("a") == "a"', 'reverse_string("ab") == "ba"')
    )
    changed = tick(benchmark_suite_sensor, instance, baseline.cursor)
    assert isinstance(changed, SensorResult)
    partitioned = [r for r in changed.run_requests if r.partition_key]
    assert sorted(r.partition_key for r in partitioned) == ["alpha", "beta"]  # enabled models only
    assert all(r.asset_selection == BENCHMARK_CHAIN for r in partitioned)
    state = json.loads(changed.cursor)
    digest, n = state["hash"], state["changes"]
    assert {r.run_key for r in partitioned} == {
        f"suite:{n}:{digest[:16]}:alpha",
        f"suite:{n}:{digest[:16]}:beta",
    }
    # the suite is in each model's run, ahead of its benchmark: no separate run to race it
    assert BENCHMARK_CHAIN[0] == AssetKey("benchmark_suite")
    assert [r for r in changed.run_requests if not r.partition_key] == []
    # once per change: the next tick sees nothing new
    assert isinstance(tick(benchmark_suite_sensor, instance, changed.cursor), SkipReason)
    # changed back to the first content: that is a change too, with run keys of its own
    (suites / "smoke.yaml").write_text(text)
    back = tick(benchmark_suite_sensor, instance, changed.cursor)
    assert isinstance(back, SensorResult) and len([r for r in back.run_requests if r.partition_key]) == 2
    assert not {r.run_key for r in back.run_requests} & {r.run_key for r in changed.run_requests}

    # a broken suite: a skip naming file, task and field; the cursor stays where it was
    (suites / "smoke.yaml").write_text(
        text.replace(
            "    instruction: |\n      Write a Python function `fizzbuzz",
            "    instructions: |\n      Write a Python function `fizzbuzz",
            1,
        )
    )
    broken = tick(benchmark_suite_sensor, instance, changed.cursor)
    assert isinstance(broken, SkipReason)
    assert str(suites / "smoke.yaml") in broken.skip_message and "tasks[fizzbuzz]" in broken.skip_message
    assert "instruction" in broken.skip_message and "No benchmark was requested" in broken.skip_message


def test_suite_sensor_watches_a_suite_given_as_a_path(clean_partitions, tmp_path, monkeypatch):
    """GOAT_SUITE may name a file anywhere: its bytes are what the cursor follows."""
    from goat_dagster.sensors import suite as suite_sensor

    path = tmp_path / "my-suite.yaml"
    shutil.copy(PROJECT / "suites" / "smoke.yaml", path)
    monkeypatch.setattr(suite_sensor, "DEFAULT_SUITE", str(path))
    first = suite_sensor.suite_fingerprint(str(path))
    path.write_text(path.read_text().replace('reverse_string("a") == "a"', 'reverse_string("ab") == "ba"'))
    assert suite_sensor.suite_fingerprint(str(path)) != first
