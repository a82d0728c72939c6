"""The `leaderboard` asset, materialized through the real (PostgreSQL-backed) Dagster instance."""

from __future__ import annotations

import base64

import pytest
from dagster import AssetKey, materialize

from goat_dagster.assets.leaderboard import leaderboard
from goat_dagster.config import GoatPaths


def latest_metadata(instance) -> dict:
    event = instance.get_latest_materialization_event(AssetKey("leaderboard"))
    assert event is not None and event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_definitions_wire_leaderboard_after_results_and_traces() -> None:
    from goat_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    assert graph.get(AssetKey("leaderboard")).parent_keys == {
        AssetKey("benchmark_results"),
        AssetKey("trace_export"),
    }


@pytest.mark.integration
def test_leaderboard_asset_metadata(fixed_lake: GoatPaths, pg_instance, monkeypatch) -> None:
    monkeypatch.delenv("GOAT_VIEW_URL", raising=False)
    result = materialize([leaderboard], instance=pg_instance)
    assert result.success
    md = latest_metadata(pg_instance)  # read back from PostgreSQL, as the UI does

    view = "http://127.0.0.1:8200"  # GOAT_VIEW_URL's default: each model links to its run in goat view
    alpha = f"| 1 | [alpha]({view}/runs/run-a2) | 50.0% | 15.0-85.0 | 2/4 | 4/5 | ≥11.8% | $0.0525 |"
    assert alpha in md["leaderboard"]
    assert len(md["leaderboard"]) < 1000  # the UI shows it inline
    assert (
        f"| alpha | smoke | [run-a2]({view}/runs/run-a2) | 5 | 1 | 4 | 2 | 2 | 1 (infra 1) |"
        in md["leaderboard_details"]
    )
    assert f"| t4 | [✗]({view}/runs/run-a2/tasks/t4/1) | [1/2 E:1](" in md["per_task_matrix"]
    assert "- pass→fail: 1 (t2)\n- fail→pass: 1 (t3)" in md["ab_comparison"]
    assert "- paired: B - A = +0.0 pp (95% CI -80.0 to +80.0) on 4 shared tasks" in md["ab_comparison"]
    assert "**alpha** vs **beta** (smoke): B - A = -4.2 pp" in md["paired_comparisons"]
    # beta's epochs disagree on t2, t4, t5; alpha's t5 and all of gamma's attempts hit infra errors
    assert "| smoke | t5 | flaky, infra errors | - | 0/1 | beta | 2 |" in md["task_health"]
    assert md["n_flagged_tasks"] == 5
    # the chart is shown inline: the UI's markdown renderer allows data: image sources
    prefix = "![pass rate by model](data:image/png;base64,"
    assert md["chart"].startswith(prefix)
    png = base64.b64decode(md["chart"][len(prefix) : -1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert md["chart_path"] == str(fixed_lake.lake / "leaderboard" / "leaderboard.png")
    assert (md["dagster/row_count"], md["n_models"], md["n_runs_in_lake"]) == (3, 3, 4)
    assert (md["n_result_rows"], md["n_trace_rows"], md["n_skipped_files"]) == (30, 8, 0)
    assert md["warehouse"] == str(fixed_lake.warehouse) and md["warehouse_views"].startswith("created")
    assert fixed_lake.warehouse.is_file()

    # config: rank chosen runs, compare two runs explicitly
    run_config = {
        "ops": {
            "leaderboard": {
                "config": {"run_ids": ["run-a1", "run-b1"], "compare_a": "run-a1", "compare_b": "run-b1"}
            }
        }
    }
    assert materialize([leaderboard], instance=pg_instance, run_config=run_config).success
    md = latest_metadata(pg_instance)
    assert md["selection"] == "runs run-a1, run-b1" and md["dagster/row_count"] == 2
    assert md["warehouse_views"].startswith("current")
    assert "- pass→fail: 2 (t2, t5)" in md["ab_comparison"]

    bad = {"ops": {"leaderboard": {"config": {"compare_a": "run-a1"}}}}
    assert not materialize([leaderboard], instance=pg_instance, run_config=bad, raise_on_error=False).success


@pytest.mark.integration
def test_leaderboard_asset_on_an_empty_lake(goat_paths: GoatPaths, pg_instance) -> None:
    assert materialize([leaderboard], instance=pg_instance).success
    md = latest_metadata(pg_instance)
    assert md["leaderboard"] == "_No benchmark results in the lake yet._"
    assert md["chart"] == "_No results to chart yet._" and "chart_path" not in md
    assert md["dagster/row_count"] == 0
