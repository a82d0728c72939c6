"""Runs end to end without a model: the oracle, failures, errors, the journal, the results lake."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from goat_dagster.analysis.runs import latest_run, run_summaries
from goat_dagster.bench.agents import make_agent
from goat_dagster.bench.bwrap import find_bwrap
from goat_dagster.bench.journal import RunError, RunJournal, RunSpec
from goat_dagster.bench.lake import RESULT_COLUMNS, ResultRow
from goat_dagster.bench.run_request import RunRequest
from goat_dagster.bench.runner import SANDBOX_PARALLEL, parallel_for
from goat_dagster.bench.suite import parse_suite
from goat_dagster.registry import load_registry
from goat_dagster.routing.gateway import Gateway
from tests.conftest import PROJECT, benchmark, free_port

TRICKY = """\
name: tricky
defaults: {check: python test_it.py, timeout_s: 2}
tasks:
  - id: right
    instruction: return 1
    tests: {test_it.py: "from solution import f\\nassert f() == 1\\n"}
    reference: {solution.py: "def f():\\n    return 1\\n"}
  - id: wrong-reference
    instruction: return 1
    tests: {test_it.py: "from solution import f\\nassert f() == 1\\n"}
    reference: {solution.py: "def f():\\n    return 2\\n"}
  - id: hangs
    instruction: return 1
    tests: {test_it.py: "from solution import f\\nassert f() == 1\\n"}
    reference: {solution.py: "def f():\\n    while True:\\n        pass\\n"}
  - id: no-reference
    instruction: return 1
    tests: {test_it.py: "from solution import f\\nassert f() == 1\\n"}
  - id: blocks-the-tests
    instruction: return 1
    tests: {test_it.py: "from solution import f\\nassert f() == 1\\n"}
    reference: {solution.py: "def f():\\n    return 1\\n", test_it.py/x: ""}
