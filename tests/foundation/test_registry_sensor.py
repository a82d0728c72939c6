"""model_registry_sensor against a real Dagster instance on embedded PostgreSQL."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from dagster import SensorResult, SkipReason, build_sensor_context

from goat_dagster.partitions import MODELS_PARTITIONS_NAME
from goat_dagster.sensors.registry import model_registry_sensor

pytestmark = pytest.mark.integration


def entry(key: str, gguf: str = "m.gguf") -> str:
    return textwrap.indent(
        textwrap.dedent(f"""\
            {key}:
              provider: local
              engine: llama.cpp
              weights: {{source: path, path: /models/{gguf}}}
            """),
        "  ",
    )


def write(path: Path, *entries: str) -> None:
    path.write_text("models:\n" + "".join(entries))


def evaluate(instance, cursor: str | None):
    """One sensor tick, applied to the instance the way the daemon applies it."""
    result = model_registry_sensor(build_sensor_context(instance=instance, cursor=cursor))
    if isinstance(result, SensorResult):
        for req in result.dynamic_partitions_requests or []:
            if type(req).__name__ == "AddDynamicPartitionsRequest":
                instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
            else:
                for key in req.partition_keys:
                    instance.delete_dynamic_partition(req.partitions_def_name, key)
    return result


def partitions(instance) -> list[str]:
    return sorted(instance.get_dynamic_partitions(MODELS_PARTITIONS_NAME))


@pytest.fixture
def models_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_instance) -> Path:
    for key in pg_instance.get_dynamic_partitions(MODELS_PARTITIONS_NAME):
        pg_instance.delete_dynamic_partition(MODELS_PARTITIONS_NAME, key)
    path = tmp_path / "models.yaml"
    monkeypatch.setenv("GOAT_MODELS_FILE", str(path))
    return path


def test_instance_is_postgres(pg_instance) -> None:
    from dagster_postgres import PostgresRunStorage

    assert isinstance(pg_instance.run_storage, PostgresRunStorage)


def test_adds_removes_and_detects_changes(pg_instance, models_file: Path) -> None:
    write(models_file, entry("alpha"), entry("Beta.Model"))
    first = evaluate(pg_instance, None)
    assert isinstance(first, SensorResult)
    assert partitions(pg_instance) == ["alpha", "beta.model"]

    # unchanged file: a cheap skip, nothing touched
    again = evaluate(pg_instance, first.cursor)
    assert isinstance(again, SkipReason) and "unchanged" in again.skip_message

    # remove one, add one, change one
    write(models_file, entry("alpha", "other.gguf"), entry("gamma"))
    second = evaluate(pg_instance, first.cursor)
    assert isinstance(second, SensorResult)
    assert partitions(pg_instance) == ["alpha", "gamma"]
    assert second.cursor != first.cursor


def test_broken_file_changes_nothing(pg_instance, models_file: Path) -> None:
    write(models_file, entry("alpha"), entry("beta"))
    ok = evaluate(pg_instance, None)
    assert partitions(pg_instance) == ["alpha", "beta"]

    broken = [
        ("models:\n  alpha: [unclosed\n", "invalid YAML"),
        ("models:\n" + entry("alpha") + entry("alpha"), "duplicate key 'alpha'"),
        (
            "models:\n" + entry("alpha").replace("local", "laptop") + entry("delta"),
            "unknown provider 'laptop'",
        ),
        (
            "models:\n" + entry("alpha").replace("    engine: llama.cpp\n", "") + entry("delta"),
            "models.alpha.engine: required field is missing",
        ),
        ("models:\n" + entry("alpha") + entry("ALPHA"), "slugifies to 'alpha'"),
    ]
    for text, expected in broken:
        models_file.write_text(text)
        result = evaluate(pg_instance, ok.cursor)
        assert isinstance(result, SkipReason), text
        assert str(models_file) in result.skip_message and expected in result.skip_message
        assert "No partition was added or removed" in result.skip_message
        assert partitions(pg_instance) == ["alpha", "beta"]


def test_missing_file_is_a_skip(pg_instance, models_file: Path) -> None:
    result = evaluate(pg_instance, None)
    assert isinstance(result, SkipReason) and "file not found" in result.skip_message
