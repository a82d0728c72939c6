"""A Dagster run of one partition of `benchmark_results` runs its step in the run's own process
(the code location's executor) and records the same rows as a bare `goat run` of the same work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterEventType

from goat_dagster.bench.lake import read_rows, results_dir
from goat_dagster.definitions import defs

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODEL = "smollm2-135m"


def test_the_code_locations_runs_execute_in_process() -> None:
    assert defs.resolve_implicit_global_asset_job_def().executor_def.name == "in_process"


def test_one_partition_runs_in_process_and_records_what_goat_run_records(pg_instance) -> None:
    env = dict(os.environ)  # the session's instance: its GOAT_HOME, DAGSTER_HOME and PostgreSQL
    bare = subprocess.run(
        [str(BIN / "goat"), "run", "--suite", "smoke", "--model", MODEL, "--agent", "oracle", "--json"],
        env=env, cwd=PROJECT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bare.returncode == 0, bare.stderr[-2000:]
    expected = {(r["task_id"], r["epoch"], r["status"]) for r in read_rows(json.loads(bare.stdout)["run_id"])}
    assert expected and {s for *_, s in expected} == {"passed"}

    pg_instance.add_dynamic_partitions("models", [MODEL])  # a dynamic partition exists before its run
    config = {"ops": {"benchmark_results": {"config": {"suite": "smoke", "agent": "oracle"}}}}
    out = subprocess.run(
        [
            str(BIN / "dagster"), "asset", "materialize", "-m", "goat_dagster.definitions",
            "--select", "benchmark_results", "--partition", MODEL, "--config-json", json.dumps(config),
        ],
        env=env, cwd=PROJECT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]

    run = pg_instance.get_runs(limit=1)[0]
    assert run.tags["dagster/partition"] == MODEL
    events = [e.dagster_event for e in pg_instance.all_logs(run.run_id) if e.dagster_event]
    kinds = {e.event_type for e in events}
    assert DagsterEventType.STEP_SUCCESS in kinds and DagsterEventType.RUN_SUCCESS in kinds
    assert DagsterEventType.STEP_WORKER_STARTING not in kinds  # no step subprocess
    steps_pids = {e.pid for e in events if e.step_key} | {e.pid for e in events if not e.step_key}
    assert len(steps_pids - {None}) == 1  # the run and its step: one process
    checks = [
        e.event_specific_data for e in events if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert {c.check_name: c.passed for c in checks}["every_task_has_a_row"]
    [materialization] = [
        e.event_specific_data.materialization
        for e in events
        if e.event_type == DagsterEventType.ASSET_MATERIALIZATION
    ]
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["n"] == meta["passed"] == len(expected) and meta["pass_rate"] == 1.0
    assert "-100.0%" in meta["pass_rate_95ci"]  # the run's interval, from its own file
    files = sorted(results_dir().glob(f"dg-{run.run_id[:8]}-{MODEL}-smoke.parquet"))
    assert len(files) == 1
    rows = read_rows(files[0].stem)
    assert {(r["task_id"], r["epoch"], r["status"]) for r in rows} == expected