"""


def parquet_rows(path: str) -> list[dict]:
    con = duckdb.connect()
    cur = con.execute("SELECT * FROM read_parquet(?) ORDER BY task_id, epoch", [path])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def test_oracle_passes_every_smoke_task(goat_home: Path) -> None:
    seen: list[tuple[str, int]] = []
    s = benchmark(
        suite="smoke",
        model="smollm2-135m",
        agent="oracle",
        on_task=lambda r, p: seen.append((r.task_id, p.done)),
    )
    assert (s.n, s.passed, s.failed, s.errors, s.pass_rate) == (5, 5, 0, 0, 1.0)
    assert s.isolation == "bwrap" and s.sandbox == "local" and s.agent == "oracle"
    assert sorted(d for _, d in seen) == [1, 2, 3, 4, 5]
    assert Path(s.results_path) == goat_home / "lake" / "results" / f"{s.run_id}.parquet"
    con = duckdb.connect()
    cols = [d[0] for d in con.execute("SELECT * FROM read_parquet(?)", [s.results_path]).description]
    assert tuple(cols) == RESULT_COLUMNS
    rows = parquet_rows(s.results_path)
    assert {r["task_id"] for r in rows} == {
        "reverse-string",
        "fizzbuzz",
        "palindrome",
        "word-count",
        "fibonacci",
    }
    for r in rows:
        assert r["status"] == "passed" and r["error_kind"] is None and len(r["trace_id"]) == 32
        assert r["suite_version"] == s.suite_version and r["finished_at"] >= r["started_at"]
    assert latest_run("smollm2-135m")["run_id"] == s.run_id


def test_oracle_passes_all_of_humaneval(goat_home: Path) -> None:
    s = benchmark(suite="humaneval", model="smollm2-135m", agent="oracle", parallel=2)
    assert (s.n, s.passed, s.failed, s.errors) == (164, 164, 0, 0)
    assert s.wall_s < 60


def test_wrong_reference_fails_and_errors_are_kept_apart(goat_home: Path, tmp_path: Path) -> None:
    suite = parse_suite(TRICKY, tmp_path / "tricky.yaml")
    s = benchmark(suite=suite, model="smollm2-135m", agent="oracle", parallel=2, epochs=2)
    rows = {(r["task_id"], r["epoch"]): r for r in parquet_rows(s.results_path)}
    assert len(rows) == 10
    for e in (1, 2):
        assert rows[("right", e)]["status"] == "passed"
        assert rows[("wrong-reference", e)]["status"] == "failed"
        assert rows[("hangs", e)]["status"] == "failed"  # the check timed out: the solution hangs
        assert rows[("blocks-the-tests", e)]["status"] == "failed"
        no_ref = rows[("no-reference", e)]
        assert (no_ref["status"], no_ref["error_kind"]) == ("error", "agent")
    assert (s.passed, s.failed, s.errors) == (2, 6, 2)
    assert s.pass_rate == 0.25  # errors are not scored
    assert s.errors_by_kind == {"infra": 0, "timeout": 0, "agent": 2, "budget": 0}
    detail = [json.loads(ln) for ln in Path(s.journal_dir, "results.jsonl").read_text().splitlines()]
    hang = next(d for d in detail if d["row"]["task_id"] == "hangs")
    assert hang["detail"]["attempts"][0]["check_killed"] == "timeout"


def test_one_summary_for_the_run_the_lake_and_the_journal(goat_home: Path, tmp_path: Path) -> None:
    """`goat run --json`, `goat results` (lake) and an unfinished run (journal) agree on every total."""
    from goat_dagster.analysis.runs import journal_summary
    from goat_dagster.bench.journal import read_spec

    suite = parse_suite(TRICKY, tmp_path / "tricky.yaml")
    s = benchmark(suite=suite, model="smollm2-135m", agent="oracle", parallel=2, epochs=2)
    rows = [ResultRow.model_validate(r) for r in parquet_rows(s.results_path)]
    span = (max(r.finished_at for r in rows) - min(r.started_at for r in rows)).total_seconds()
    assert s.wall_s == pytest.approx(span, abs=1e-3)  # first start -> last finish
    assert s.wall_s >= max(r.wall_s for r in rows)
    from_lake = run_summaries(run_id=s.run_id)[0]
    from_journal = journal_summary(read_spec(s.run_id))
    keys = (
        "n", "passed", "failed", "errors", "pass_rate", "wall_s", "cost_usd", "errors_by_kind",
        "prompt_tokens", "completion_tokens",
    )  # fmt: skip
    ours = s.model_dump()
    for k in keys:
        assert ours[k] == from_lake[k] == from_journal[k], k
    # and the DuckDB view people query themselves
    from goat_dagster.analysis.leaderboard import build_leaderboard

    view = build_leaderboard(run_ids=[s.run_id]).rows[0]
    assert view["wall_s"] == pytest.approx(s.wall_s, abs=1e-3)
    assert view["task_s"] == pytest.approx(sum(r.wall_s for r in rows), abs=1e-3)
    assert (view["passed"], view["failed"], view["errors"]) == (s.passed, s.failed, s.errors)
    totals = [from_lake[k] for k in ("passed", "failed", "errors", "pass_rate")]
    assert totals == [2, 6, 2, 0.25]  # errors are not scored


def test_a_gateway_down_from_the_start_is_a_clear_error(goat_home: Path) -> None:
    dead = Gateway(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="k", model="smollm2-135m-local")
    with pytest.raises(RunError, match=r"no model gateway answers at http://127\.0\.0\.1:\d+/v1"):
        benchmark(suite="smoke", model="smollm2-135m", agent="builtin", gateway=dead, run_id="no-gateway")
    assert not (goat_home / "lake" / "results" / "no-gateway.parquet").exists()
    # the oracle needs no gateway
    assert benchmark(suite="smoke", model="smollm2-135m", agent="oracle", gateway=dead).passed == 5


def test_journal_survives_a_torn_last_line(goat_home: Path) -> None:
    spec = RunSpec(
        run_id="torn", suite="smoke", suite_version="v", model="m", agent="oracle", sandbox="local", epochs=1
    )
    now = datetime.now(UTC)

    def row(task: str, status: str = "passed", kind: str | None = None) -> ResultRow:
        return ResultRow(
            run_id="torn",
            suite="smoke",
            suite_version="v",
            model="m",
            agent="oracle",
            sandbox="local",
            task_id=task,
            epoch=1,
            status=status,
            error_kind=kind,
            started_at=now,
            finished_at=now,
            wall_s=0.1,
        )

    j = RunJournal(spec)
    j.append(row("a"))
    j.append(row("b", "error", "infra"))
    j.close()
    with open(j.results_path, "ab") as f:
        f.write(b'{"row": {"run_id": "torn", "task_')  # a write cut short by SIGKILL
    j2 = RunJournal(spec)
    assert j2.resumed
    assert set(j2.done()) == {("a", 1)}  # b ended in an infra error: a resume tries it again
    j2.append(row("c"))
    j2.close()
    j3 = RunJournal(spec)
    assert set(j3.rows()) == {("a", 1), ("b", 1), ("c", 1)}
    j3.close()


def test_run_id_must_match_its_run_and_is_locked(goat_home: Path) -> None:
    benchmark(suite="smoke", model="smollm2-135m", agent="oracle", run_id="fixed-id", task_ids=["fizzbuzz"])
    with pytest.raises(RunError, match=r"exists with different settings.*agent"):
        benchmark(
            suite="smoke", model="smollm2-135m", agent="builtin", run_id="fixed-id", task_ids=["fizzbuzz"]
        )
    fd = os.open(goat_home / "runs" / "fixed-id" / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as another process working on the run would
    try:
        with pytest.raises(RunError, match="in progress in another process"):
            benchmark(
                suite="smoke", model="smollm2-135m", agent="oracle", run_id="fixed-id", task_ids=["fizzbuzz"]
            )
    finally:
        os.close(fd)
    again = benchmark(
        suite="smoke", model="smollm2-135m", agent="oracle", run_id="fixed-id", task_ids=["fizzbuzz"]
    )
    assert again.resumed and again.reused_rows == 1 and again.n == 1


def test_concurrent_runs_write_their_own_files(goat_home: Path) -> None:
    out: list = []
    threads = [
        threading.Thread(
            target=lambda: out.append(
                benchmark(suite="smoke", model="smollm2-135m", agent="oracle", parallel=1)
            )
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 2 and out[0].run_id != out[1].run_id
    assert len(list((goat_home / "lake" / "results").glob("*.parquet"))) == 2
    runs = run_summaries()
    assert {r["run_id"] for r in runs} == {o.run_id for o in out}
    assert all(r["passed"] == 5 for r in runs)


def goat(*args: str, home: Path) -> subprocess.Popen:
    env = {**os.environ, "GOAT_HOME": str(home), "GOAT_PROJECT_DIR": str(PROJECT)}
    return subprocess.Popen(
        [sys.executable, "-m", "goat_dagster.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def journal_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_at_any_point_then_resume_gives_every_row_once(goat_home: Path) -> None:
    run_id = "killed-run"
    journal = goat_home / "runs" / run_id / "results.jsonl"
    args = [
        "run",
        "--suite",
        "humaneval",
        "--model",
        "smollm2-135m",
        "--agent",
        "oracle",
        "--parallel",
        "2",
        "--run-id",
        run_id,
        "--json",
    ]
    kept: dict[str, str] = {}
    killed: list[int] = []
    for kill_after in (0, 1, 60):  # before any row, right after the first, in the middle
        proc = goat(*args, home=goat_home)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if (kill_after == 0 and (journal.parent / "run.json").exists()) or journal_lines(
                journal
            ) >= kill_after > 0:
                break
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)  # the harness alone, as the OOM killer or `kill -9` would
        proc.wait()
        killed.append(proc.pid)
        for line in journal.read_bytes().splitlines() if journal.exists() else []:
            try:
                row = json.loads(line)["row"]
            except ValueError:
                continue
            kept.setdefault(row["task_id"], row["trace_id"])
    assert 0 < len(kept) < 164, "the kills should have landed mid-run"
    assert not (goat_home / "lake" / "results" / f"{run_id}.parquet").exists()
    listed = goat("results", "--json", home=goat_home)
    runs = json.loads(listed.communicate(timeout=60)[0])["runs"]
    assert [(r["run_id"], r["complete"], r["n"]) for r in runs] == [(run_id, False, len(kept))]

    proc = goat(*args, home=goat_home)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out)
    assert (summary["n"], summary["passed"], summary["errors"]) == (164, 164, 0)
    assert summary["resumed"] and summary["reused_rows"] == len(kept)
    rows = parquet_rows(summary["results_path"])
    assert len(rows) == 164 and len({r["task_id"] for r in rows}) == 164
    for r in rows:  # rows finished before a kill were not redone
        if r["task_id"] in kept:
            assert r["trace_id"] == kept[r["task_id"]]
    # the killed processes left no sandbox behind (bwrap --die-with-parent; the worker exits on EOF)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        if not any(f"goat-sandbox-{pid}-" in ps for pid in killed):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("sandbox workers outlived their killed harness")


VANDAL = """\
name: vandal
defaults: {check: python test_it.py, timeout_s: 10}
tasks:
  - id: kills-every-process
    instruction: return 1
    tests: {test_it.py: "from solution import f\\nassert f() == 1\\n"}
    reference: {solution.py: "import os, signal\\nos.kill(-1, signal.SIGKILL)\\ndef f():\\n    return 1\\n"}
  - id: pkills-python
    instruction: return 1
    tests: {test_it.py: "from solution import f\\nassert f() == 1\\n"}
    reference:
      solution.py: |
        import subprocess
        subprocess.run(["pkill", "-9", "-f", "python"])
        def f():
            return 1
