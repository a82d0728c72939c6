"""Links from Dagster to `goat view`: `benchmark_results` and `leaderboard` materialized in-process
(the oracle agent in real sandboxes), every URL their metadata holds opened on a real `goat view`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, materialize

from goat_dagster.definitions import defs
from goat_dagster.partitions import MODELS_PARTITIONS_NAME
from goat_dagster.viewer import links

from .conftest import Viewer

pytestmark = pytest.mark.integration

MD_LINK = re.compile(r"\]\((http://[^)\s]+)\)")


def metadata(instance: DagsterInstance, key: str) -> dict:
    event = instance.get_latest_materialization_event(AssetKey(key))
    assert event is not None, f"{key} was not materialized"
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def test_metadata_urls_answer_200(goat_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    viewer = Viewer(goat_home, tmp_path / "view.log")
    try:
        monkeypatch.setenv("GOAT_VIEW_URL", viewer.url + "/")  # a trailing slash is fine
        instance = DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(MODELS_PARTITIONS_NAME, ["smollm2-135m"])
        result = materialize(
            list(defs.assets),
            selection=[AssetKey("benchmark_results"), AssetKey("leaderboard")],
            partition_key="smollm2-135m",
            instance=instance,
            resources=defs.resources,
            run_config={
                "ops": {
                    "benchmark_results": {"config": {"agent": "oracle", "tasks": ["fizzbuzz", "palindrome"]}}
                }
            },
        )
        assert result.success
        bench, board = metadata(instance, "benchmark_results"), metadata(instance, "leaderboard")
        run_id = bench["run_id"]

        assert bench["viewer"] == links.run_url(run_id) == f"{viewer.url}/runs/{run_id}"
        task_links = MD_LINK.findall(bench["tasks"])
        assert task_links == [f"{viewer.url}/runs/{run_id}/tasks/{t}/1" for t in ("fizzbuzz", "palindrome")]
        board_links = MD_LINK.findall(board["leaderboard"])
        assert board_links == [links.run_url(run_id)]
        assert MD_LINK.findall(board["leaderboard_details"]) == [links.run_url(run_id)]
        matrix_links = MD_LINK.findall(board["per_task_matrix"])
        assert sorted(matrix_links) == sorted(task_links)
        assert board["viewer"] == f"{viewer.url}/leaderboard"

        for url in {bench["viewer"], board["viewer"], *task_links, *board_links, *matrix_links}:
            r = viewer.get(url.removeprefix(viewer.url))
            assert r.status_code == 200, url
        page = viewer.get(f"/runs/{run_id}/tasks/fizzbuzz/1").text
        assert "python test_solution.py" in page and "passed" in page
    finally:
        viewer.stop()
