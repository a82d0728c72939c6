"""A small fixed lake: four runs of three models on five tasks, plus traces for one run, and each
run's manifest (all made with the same setup: the current prompt set, harness and grader).

Every number the analysis tests check is computed by hand from these rows (see the tests).

  run-a1  alpha  2026-01-01  epochs 1  t1 P  t2 P  t3 F  t4 F  t5 P
  run-a2  alpha  2026-01-02  epochs 1  t1 P  t2 F  t3 P  t4 F  t5 E(infra)      <- alpha's latest run
  run-b1  beta   2026-01-02  epochs 3  t1 PPP  t2 PFF  t3 FFF  t4 PF E(timeout)  t5 FFP
  run-g1  gamma  2026-01-02  epochs 1  t1..t5 all E(infra), no cost, no tokens
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from goat_dagster.bench.lake import write_lake_file
from goat_dagster.bench.manifest import MANIFEST_TYPES, RunManifest, current_setup
from goat_dagster.config import GoatPaths
from goat_dagster.tracing.schema import TraceRecord

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def result_row(
    run_id: str,
    model: str,
    task: int,
    epoch: int,
    status: str,
    *,
    day: int,
    wall_s: float,
    error_kind: str | None = None,
    cost_usd: float | None = 0.0,
    prompt_tokens: int | None = 10,
    completion_tokens: int | None = 1,
    trace_id: str | None = None,
) -> dict[str, Any]:
    started = T0 + timedelta(days=day, seconds=100 * task + epoch)
    return {
        "run_id": run_id,
        "suite": "smoke",
        "suite_version": "v1",
        "model": model,
        "agent": "builtin",
        "sandbox": "local",
        "task_id": f"t{task}",
        "epoch": epoch,
        "status": status,
        "error_kind": error_kind,
        "started_at": started,
        "finished_at": started + timedelta(seconds=wall_s),
        "wall_s": wall_s,
        "steps": 2,
        "tool_calls": 1,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost_usd": cost_usd,
        "trace_id": trace_id,
    }


def fixed_results() -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    runs["run-a1"] = [
        result_row(
            "run-a1",
            "alpha",
            t,
            0,
            s,
            day=0,
            wall_s=10.0 + 2 * t,
            cost_usd=0.01,
            prompt_tokens=100,
            completion_tokens=10,
        )
        for t, s in zip(range(1, 6), ["passed", "passed", "failed", "failed", "passed"], strict=True)
    ]
    runs["run-a2"] = [
        result_row(
            "run-a2",
            "alpha",
            t,
            0,
            s,
            day=1,
            wall_s=w,
            error_kind=k,
            cost_usd=c,
            prompt_tokens=p,
            completion_tokens=p // 10,
            trace_id=f"tr-a2-t{t}",
        )
        for t, s, k, w, c, p in [
            (1, "passed", None, 10.0, 0.01, 100),
            (2, "failed", None, 20.0, 0.02, 200),
            (3, "passed", None, 30.0, 0.03, 300),
            (4, "failed", None, 40.0, 0.04, 400),
            (5, "error", "infra", 5.0, 0.005, 50),
        ]
    ]
    beta = {1: "PPP", 2: "PFF", 3: "FFF", 4: "PFE", 5: "FFP"}
    status = {"P": "passed", "F": "failed", "E": "error"}
    runs["run-b1"] = [
        result_row(
            "run-b1",
            "beta",
            t,
            e,
            status[c],
            day=1,
            wall_s=10.0 * t + e,
            error_kind="timeout" if c == "E" else None,
        )
        for t, outcomes in beta.items()
        for e, c in enumerate(outcomes)
    ]
    runs["run-g1"] = [
        result_row(
            "run-g1",
            "gamma",
            t,
            0,
            "error",
            day=1,
            wall_s=0.5,
            error_kind="infra",
            cost_usd=None,
            prompt_tokens=None,
            completion_tokens=None,
        )
        for t in range(1, 6)
    ]
    return runs


def fixed_traces() -> list[dict[str, Any]]:
    """Calls of run-a2: latencies 1, 2, 3 (from start/end), 4 (logged twice: sink and Langfuse),
    5 (no run_id: found through its trace_id), 10 (an error); plus one call of another run."""
    start = T0 + timedelta(days=1)

    def call(call_id: str, trace_id: str, latency: float | None, **kw: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "source": "sink",
            "call_id": call_id,
            "trace_id": trace_id,
            "run_id": "run-a2",
            "suite": "smoke",
            "model": "alpha",
            "start_time": start,
            "end_time": start + timedelta(seconds=latency or 3.0),
            "latency_s": latency,
            "prompt_tokens": 50,
            "completion_tokens": 5,
            "tags": ["model:alpha", "suite:smoke"],
        }
        fields.update(kw)
        return TraceRecord(**fields).model_dump()

    return [
        call("c1", "tr-a2-t1", 1.0),
        call("c2", "tr-a2-t2", 2.0),
        call("c3", "tr-a2-t3", None),
        call("c4", "tr-a2-t4", 4.0),
        call("c4", "tr-a2-t4", 4.0, source="langfuse"),
        call("c5", "tr-a2-t5", 5.0, run_id=None),
        call("c6", "tr-a2-t1", 10.0, status="error", error="boom"),
        call("c7", "tr-other", 99.0, run_id="run-elsewhere"),
    ]


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write like a lake writer does: to a temporary name, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(path)
    return path


def manifest(run_id: str, model: str, **fields: Any) -> RunManifest:
    """A run's manifest with the current setup (the project's prompt set, this harness and grader),
    a model served by llama.cpp; `fields` change any of it."""
    base: dict[str, Any] = {
        "run_id": run_id,
        "suite": "smoke",
        "suite_version": "v1",
        "model": model,
        "agent": "builtin",
        "sandbox": "local",
        "epochs": 1,
        "prompt_set": "builtin",
        "prompt_sha256": current_setup().prompt_sha256,
        "weights_revision": f"{model}-weights==1",
        "weights_sha256": "0" * 64,
        "engine": "llama.cpp",
        "engine_version": "llama-cpp-python 0.3.36",
        "litellm_version": "1.80.0",
        "sampling": {"temperature": 0.3, "tool_choice": "auto", "max_tokens": 1024},
        "limits": {"agent": {"max_steps": 30}, "sandbox": {"memory_mb": 2048}},
        "sandbox_image": "local: bubblewrap; Python 3.11",
    }
    return RunManifest(**{**base, **fields}).with_fingerprint()


def write_manifest_file(paths: GoatPaths, m: RunManifest) -> Path:
    return write_lake_file(paths.lake_runs / f"{m.run_id}.parquet", [m], MANIFEST_TYPES)


def write_fixed_lake(paths: GoatPaths, *, traces: bool = True) -> None:
    for run_id, rows in fixed_results().items():
        write_parquet(paths.lake_results / f"{run_id}.parquet", rows)
        epochs = len({r["epoch"] for r in rows})
        write_manifest_file(paths, manifest(run_id, rows[0]["model"], epochs=epochs))
    if traces:
        write_parquet(paths.lake_traces / "run-a2.parquet", fixed_traces())


@pytest.fixture
def goat_paths(goat_home: Path) -> GoatPaths:
    return GoatPaths(goat_home)


@pytest.fixture
def fixed_lake(goat_paths: GoatPaths) -> GoatPaths:
    write_fixed_lake(goat_paths)
    return goat_paths


@pytest.fixture
def results_only_lake(goat_paths: GoatPaths) -> GoatPaths:
    """The same results, and no trace file at all (trace export not run yet)."""
    write_fixed_lake(goat_paths, traces=False)
    return goat_paths


@pytest.fixture
def lake_writer() -> Callable[[Path, list[dict[str, Any]]], Path]:
    return write_parquet