"""


# never without bubblewrap's PID namespace: unisolated, kill(-1) would take the harness and the
# user's other processes down with it
@pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap is not installed (or GOAT_SANDBOX_BWRAP=0)")
def test_a_task_that_wrecks_its_sandbox_is_scored_not_an_infra_error(goat_home: Path, tmp_path: Path) -> None:
    suite = parse_suite(VANDAL, tmp_path / "vandal.yaml")
    s = benchmark(suite=suite, model="smollm2-135m", agent="oracle", parallel=1)
    assert (s.passed, s.failed, s.errors) == (1, 1, 0), s
    detail = {
        d["row"]["task_id"]: d
        for d in (json.loads(ln) for ln in Path(s.journal_dir, "results.jsonl").read_text().splitlines())
    }
    # kill(-1, SIGKILL) spares its caller: everything else of the task died, the check went on
    assert detail["kills-every-process"]["row"]["status"] == "passed"
    # pkill -9 -f python killed the check itself (and, but for the worker's own uid, the sandbox)
    pkill = detail["pkills-python"]
    assert (pkill["row"]["status"], pkill["row"]["error_kind"]) == ("failed", None)
    assert pkill["detail"]["attempts"][0]["check_killed"] == "signal 9"
    for d in detail.values():
        assert len(d["detail"]["attempts"]) == 1  # nothing was retried: no infra error happened


def test_parallel_defaults_to_what_serves_the_model() -> None:
    """Unless a run says, a local model gets one task at a time (one goat serve worker answers one
    call at a time and holds one conversation's prompt), Modal and cloud models and agents that call
    no model get 2; a given `parallel` is kept."""
    registry = load_registry(PROJECT / "models.yaml")
    cases = {"smollm2-135m": 1, "qwen3-4b": 2, "gpt-5-mini": 2}
    assert {registry.get(k).backend for k in cases} == {"local", "modal", "cloud"}
    for key, expected in cases.items():
        entry = registry.get(key)
        request = RunRequest(suite="smoke", model=key, registry=registry)
        assert parallel_for(request, make_agent("builtin"), entry) == expected, key
        assert parallel_for(request, make_agent("oracle"), entry) == SANDBOX_PARALLEL
        explicit = RunRequest(suite="smoke", model=key, parallel=3, registry=registry)
        assert parallel_for(explicit, make_agent("builtin"), entry) == 3
    with pytest.raises(RunError, match="--parallel"):
        RunRequest(suite="smoke", model="smollm2-135m", parallel=0)
