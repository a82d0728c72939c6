"""`goat view` in a real headless Chromium over a lake made by real `goat run`s (the oracle agent in
bubblewrap sandboxes): from the run list to a transcript, the comparison, the leaderboard, and a
transcript holding markup from a model that must stay text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from goat_dagster.bench.journal import RunJournal, RunSpec, read_task_entries
from goat_dagster.bench.lake import ResultRow
from goat_dagster.bench.transcript import Transcript, attempt_dir
from goat_dagster.tracing.schema import new_id
from goat_dagster.viewer import links

from .conftest import Viewer, goat

pytestmark = [pytest.mark.ui, pytest.mark.integration]

PROJECT = Path(__file__).resolve().parents[2]
XSS = "<script>window.__xss = 1</script>"
IMG = '<img src="x" onerror="window.__xss = 2">'


def broken_suite(path: Path) -> Path:
    """The smoke suite with fizzbuzz's reference broken (A/B: pass -> fail) and a task whose
    instruction, solution and check output carry markup."""
    suite = yaml.safe_load((PROJECT / "suites" / "smoke.yaml").read_text())
    defaults = suite.pop("defaults")
    for t in suite["tasks"]:
        for k, v in defaults.items():
            t.setdefault(k, v)
        if t["id"] == "fizzbuzz":
            t["reference"] = {
                "solution.py": "def fizzbuzz(n):\n    return [str(i) for i in range(1, n + 1)]\n"
            }
    suite["tasks"].append(
        {
            "id": "markup",
            "instruction": f"Make the page say hi. {XSS}",
            "files": {"page.html": "<p>hello</p>\n"},
            "tests": {"check.py": f"print({IMG!r})\nprint('</pre></details><b>bold</b>')\n"},
            "check": "python check.py",
            "timeout_s": 30,
            "reference": {"page.html": f"<p>hi</p>{XSS}\n"},
        }
    )
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def model_transcript(home: Path, run_id: str) -> None:
    """An attempt of the `markup` task as the builtin agent records it, where the model answered with
    markup: in its text, a tool call's name and arguments, and what the tool gave back."""
    trace_id = new_id()
    t = Transcript(attempt_dir(run_id, "markup", 1, runs_dir=home / "runs") / f"{trace_id}.jsonl")
    task = {"instruction": f"Make the page say hi. {XSS}", "files": ["page.html"], "check": "python check.py"}
    t.event("start", task_id="markup", epoch=1, attempt=2, trace_id=trace_id, agent="builtin", **task)
    t.message({"role": "user", "content": f"Make the page say hi. {XSS}"})
    args = json.dumps({"path": "page.html", "content": f"<p>hi</p>{XSS}{IMG}"})
    t.call(
        1,
        call_id=new_id(),
        message={"role": "assistant", "content": f"Sure! {XSS} {IMG} [click](javascript:alert(1))",
                 "tool_calls": [{"id": "call_1", "type": "function",
                                 "function": {"name": f"Write{XSS}", "arguments": args}}]},
        prompt_tokens=120, completion_tokens=40, cost_usd=0.0001, latency_s=0.5, finish_reason="tool_calls",
    )  # fmt: skip
    t.tool("call_1", "Write", args, ok=True, output=f"wrote 40 bytes {XSS}", seconds=0.01)
    t.end(status="failed", error_kind=None, note={"stop": f"answered {XSS}"})


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("view-home")
    three_epochs = ("--agent", "oracle", "--epochs", "3", "--json")
    a = json.loads(goat(home, "run", "-s", "smoke", "-m", "smollm2-135m", *three_epochs).stdout)
    suite = broken_suite(tmp_path_factory.mktemp("suite") / "smoke-broken.yaml")
    b = json.loads(
        goat(home, "run", "-s", str(suite), "-m", "smollm2-135m", "--agent", "oracle", "--json").stdout
    )
    model_transcript(home, b["run_id"])
    # a run killed before it reached the lake: only its journal (the harness's own writer)
    spec = RunSpec(run_id="killed-run", suite="smoke", suite_version="v0", model="smollm2-135m",
                   agent="oracle", sandbox="local", epochs=1)  # fmt: skip
    journal = RunJournal(spec, runs_dir=home / "runs")
    first = json.loads((home / "runs" / a["run_id"] / "results.jsonl").read_text().splitlines()[0])
    row = ResultRow(**{**first["row"], "run_id": "killed-run", "suite_version": "v0"})
    journal.append(row, {"attempts": [{"trace_id": row.trace_id, "check_output": "ok"}]})
    journal.close()
    return {"home": home, "a": a["run_id"], "b": b["run_id"]}


