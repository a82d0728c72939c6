"""`goat view` over a run of the real builtin agent: SmolLM2-135M served by a real `goat serve` (goat's
own llama.cpp worker, as the demo serves it) behind the real LiteLLM proxy and its trace sink (small
limits), read in headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from goat_dagster.bench.run_request import RetryPolicy
from goat_dagster.bench.transcript import read_attempts
from goat_dagster.bench.usage import AgentLimits
from goat_dagster.routing import proxy
from goat_dagster.tracing.export import export_traces
from goat_dagster.viewer import links
from tests.bench.conftest import proxy_in_front_of
from tests.conftest import benchmark
from tests.serving.plane_helpers import Plane, start_plane

from .conftest import Viewer

pytestmark = [pytest.mark.ui, pytest.mark.integration, pytest.mark.slow]

TASKS = ["fizzbuzz", "reverse-string"]
SMALL = AgentLimits(max_steps=2, max_output_tokens=128, max_seconds=300)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    """`goat serve` with the shipped models.yaml: smollm2-135m as `make demo` serves it."""
    plane = start_plane(tmp_path_factory.mktemp("serve-home"), Path("models.yaml").resolve())
    try:
        yield plane
    finally:
        plane.stop()


def test_a_smollm2_transcript_in_the_browser(
    goat_home: Path, served: Plane, monkeypatch: pytest.MonkeyPatch, page, tmp_path: Path
) -> None:
    proxy_in_front_of(served, monkeypatch)  # the managed LiteLLM proxy, with the trace sink
    try:
        s = benchmark(
            suite="smoke", model="smollm2-135m", agent="builtin", task_ids=TASKS, limits=SMALL, parallel=1,
            retry=RetryPolicy(retries=1, call_retries=2, backoff_s=0.5),
        )  # fmt: skip
    finally:
        proxy.stop_proxy()
    assert s.errors == 0, s
    recorded = {t: read_attempts(s.run_id, t, 1)[-1].events for t in TASKS}
    tool_calls = [
        tc for events in recorded.values() for e in events if e["type"] == "call"
        for tc in (e["message"] or {}).get("tool_calls", [])
    ]  # fmt: skip
    assert tool_calls, "SmolLM2 made no tool call in either task: nothing to show"

    viewer = Viewer(goat_home, tmp_path / "view.log")
    try:
        page.goto(viewer.url + "/")
        page.screenshot(path=tmp_path / "1-runs.png", full_page=True)
        page.get_by_role("link", name=s.run_id).click()
        page.wait_for_url(f"**{links.run_path(s.run_id)}")
        page.screenshot(path=tmp_path / "2-run.png", full_page=True)
        assert "builtin" in page.locator(".sub").inner_text()
        for task in TASKS:
            page.goto(viewer.url + links.run_path(s.run_id))
            page.locator("table.tasks a", has_text=task).click()
            page.wait_for_url(f"**/tasks/{task}/1")
            page.locator("button[data-toggle-details]").click()
            page.screenshot(path=tmp_path / f"3-{task}.png", full_page=True)
            events = recorded[task]
            calls = [e for e in events if e["type"] == "call"]
            shown = page.locator(".block.call")
            assert shown.count() == len(calls)
            for i, call in enumerate(calls):
                head = shown.nth(i).locator(".head").inner_text()
                assert f"step {call['step']}" in head
                if not call["ok"]:  # e.g. the context grew past the model's window
                    assert "call failed" in head and call["error"][:60] in shown.nth(i).inner_text()
                    continue
                assert f"{call['prompt_tokens']:,} → {call['completion_tokens']:,} tokens" in head
                assert "traced" in head  # the sink has a trace of this call
                for tc in (call["message"] or {}).get("tool_calls", []):  # each tool call, by name and id
                    box = shown.nth(i).locator(".toolcall", has_text=tc["id"])
                    assert box.locator(".tool-name").inner_text() == tc["function"]["name"]
            results = page.locator(".block.tool")
            assert results.count() == sum(e["type"] == "tool" for e in events)
            for j, tool in enumerate(e for e in events if e["type"] == "tool"):
                assert tool["output"].splitlines()[0] in results.nth(j).inner_text()
            check = next(e for e in events if e["type"] == "check")
            shown_check = page.locator(".block.check")
            assert ("passed" if check["passed"] else "failed") in shown_check.locator("h3").inner_text()
            out = (check["stdout"] + check["stderr"]).strip()
            assert out.splitlines()[-1] in shown_check.locator(".check-output").inner_text()
        # once trace_export has put the traces in the lake, they are read from there
        exported = export_traces(s.run_id, source="sink")
        assert exported.rows == sum(e["type"] == "call" for events in recorded.values() for e in events)
        page.goto(viewer.url + links.task_path(s.run_id, TASKS[0], 1))
        calls = [e for e in recorded[TASKS[0]] if e["type"] == "call"]
        assert page.locator(".block.call .traced").count() == len(calls)  # failed ones by their step
        assert page.problems == []
    finally:
        viewer.stop()
