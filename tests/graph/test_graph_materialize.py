"""The whole asset graph, in-process, against real parts: the embedded PostgreSQL instance, `goat
serve` with real SmolLM2 weights, the real LiteLLM proxy with the trace sink, real bubblewrap
sandboxes, the Parquet lake and DuckDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, materialize

from goat_dagster.definitions import defs
from goat_dagster.partitions import MODELS_PARTITIONS_NAME
from goat_dagster.viewer.links import leaderboard_url

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUICK = {"parallel": 1, "max_steps": 3, "max_output_tokens": 64, "max_seconds": 120.0}
PROJECT = Path(__file__).resolve().parents[2]
ALL = sorted(defs.resolve_asset_graph().materializable_asset_keys)


def meta(result, key: str) -> dict:
    mats = result.asset_materializations_for_node(key)
    assert mats, f"{key} was not materialized"
    return {k: getattr(v, "value", v) for k, v in mats[-1].metadata.items()}


@pytest.fixture(scope="module")
def one_model(stack_env, tmp_path_factory) -> Iterator[Path]:
    """The session's registry with only smollm2-135m: what this module benchmarks. The servers it
    starts serve this registry, so they are stopped when the module is done."""
    text = stack_env.models_file.read_text()
    path = tmp_path_factory.mktemp("one-model") / "models.yaml"
    path.write_text(text[: text.index("  smollm2-135m-b:")])
    yield path
    subprocess.run(
        [str(Path(sys.executable).with_name("goat")), "stop"],
        env={**os.environ, **stack_env.env, "GOAT_MODELS_FILE": str(path)}, check=True, timeout=120,
    )  # fmt: skip


def test_whole_graph_for_smollm2_on_smoke(pg_instance, stack_env, one_model, monkeypatch) -> None:
    stack_env.apply(monkeypatch)
    monkeypatch.setenv("GOAT_MODELS_FILE", str(one_model))
    pg_instance.add_dynamic_partitions(MODELS_PARTITIONS_NAME, ["smollm2-135m", "smollm2-135m-b"])
    result = materialize(
        list(defs.assets),
        selection=ALL,
        partition_key="smollm2-135m",
        instance=pg_instance,
        resources=stack_env.resources(),
        run_config={
            "ops": {
                "benchmark_suite": {"config": {"suite": "smoke"}},
                "benchmark_results": {"config": {"suite": "smoke", **QUICK}},
            }
        },
    )
    assert result.success
    assert {m.asset_key for m in result.get_asset_materialization_events()} >= set(ALL)

    endpoint = meta(result, "serving_endpoint")
    assert endpoint["healthy"] is True and str(endpoint["base_url"]).endswith(f":{stack_env.serve_port}/v1")
    routing = meta(result, "litellm_config")
    assert routing["proxy_action"] in ("started", "restarted", "reused")
    assert str(routing["proxy_url"]).endswith(f":{stack_env.proxy_port}")

    bench = meta(result, "benchmark_results")
    assert bench["n"] == 5 and bench["passed"] + bench["failed"] + bench["errors"] == 5
    assert bench["errors_by_kind"].get("infra", 0) == 0
    run_id = bench["run_id"]
    table = pq.read_table(stack_env.home / "lake" / "results" / f"{run_id}.parquet").to_pylist()
    assert sorted(r["task_id"] for r in table) == [
        "fibonacci",
        "fizzbuzz",
        "palindrome",
        "reverse-string",
        "word-count",
    ]
    for row in table:
        assert row["status"] in ("passed", "failed", "error") and row["model"] == "smollm2-135m"
        assert row["trace_id"] and len(row["trace_id"]) == 32
        assert row["steps"] >= 1 and row["prompt_tokens"] > 0

    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["every_task_has_a_row"].passed
    assert checks["every_call_has_trace"].passed, checks["every_call_has_trace"].description

    traces = meta(result, "trace_export")
    assert traces["run_id"] == run_id
    board = meta(result, "leaderboard")
    assert "smollm2-135m" in str(board["leaderboard"])

    # the data versions line up: nothing upstream changed, so the benchmark is fresh now
    from goat_dagster.freshness import stale_or_missing

    assets = list(defs.assets)
    assert stale_or_missing(pg_instance, assets, [AssetKey("benchmark_results")], "smollm2-135m") == []
    assert stale_or_missing(pg_instance, assets, [AssetKey("benchmark_results")], "smollm2-135m-b") == [
        AssetKey("benchmark_results")
    ]


def test_goat_demo_reuses_what_is_up_and_fresh(pg_instance, stack_env, one_model) -> None:
    """`goat demo` on the instance the graph above was materialized into: the suite it would run is
    the one already benchmarked with nothing changed upstream, so it runs nothing, reuses the
    servers and prints the leaderboard."""
    env = {**os.environ, **stack_env.env, "GOAT_MODELS_FILE": str(one_model)}
    out = subprocess.run(
        [str(Path(sys.executable).with_name("goat")), "demo", "--json"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert [r["for"] for r in result["runs"] if r["for"] == "smollm2-135m"] == []
    assert result["models"] == ["smollm2-135m"]
    assert result["viewer"] == leaderboard_url()  # its last line: the leaderboard in goat view
    board = result["leaderboard"]
    assert any(row["model"] == "smollm2-135m" for row in board["leaderboard"])
