"""Free-form prompts (`goat run --prompt TEXT` / `--batch prompts.json`): unscored attempts.

A prompt is a task with no check: its attempt is journaled with the agent's answer and files, its
row's status is `unscored`, and no number that scores runs ever counts it — pass rates, the
leaderboard, the task matrix — while `goat results` shows it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from goat_dagster.analysis.leaderboard import build_leaderboard
from goat_dagster.analysis.runs import run_summaries
from goat_dagster.analysis.snapshot import open_snapshot, query
from goat_dagster.bench.freeform import PromptError, load_batch, prompt_suite, tasks_to_run
from goat_dagster.bench.lake import STATUSES, ResultRow, read_rows, write_results
from goat_dagster.bench.suite import SuiteError, parse_suite
from goat_dagster.config import paths
from goat_dagster.viewer.app import create_app
from tests.analysis.conftest import manifest, write_manifest_file
from tests.bench.test_bench_cli import goat

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_prompt_and_batch_suites(tmp_path: Path) -> None:
    one = prompt_suite("Write fizzbuzz")
    assert one.name == "prompt" and [(t.id, t.check, t.scored) for t in one.tasks] == [
        ("prompt", None, False)
    ]

    batch = tmp_path / "prompts.json"
    batch.write_text(
        json.dumps(["Write fizzbuzz", {"id": "rev", "prompt": "Reverse a string", "files": {"a.txt": "x"}}])
    )
    suite = load_batch(batch)
    assert suite.name == "prompts" and [t.id for t in suite.tasks] == ["p1", "rev"]
    assert suite.tasks[1].files == {"a.txt": "x"} and not any(t.scored for t in suite.tasks)
    batch.write_text(json.dumps({"prompts": ["a"]}))
    assert [t.instruction for t in tasks_to_run(None, None, str(batch)).tasks] == ["a"]

    batch.write_text(json.dumps({"prompts": ["ok", {"prompt": "b", "filez": {}}, {"id": "x y"}, 3]}))
    with pytest.raises(PromptError) as err:
        load_batch(batch)
    text = str(err.value)
    assert f"{batch}: prompts[1].filez: unknown field" in text
    assert f"{batch}: prompts[2].id: String should match pattern" in text
    assert f"{batch}: prompts[2].prompt: required field is missing" in text
    assert f"{batch}: prompts[3]: expected a prompt (text) or {{id, prompt, files}}" in text
    batch.write_text(json.dumps([{"prompt": "b", "files": {"../x": "1"}}]))
    with pytest.raises(PromptError, match=r"prompts\[0\].files: file path '../x' must be relative"):
        load_batch(batch)
    batch.write_text("[1,")
    with pytest.raises(PromptError, match=f"{batch}:1: not JSON"):
        load_batch(batch)
    with pytest.raises(PromptError, match="give one of --suite"):
        tasks_to_run("smoke", "hi", None)
    with pytest.raises(PromptError, match="give one of --suite"):
        tasks_to_run(None, None, None)


def test_a_suite_task_always_has_a_check() -> None:
    with pytest.raises(SuiteError, match=r"s.yaml:3: tasks\[x\].check: required field is missing"):
        parse_suite("name: s\ntasks:\n  - id: x\n    instruction: do it\n", "s.yaml")


def row(run_id: str, suite: str, task: str, status: str, minutes: int, **kw) -> ResultRow:
    start = T0 + timedelta(minutes=minutes)
    return ResultRow(
        run_id=run_id, suite=suite, suite_version="v", model="alpha", agent="builtin", sandbox="local",
        task_id=task, epoch=1, status=status, started_at=start, finished_at=start + timedelta(seconds=5),
        wall_s=5.0, cost_usd=0.01, **kw,
    )  # fmt: skip


def test_unscored_rows_never_count_in_a_pass_rate(goat_home: Path) -> None:
    assert "unscored" in STATUSES
    write_results(
        "bench", [row("bench", "smoke", "t1", "passed", 0), row("bench", "smoke", "t2", "failed", 1)]
    )
    # made with the current setup, so the leaderboard may rank it (issue 17's comparability rule)
    write_manifest_file(paths(), manifest("bench", "alpha", suite_version="v"))
    # a later prompt run under the same (model, suite) name, and one with an error among its prompts
    write_results(
        "asked", [row("asked", "smoke", "p1", "unscored", 10), row("asked", "smoke", "p2", "unscored", 11)]
    )
    write_results(
        "asked2",
        [
            row("asked2", "prompt", "prompt", "unscored", 20),
            row("asked2", "prompt", "p2", "error", 21, error_kind="agent"),
        ],
    )
    runs = {r["run_id"]: r for r in run_summaries()}
    assert (runs["bench"]["pass_rate"], runs["bench"]["unscored"]) == (0.5, 0)
    asked = runs["asked"]
    assert (asked["n"], asked["unscored"], asked["passed"], asked["failed"]) == (2, 2, 0, 0)
    assert runs["asked"]["pass_rate"] is None and runs["asked2"]["errors"] == 1

    board = build_leaderboard()  # the scored run counts, though a prompt run is newer
    assert [(r["model"], r["suite"], r["run_id"]) for r in board.rows] == [("alpha", "smoke", "bench")]
    assert {t["task_id"] for t in board.tasks} == {"t1", "t2"}
    with open_snapshot() as snap:
        outcomes = query(snap.con, "SELECT task_id, outcome, cell FROM task_outcomes WHERE run_id = 'asked'")
        assert sorted((o["task_id"], o["outcome"], o["cell"]) for o in outcomes) == [
            ("p1", "unscored", "·"), ("p2", "unscored", "·"),
        ]  # fmt: skip
        assert query(snap.con, "SELECT count(*) AS n FROM run_summary WHERE invalid_rows > 0")[0]["n"] == 0

    listing = goat(goat_home, "results")
    assert listing.returncode == 0, listing.stderr
    line = next(ln for ln in listing.stdout.splitlines() if ln.startswith("asked "))
    assert "unscored" in line and "n/a" not in line

    # goat view: the run list and the run page say `unscored`, never a pass rate of a prompt run
    with TestClient(create_app()) as client:
        runs_page = client.get("/")
        assert runs_page.status_code == 200
        asked_row = next(tr for tr in runs_page.text.split("<tr>") if '/runs/asked"' in tr)
        assert "unscored" in asked_row and "2 answered" in asked_row
        run_page = client.get("/runs/asked")
        assert run_page.status_code == 200
        assert "2 answered" in run_page.text and "pass rate" not in run_page.text
        assert "pass rate" in client.get("/runs/bench").text


@pytest.mark.integration
@pytest.mark.slow
def test_goat_run_prompt_and_batch_with_a_real_model(goat_home: Path, llama_server, tmp_path: Path) -> None:
    """The builtin agent on free-form prompts, in bubblewrap sandboxes, against real SmolLM2 (the
    llama.cpp server as the gateway)."""
    env = {"GOAT_LLM_BASE_URL": llama_server.base_url, "GOAT_LLM_API_KEY": "sk-test"}
    small = ("--max-steps", "2", "--max-output-tokens", "64")  # a 135M model may use every step it gets
    prompt = ("--prompt", "Say hello in one word.")
    res = goat(goat_home, "run", "--model", "smollm2-135m", *prompt, *small, "--json", env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["suite"], out["n"], out["unscored"], out["passed"], out["failed"]) == ("prompt", 1, 1, 0, 0)
    assert out["pass_rate"] is None and out["errors"] == 0
    [answer] = out["answers"]
    # a 135M model may spend its steps on tool calls and never say a word: then why it stopped is kept
    assert answer["status"] == "unscored" and ((answer["answer"] or "").strip() or answer["stop"])
    [lake_row] = read_rows(out["run_id"])
    assert lake_row["status"] == "unscored" and lake_row["error_kind"] is None and 1 <= lake_row["steps"] <= 2

    batch = tmp_path / "prompts.json"
    batch.write_text(json.dumps(["Say yes.", {"id": "no", "prompt": "Say no.", "files": {"hint.txt": "no"}}]))
    res = goat(goat_home, "run", "-m", "smollm2-135m", "--batch", str(batch), *small, env=env)
    assert res.returncode == 0, res.stderr
    assert "2 prompts answered (unscored: no check)" in res.stdout
    assert "--- p1 (epoch 1): unscored" in res.stdout and "--- no (epoch 1): unscored" in res.stdout
    assert "hint.txt" in res.stdout  # the files the sandbox held at the end are kept with the answer
    run_id = res.stdout.split()[1].rstrip(":")
    full = json.loads(goat(goat_home, "results", run_id, "--full", "--json").stdout)
    assert {a["task_id"] for a in full["answers"]} == {"p1", "no"}
    assert {r["status"] for r in full["rows"]} == {"unscored"}

    res = goat(goat_home, "run", "-m", "smollm2-135m", "--prompt", "x", "--agent", "oracle", env=env)
    assert res.returncode == 1 and "a free-form prompt has none" in res.stderr
    res = goat(goat_home, "run", "-m", "smollm2-135m", "--prompt", "x", "--suite", "smoke", env=env)
    assert res.returncode == 1 and "give one of --suite" in res.stderr
