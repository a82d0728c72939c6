"""Each task attempt's transcript (bench/transcript.py): what the agent saw and did, the files it
left and what the check said, recorded by real runs in real sandboxes; secrets masked."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from goat_dagster.bench.journal import journal_file, read_task_entries
from goat_dagster.bench.local_sandbox import LocalSandboxPool
from goat_dagster.bench.transcript import attempt_dir, diff_workdir, read_attempts, task_dir_name
from goat_dagster.bench.usage import AgentLimits
from goat_dagster.routing.gateway import Gateway
from tests.conftest import benchmark

SUITE = """\
name: transcripts
tasks:
  - id: wrong/answer
    instruction: "Write add(a, b) in solution.py. The key is {secret}."
    files: {{solution.py: "def add(a, b):\\n    raise NotImplementedError\\n", notes.txt: "keep me\\n"}}
    tests:
      test_solution.py: |
        from solution import add
        assert add(2, 2) == 4, "add(2, 2) should be 4, got %r" % add(2, 2)
        print("ok")
    check: python test_solution.py
    reference:
      solution.py: |
        def add(a, b):
            return a - b  # {secret}
  - id: right
    instruction: Write add(a, b) in solution.py.
    files: {{solution.py: "def add(a, b):\\n    raise NotImplementedError\\n"}}
    tests: {{test_solution.py: "from solution import add\\nassert add(2, 2) == 4\\nprint('ok')\\n"}}
    check: python test_solution.py
    reference: {{solution.py: "def add(a, b):\\n    return a + b\\n"}}