@pytest.fixture(scope="module")
def viewer(lake: dict, tmp_path_factory: pytest.TempPathFactory):
    v = Viewer(lake["home"], tmp_path_factory.mktemp("view-log") / "view.log")
    yield v
    v.stop()


def test_every_page_answers_with_a_content_security_policy(viewer: Viewer, lake: dict) -> None:
    a, b = lake["a"], lake["b"]
    for path in ("/", links.run_path(a), links.task_path(a, "fizzbuzz", 2), links.compare_path(a, b),
                 links.compare_path(a, b, task="fizzbuzz", epoch=1), links.leaderboard_path(),
                 links.run_path("killed-run"), "/?model=smollm2-135m&state=done",
                 links.run_path(a) + "?status=passed&sort=wall_s&desc=1&page=2&per_page=10"):  # fmt: skip
        r = viewer.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
    for path in (links.run_path("no-such-run"), links.task_path(a, "no-such-task", 1),
                 links.compare_path(a, "no-such-run")):  # fmt: skip
        r = viewer.get(path)
        assert r.status_code == 404 and "content-security-policy" in r.headers, path
    assert "no-such-run" in viewer.get(links.run_path("no-such-run")).text
    assert viewer.get("/?page=x").status_code == 400


def test_from_the_run_list_to_a_transcript(viewer: Viewer, lake: dict, page, tmp_path: Path) -> None:
    a = lake["a"]
    page.goto(viewer.url + "/")
    page.screenshot(path=tmp_path / "1-runs.png", full_page=True)
    rows = page.locator("table.runs tbody tr")
    assert rows.count() == 3
    killed = page.locator("tr", has_text="killed-run")
    assert "incomplete" in killed.inner_text()
    run_row = page.locator("tr", has_text=a)
    assert "100.0%" in run_row.inner_text() and "15/15" in run_row.inner_text()

    page.get_by_role("link", name=a).click()
    page.wait_for_url(f"**{links.run_path(a)}")
    page.screenshot(path=tmp_path / "2-run.png", full_page=True)
    assert page.locator("h1").inner_text() == "smollm2-135m on smoke"
    assert page.locator("table.tasks tbody tr").count() == 15  # 5 tasks x 3 epochs, one page

    page.locator("table.tasks a", has_text="fizzbuzz").first.click()
    page.wait_for_url("**/tasks/fizzbuzz/1")
    page.screenshot(path=tmp_path / "3-transcript.png", full_page=True)
    assert "fizzbuzz" in page.locator("h1").inner_text()
    assert "Write a Python function `fizzbuzz" in page.locator(".instruction").inner_text()
    diff = page.locator(".block.files pre.diff").inner_text()
    assert "-    raise NotImplementedError" in diff and "+        out.append(word or str(i))" in diff
    check = page.locator(".block.check")
    assert "passed" in check.locator("h3").inner_text()
    assert "$ python test_solution.py" in check.inner_text() and "exit 0" in check.inner_text()
    assert check.locator("pre.check-output").inner_text().strip() == "ok"
    assert "reference written" in page.locator(".block.end").inner_text()

    page.get_by_role("link", name="palindrome →").click()  # the next task of the run
    page.wait_for_url("**/tasks/palindrome/1")
    page.keyboard.press("k")  # and back, with the keyboard (the one script's shortcut)
    page.wait_for_url("**/tasks/fizzbuzz/1")
    assert page.problems == []


def test_filters_sort_and_pages_of_a_run(viewer: Viewer, lake: dict, page, tmp_path: Path) -> None:
    page.goto(viewer.url + links.run_path(lake["a"]) + "?per_page=10")
    assert page.locator("table.tasks tbody tr").count() == 10
    assert "page 1 of 2" in page.locator(".pager").inner_text()
    page.get_by_role("link", name="next →").click()
    assert page.locator("table.tasks tbody tr").count() == 5
    page.locator("input[name=q]").fill("word")
    page.get_by_role("button", name="Filter").click()
    ids = page.locator("table.tasks td.id").all_inner_texts()
    assert ids == ["word-count"] * 3
    page.get_by_role("link", name="epoch").click()  # sort by epoch, then the other way
    page.get_by_role("link", name="epoch ▲").click()
    assert page.locator("table.tasks tbody tr td:nth-child(2)").all_inner_texts() == ["3", "2", "1"]
    page.screenshot(path=tmp_path / "run-filtered.png", full_page=True)
    assert page.problems == []


