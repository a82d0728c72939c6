"""The regression gate: `no_significant_regression`, a partitioned asset check on benchmark_results.

End to end in Dagster: the real `benchmark_results` asset runs a suite of 20 tasks with the oracle
agent (bubblewrap sandboxes) for one model partition, and the check compares that run with the
model's previous run of the same suite version and agent, planted in the lake. The oracle passes
exactly the tasks whose reference is not broken, so what the new run scores is known:

- a planted drop (8 tasks now fail that passed before) fails the check, WARN by default and ERROR
  when configured;
- noise (two tasks flipped each way) passes it;
- a model's first run of a suite version has nothing to compare with and passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dagster import AssetCheckSeverity, DagsterInstance, materialize

from goat_dagster.analysis.compare import regression
from goat_dagster.assets.benchmarks import benchmark_results
from goat_dagster.assets.checks import REGRESSION_CHECK, no_significant_regression
from goat_dagster.bench.suite import load_suite
from goat_dagster.config import GoatPaths
from goat_dagster.definitions import defs
from goat_dagster.partitions import MODELS_PARTITIONS_NAME

from .conftest import result_row, write_parquet

MODEL = "smollm2-135m"
TASKS = 20
CHECK_OP = f"benchmark_results_{REGRESSION_CHECK}"


def gate_suite(path: Path, broken: set[int]) -> Path:
    """20 tasks `f{i}() == i`; the reference of the `broken` ones returns the wrong number."""
    tasks = [
        {
            "id": f"t{i}",
            "instruction": f"write f{i}() returning {i} in solution.py",
            "files": {"solution.py": f"def f{i}():\n    raise NotImplementedError\n"},
            "tests": {"test_it.py": f"from solution import f{i}\nassert f{i}() == {i}\n"},
            "reference": {"solution.py": f"def f{i}():\n    return {i + (1 if i in broken else 0)}\n"},
        }
        for i in range(1, TASKS + 1)
    ]
    path.write_text(
        yaml.safe_dump({"name": "gate", "defaults": {"check": "python test_it.py"}, "tasks": tasks})
    )
    return path


def plant_previous(paths: GoatPaths, suite: Path, failed: set[int], run_id: str = "prev") -> None:
    """A finished earlier run of the same model, suite version and agent."""
    version = load_suite(str(suite)).version
    rows = [
        result_row(run_id, MODEL, i, 1, "failed" if i in failed else "passed", day=0, wall_s=1.0)
        | {"suite": "gate", "suite_version": version, "agent": "oracle"}
        for i in range(1, TASKS + 1)
    ]
    write_parquet(paths.lake_results / f"{run_id}.parquet", rows)


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        inst.add_dynamic_partitions(MODELS_PARTITIONS_NAME, [MODEL])
        yield inst


def benchmark_and_check(instance: DagsterInstance, suite: Path, severity: str | None = None):
    """Materialize the model's partition of benchmark_results (oracle) with the regression check."""
    run_config: dict = {
        "ops": {"benchmark_results": {"config": {"suite": str(suite), "agent": "oracle", "parallel": 2}}}
    }
    if severity:
        run_config["ops"][CHECK_OP] = {"config": {"severity": severity}}
    result = materialize(
        [benchmark_results, no_significant_regression],
        partition_key=MODEL,
        instance=instance,
        resources=defs.resources,
        run_config=run_config,
    )
    assert result.success  # a failed check is a result, not a failed run
    (ev,) = [e for e in result.get_asset_check_evaluations() if e.check_name == REGRESSION_CHECK]
    assert ev.partition == MODEL  # a result per partition, as the UI shows it
    return ev, {k: v.value for k, v in ev.metadata.items()}


def test_a_planted_drop_fails_the_check(goat_home: Path, tmp_path: Path, instance: DagsterInstance) -> None:
    suite = gate_suite(tmp_path / "gate.yaml", broken=set(range(1, 9)))  # the oracle fails t1..t8
    plant_previous(GoatPaths(goat_home), suite, failed=set())  # which all passed before
    ev, md = benchmark_and_check(instance, suite)
    assert not ev.passed and ev.severity == AssetCheckSeverity.WARN
    assert ev.description.startswith("significant drop against prev")
    assert (md["previous_run_id"], md["shared_tasks"], md["test"]) == ("prev", TASKS, "mcnemar")
    assert md["difference"] == pytest.approx(-8 / TASKS)
    assert md["mcnemar_p"] == pytest.approx(2 / 2**8)  # 8 discordant tasks, all one way
    assert sorted(md["pass_to_fail"]) == sorted(f"t{i}" for i in range(1, 9)) and md["fail_to_pass"] == []


def test_a_drop_is_an_error_when_configured(
    goat_home: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    suite = gate_suite(tmp_path / "gate.yaml", broken=set(range(1, 9)))
    plant_previous(GoatPaths(goat_home), suite, failed=set())
    ev, _ = benchmark_and_check(instance, suite, severity="ERROR")
    assert not ev.passed and ev.severity == AssetCheckSeverity.ERROR


def test_noise_passes_the_check(goat_home: Path, tmp_path: Path, instance: DagsterInstance) -> None:
    suite = gate_suite(tmp_path / "gate.yaml", broken={3, 7})  # the oracle now fails t3 and t7
    plant_previous(GoatPaths(goat_home), suite, failed={11, 12})  # t11 and t12 failed before
    ev, md = benchmark_and_check(instance, suite)
    assert ev.passed and "no significant drop against prev" in ev.description
    assert (md["difference"], md["mcnemar_p"]) == (0.0, pytest.approx(1.0))
    assert sorted(md["pass_to_fail"]) == ["t3", "t7"] and sorted(md["fail_to_pass"]) == ["t11", "t12"]


def test_a_first_run_has_nothing_to_compare_with(
    goat_home: Path, tmp_path: Path, instance: DagsterInstance
) -> None:
    suite = gate_suite(tmp_path / "gate.yaml", broken={1})
    plant_previous(GoatPaths(goat_home), gate_suite(tmp_path / "other.yaml", broken={2}), failed=set())
    ev, md = benchmark_and_check(instance, suite)  # the planted run is of another suite version
    assert ev.passed and "no earlier run" in ev.description and md["previous_run_id"] == ""
    r = regression(MODEL, paths=GoatPaths(goat_home))  # the newest run, read from the lake
    assert (r.run_id, r.previous_run_id, r.dropped) == (md["run_id"], None, False)
