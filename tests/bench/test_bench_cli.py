"""`goat run` and `goat results` as a user runs them (the real CLI in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

from goat_dagster.bench.journal import RunSpec
from goat_dagster.bench.lake import ResultRow
from goat_dagster.bench.progress import ProgressBar
from goat_dagster.bench.run_request import Progress
from tests.conftest import PROJECT

RUN_KEYS = ["run_id", "model", "suite", "n", "passed", "failed", "errors", "pass_rate", "wall_s", "cost_usd"]


def goat(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "GOAT_HOME": str(home), "GOAT_PROJECT_DIR": str(PROJECT), **(env or {})}
    res = subprocess.run(
        [sys.executable, "-m", "goat_dagster.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in res.stderr, (args, res.stderr)  # every command: a message, never a traceback
    return res


def test_run_and_results(goat_home: Path) -> None:
    res = goat(goat_home, "run", "--suite", "smoke", "--model", "smollm2-135m", "--agent", "oracle", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert list(summary)[: len(RUN_KEYS)] == RUN_KEYS  # DESIGN §8, in that order
    assert (summary["n"], summary["passed"], summary["pass_rate"]) == (5, 5, 1.0)
    assert summary["isolation"] == "bwrap"
    # no progress bar when stderr is not a terminal
    assert "smollm2-135m · smoke" not in res.stderr and "pass=" not in res.stderr and "\r" not in res.stderr

    text = goat(goat_home, "run", "-s", "smoke", "-m", "smollm2-135m", "--agent", "oracle", "--epochs", "2")
    assert text.returncode == 0, text.stderr
    assert "10/10 scored tasks passed (100.0%)" in text.stdout
    # the DuckDB views people query themselves are there after a plain `goat run`, over both runs
    with duckdb.connect(str(goat_home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM results").fetchone() == (15,)
        assert con.execute("SELECT count(*) FROM run_summary").fetchone() == (2,)

    listing = json.loads(goat(goat_home, "results", "--json").stdout)
    assert len(listing["runs"]) == 2
    for r in listing["runs"]:
        assert set(RUN_KEYS) <= set(r)
    one = json.loads(goat(goat_home, "results", summary["run_id"], "--full", "--json").stdout)
    assert one["run"]["run_id"] == summary["run_id"] and one["run"]["passed"] == 5
    assert len(one["rows"]) == 5 and set(one["rows"][0]) == set(ResultRow.model_fields)
    table = goat(goat_home, "results", summary["run_id"], "--full")
    assert "reverse-string" in table.stdout and "passed" in table.stdout
    assert summary["run_id"] in goat(goat_home, "results").stdout


def test_clear_errors(goat_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntasks:\n  - id: x\n    check: true\n")
    res = goat(goat_home, "run", "--suite", str(bad), "--model", "smollm2-135m", "--agent", "oracle")
    assert res.returncode == 1
    assert f"{bad}:3: tasks[x].instruction: required field is missing" in res.stderr
    res = goat(goat_home, "run", "--suite", "smoke", "--model", "no-such-model", "--agent", "oracle")
    assert res.returncode == 1 and "model 'no-such-model' is not in" in res.stderr
    res = goat(goat_home, "run", "--suite", "smoke", "--model", "smollm2-135m", "--agent", "magic")
    assert res.returncode == 1 and "unknown agent 'magic'" in res.stderr
    res = goat(goat_home, "results", "nope")
    assert res.returncode == 1 and "no run 'nope'" in res.stderr


def test_progress_bar_on_a_terminal(capsys) -> None:
    bar = ProgressBar(enabled=True)
    spec = RunSpec(
        run_id="r", suite="smoke", suite_version="v", model="m", agent="oracle", sandbox="local", epochs=1
    )
    bar.start(spec, pending=2, total=2)
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    row = ResultRow(
        run_id="r",
        suite="smoke",
        suite_version="v",
        model="m",
        agent="oracle",
        sandbox="local",
        task_id="t",
        epoch=1,
        status="passed",
        started_at=now,
        finished_at=now,
        wall_s=0.1,
    )
    bar.task(row, Progress(done=1, total=2, passed=1, failed=0, errors=0, cost_usd=0.0))
    bar.close()
    err = capsys.readouterr().err
    assert "m · smoke" in err and "1/2" in err and "pass=1" in err


def test_text_reports_do_not_depend_on_the_cli(goat_home: Path) -> None:
    """`goat results` and the leaderboard text render tables without importing the CLI module."""
    code = (
        "import sys\n"
        "from goat_dagster.analysis.run_reports import results_view\n"
        "from goat_dagster.analysis.leaderboard import Leaderboard\n"
        "from goat_dagster.analysis.leaderboard_render import render_leaderboard_text\n"
        "print(results_view(None, False)[1])\n"
        "print(render_leaderboard_text(Leaderboard(rows=[], tasks=[], selection='none')))\n"
        "print('goat_dagster.cli' in sys.modules)\n"
    )
    env = {**os.environ, "GOAT_HOME": str(goat_home), "GOAT_PROJECT_DIR": str(PROJECT)}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "no runs yet" in res.stdout and "No benchmark results" in res.stdout
    assert res.stdout.splitlines()[-1] == "False"