def test_compare_two_runs_and_a_task_side_by_side(viewer: Viewer, lake: dict, page, tmp_path: Path) -> None:
    a, b = lake["a"], lake["b"]
    page.goto(viewer.url + "/")
    page.get_by_label(f"A: {a}").check()
    page.get_by_label(f"B: {b}").check()
    page.get_by_role("button", name="Compare A with B").click()
    page.wait_for_url("**/compare?*")
    page.screenshot(path=tmp_path / "compare.png", full_page=True)
    assert "pass→fail 1" in page.locator(".counts").inner_text()
    paired = page.locator(".paired").inner_text()  # analysis.compare's paired statistics
    # fizzbuzz flipped pass→fail, the other 4 shared tasks agree: -1/5, one discordant task, p = 1
    assert "B - A = -20.0 pp (paired 95% CI -59.2 to +19.2) on 5 shared tasks" in paired, paired
    assert "exact McNemar p = 1 · not significant" in paired, paired
    flipped = page.locator("table.compare tbody tr")
    assert flipped.count() == 1 and "fizzbuzz" in flipped.inner_text() and "pass→fail" in flipped.inner_text()
    page.get_by_role("link", name="side by side").click()
    page.wait_for_url("**task=fizzbuzz**")
    page.screenshot(path=tmp_path / "side-by-side.png", full_page=True)
    sides = page.locator(".side")
    assert sides.count() == 2
    assert "passed" in sides.nth(0).locator(".block.check h3").inner_text()
    assert "failed" in sides.nth(1).locator(".block.check h3").inner_text()
    assert "AssertionError" in sides.nth(1).locator(".check-output").inner_text()
    page.goto(viewer.url + links.compare_path(a, b, show="all"))
    assert page.locator("table.compare tbody tr").count() == 6  # 5 shared tasks + the one only B has
    assert page.problems == []


def test_leaderboard_cells_link_to_runs(viewer: Viewer, lake: dict, page, tmp_path: Path) -> None:
    page.goto(viewer.url + links.leaderboard_path())
    page.screenshot(path=tmp_path / "leaderboard.png", full_page=True)
    # the latest run of (smollm2-135m, smoke) is run B
    board = page.locator("table.board tbody tr")
    assert board.count() == 1 and "5/6" in board.inner_text()
    cell = page.locator("table.matrix td.cell a").first
    href = cell.get_attribute("href")
    assert href.startswith(links.run_path(lake["b"]) + "/tasks/")
    page.get_by_role("link", name="smollm2-135m", exact=True).click()
    page.wait_for_url(f"**{links.run_path(lake['b'])}")
    assert page.problems == []


def test_markup_from_a_model_or_a_task_stays_text(viewer: Viewer, lake: dict, page, tmp_path: Path) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(viewer.url + links.task_path(lake["b"], "markup", 1))
    page.locator("button[data-toggle-details]").click()  # open everything that is folded
    page.screenshot(path=tmp_path / "markup.png", full_page=True)
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert dialogs == []
    assert page.locator("main script, main img, main b").count() == 0  # no element came from the data
    text = page.locator("main").inner_text()
    assert f"Make the page say hi. {XSS}" in text  # the task's instruction, as text
    assert f"Sure! {XSS} {IMG}" in text  # the model's answer
    assert f"Write{XSS}" in text and f"<p>hi</p>{XSS}{IMG}" in text  # its tool call
    assert f"wrote 40 bytes {XSS}" in text  # the tool's result
    assert f"+<p>hi</p>{XSS}" in page.locator("pre.diff").first.inner_text()  # the file it wrote
    assert IMG in text and "</pre></details><b>bold</b>" in text  # the check's output
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.problems == []


def test_trace_ids_link_to_langfuse_when_it_is_configured(lake: dict, tmp_path: Path) -> None:
    """Langfuse is not reachable here; the viewer only builds the link (Langfuse's own
    `/trace/<id>` route, which redirects to the trace in its project)."""
    env = {"LANGFUSE_PUBLIC_KEY": "pk-lf-test", "LANGFUSE_SECRET_KEY": "sk-lf-test",
           "LANGFUSE_HOST": "https://langfuse.example.com/"}  # fmt: skip
    v = Viewer(lake["home"], tmp_path / "view.log", env=env)
    try:
        html = v.get(links.task_path(lake["a"], "fizzbuzz", 1)).text
    finally:
        v.stop()
    [row] = [
        e["row"]
        for e in read_task_entries(lake["home"] / "runs" / lake["a"] / "results.jsonl", "fizzbuzz", 1)
    ]
    assert f'href="https://langfuse.example.com/trace/{row.trace_id}"' in html
    assert "sk-lf-test" not in html