"""
SECRET = "sk-transcript-test-0123456789abcdef"


def suite_file(tmp_path: Path) -> Path:
    f = tmp_path / "transcripts.yaml"
    f.write_text(SUITE.format(secret=SECRET))
    return f


def events_of(run_id: str, task_id: str, epoch: int = 1) -> list[dict]:
    [attempt] = read_attempts(run_id, task_id, epoch)
    return attempt.events


def test_oracle_attempts_record_files_and_check(
    goat_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_SERVICE_API_KEY", SECRET)  # a secret of the harness's environment
    s = benchmark(suite=str(suite_file(tmp_path)), model="smollm2-135m", agent="oracle", parallel=1)
    assert (s.passed, s.failed) == (1, 1)

    events = events_of(s.run_id, "wrong/answer")
    assert [e["type"] for e in events] == ["start", "files", "check", "end"]
    start, files, check, end = events
    assert start["task_id"] == "wrong/answer" and start["agent"] == "oracle" and start["attempt"] == 1
    assert start["files"] == ["notes.txt", "solution.py"] and start["check"] == "python test_solution.py"
    [row] = [e["row"] for e in read_task_entries(journal_file(s.run_id), "wrong/answer", 1)]
    assert start["trace_id"] == row.trace_id  # the file of the attempt whose row counts
    # only what changed, with its content before and after; the untouched file is left out
    [change] = files["changes"]
    assert change["path"] == "solution.py" and change["change"] == "modified"
    assert "raise NotImplementedError" in change["before"] and "return a - b" in change["after"]
    assert check["passed"] is False and check["exit_code"] == 1 and check["killed"] is None
    assert "add(2, 2) should be 4, got 0" in check["stderr"]
    assert end["status"] == "failed" and end["stop"] == "reference written"

    # the secret in the instruction and in the file the agent wrote is masked wherever it is written
    assert "***" in start["instruction"] and "***" in change["after"]
    for f in Path(goat_home, "runs", s.run_id).rglob("*"):
        if f.is_file() and f.name not in ("lock", "run.json"):
            assert SECRET not in f.read_text(errors="replace"), f
    # a task id with a slash is one directory
    assert attempt_dir(s.run_id, "wrong/answer", 1).name == "1"
    assert (
        attempt_dir(s.run_id, "wrong/answer", 1).parent.name
        == task_dir_name("wrong/answer")
        == "wrong%2Fanswer"
    )

    right = events_of(s.run_id, "right")
    assert right[-2]["type"] == "check" and right[-2]["passed"] and right[-2]["stdout"] == "ok\n"


def test_the_work_dir_diff_sees_added_deleted_binary_and_large_files(pool: LocalSandboxPool) -> None:
    setup = {"keep.py": "x = 1\n", "gone.txt": "bye\n", "edit.py": "a = 1\n"}
    with pool.session() as sb:
        sb.write_files(setup)
        res = sb.exec(
            "rm gone.txt; printf 'a = 2\\n' > edit.py; mkdir -p sub; printf 'new\\n' > sub/new.txt;"
            " head -c 300 /dev/zero > blob.bin; head -c 200000 /dev/zero | tr '\\0' x > big.txt",
            timeout_s=30,
        )
        assert res.ok, res
        changes, note = diff_workdir(sb, setup)
    by_path = {c["path"]: c for c in changes}
    assert note is None
    assert set(by_path) == {"gone.txt", "edit.py", "sub/new.txt", "blob.bin", "big.txt"}
    assert by_path["gone.txt"]["change"] == "deleted" and by_path["gone.txt"]["before"] == "bye\n"
    assert (by_path["edit.py"]["before"], by_path["edit.py"]["after"]) == ("a = 1\n", "a = 2\n")
    assert by_path["sub/new.txt"] == {**by_path["sub/new.txt"], "change": "added", "after": "new\n"}
    assert by_path["blob.bin"]["binary"] is True and by_path["blob.bin"]["after"] is None
    assert by_path["big.txt"]["large"] is True and by_path["big.txt"]["size"] == 200_000


@pytest.mark.integration
def test_builtin_agent_transcript_holds_every_call_and_tool_result(
    goat_home: Path, model_gateway: Gateway
) -> None:
    limits = AgentLimits(max_steps=3, max_output_tokens=96, max_seconds=300)
    s = benchmark(
        suite="smoke",
        model="smollm2-135m",
        agent="builtin",
        gateway=model_gateway,
        task_ids=["fizzbuzz"],
        limits=limits,
    )
    [entry] = read_task_entries(journal_file(s.run_id), "fizzbuzz", 1)
    row = entry["row"]
    events = events_of(s.run_id, "fizzbuzz")
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["start", "message", "message"] and kinds[-3:] == ["files", "check", "end"]
    assert [e["message"]["role"] for e in events if e["type"] == "message"] == ["system", "user"]
    calls = [e for e in events if e["type"] == "call"]
    tools = [e for e in events if e["type"] == "tool"]
    assert [c["step"] for c in calls] == list(range(1, row.steps + 1))
    assert len(tools) == row.tool_calls
    assert sum(c["prompt_tokens"] for c in calls) == row.prompt_tokens
    assert sum(c["completion_tokens"] for c in calls) == row.completion_tokens
    assert sum(c["cost_usd"] for c in calls) == pytest.approx(row.cost_usd)
    logged = {json.loads(ln)["call_id"] for ln in Path(s.journal_dir, "calls.jsonl").read_text().splitlines()}
    assert {c["call_id"] for c in calls} == logged  # the same calls as the call journal, by id
    for c in calls:
        assert c["ok"] and c["latency_s"] > 0 and c["message"]["role"] == "assistant"
    # each tool result follows the call that asked for it
    asked = [tc["id"] for c in calls for tc in c["message"].get("tool_calls", [])]
    assert [t["call_id"] for t in tools] == asked
    check = events[-2]
    assert check["command"] == "python test_solution.py" and check["passed"] == (row.status == "passed")


def test_a_torn_last_line_is_skipped(goat_home: Path) -> None:
    d = attempt_dir("torn", "t", 1)
    d.mkdir(parents=True)
    (d / "abc.jsonl").write_text(
        textwrap.dedent("""\
        {"type": "start", "at": "2026-12-01T00:00:00+00:00", "task_id": "t"}
        {"type": "call", "step": 1, "ok": tr""")
    )
    [a] = read_attempts("torn", "t", 1)
    assert [e["type"] for e in a.events] == ["start"] and a.trace_id == "abc"
