"""Leaderboard numbers from the fixed lake (tests/analysis/conftest.py), checked against arithmetic done
by hand here, written out step by step."""

from __future__ import annotations

import gc
import json
import math
import struct

import pytest

from goat_dagster.analysis.chart import image_markdown, render_chart
from goat_dagster.analysis.leaderboard import (
    LEADERBOARD_OBJECTS,
    SELECTION_LATEST,
    UnknownRunError,
    build_leaderboard,
)
from goat_dagster.analysis.leaderboard_render import (
    comparison_markdown,
    details_markdown,
    leaderboard_markdown,
    matrix_markdown,
    render_leaderboard_text,
)
from goat_dagster.analysis.snapshot import open_snapshot, query
from goat_dagster.config import GoatPaths

from .conftest import fixed_traces, write_parquet

Z = 1.959963984540054  # standard normal 97.5% quantile


def wilson(x: int, n: int) -> tuple[float, float]:
    """Wilson score interval, written out: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = x / n
    centre = p + Z * Z / (2 * n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    denom = 1 + Z * Z / n
    return (centre - half) / denom, (centre + half) / denom


def by_model(board) -> dict[str, dict]:
    return {r["model"]: r for r in board.rows}


def test_leaderboard_numbers_match_hand_computation(fixed_lake: GoatPaths) -> None:
    board = build_leaderboard(fixed_lake)
    assert board.selection == SELECTION_LATEST
    assert board.runs_in_lake == 4
    assert board.result_rows == 5 + 5 + 15 + 5
    assert board.trace_rows == 8
    assert [r["model"] for r in board.rows] == ["alpha", "beta", "gamma"]  # 50% > 42.9% > no score
    rows = by_model(board)

    # alpha: the latest run is run-a2 (day 2), not run-a1 (day 1).
    a = rows["alpha"]
    assert a["run_id"] == "run-a2"
    # t1 P, t2 F, t3 P, t4 F, t5 infra error -> the error is counted apart, never as a failure.
    assert (a["tasks"], a["passed"], a["failed"], a["errors"], a["errors_infra"]) == (5, 2, 2, 1, 1)
    assert a["scored"] == 4
    assert a["pass_rate"] == 2 / 4
    # Wilson for 2/4: p = .5, z²/2n = 3.8415/8 = .48018, centre = .98018;
    # half = 1.96·sqrt(.25/4 + 3.8415/64) = 1.96·sqrt(.0625 + .060023) = 1.96·.35003 = .68605;
    # denom = 1 + 3.8415/4 = 1.96036 -> (.98018 ± .68605) / 1.96036 = [.15004, .84996]
    low, high = wilson(2, 4)
    assert low == pytest.approx(0.15004, abs=1e-5) and high == pytest.approx(0.84996, abs=1e-5)
    assert a["ci_low"] == pytest.approx(low, rel=1e-12) and a["ci_high"] == pytest.approx(high, rel=1e-12)
    assert a["k"] is None and a["pass_at_k"] is None  # one epoch: no pass@k
    # cost: .01 + .02 + .03 + .04 + .005 (the errored attempt was paid for too) = .105; 2 solved -> .0525
    assert a["cost_usd"] == pytest.approx(0.105)
    assert a["cost_per_solved"] == pytest.approx(0.0525)
    # per-task latency over scored attempts 10, 20, 30, 40 (the 5 s error is not a task latency):
    # p50 = (20 + 30) / 2 = 25; p95 at position .95·3 = 2.85 -> 30 + .85·(40 - 30) = 38.5
    assert a["task_p50_s"] == pytest.approx(25.0) and a["task_p95_s"] == pytest.approx(38.5)
    # per-call latency from traces: c1 1, c2 2, c3 3 (end - start), c4 4 (sink and Langfuse: once),
    # c5 5 (no run_id, found by trace_id), c6 10 (error); c7 belongs to another run.
    # sorted 1 2 3 4 5 10: p50 = (3 + 4) / 2 = 3.5; p95 at .95·5 = 4.75 -> 5 + .75·(10 - 5) = 8.75
    assert (a["calls"], a["call_errors"]) == (6, 1)
    assert a["call_p50_s"] == pytest.approx(3.5) and a["call_p95_s"] == pytest.approx(8.75)
    # tokens: 100 + 200 + 300 + 400 + 50 = 1050 in, a tenth of that out
    assert (a["prompt_tokens"], a["completion_tokens"]) == (1050, 105)

    # beta: 3 epochs. t1 PPP, t2 PFF, t3 FFF, t4 PF+timeout, t5 FFP
    b = rows["beta"]
    # passed 3+1+0+1+1 = 6, failed 0+2+3+1+2 = 8, one timeout error -> scored 14
    assert (b["epochs"], b["passed"], b["failed"], b["errors"], b["errors_timeout"]) == (3, 6, 8, 1, 1)
    assert b["pass_rate"] == pytest.approx(6 / 14)
    # 3 epochs: the task-clustered interval (Miller 2024), not Wilson (6/14 would give [.21381, .67409]).
    # m = 6/14; residuals e = 1 - m = 8/14 (pass) or -6/14 (fail): sum e^2 = (6·64 + 8·36)/196 = 672/196;
    # per-task sums of e: t1 24/14, t2 -4/14, t3 -18/14, t4 2/14, t5 -4/14, squares (576+16+324+4+16)/196
    # = 936/196, so the within-task cross terms sum to (936 - 672)/196 = 264/196;
    # SE^2 = 672/196 / (14·13) + 264/196 / 14^2 = .0257104, SE = .1603448 -> .4285714 ± 1.959964·SE
    se = math.sqrt(672 / 196 / (14 * 13) + 264 / 196 / 14**2)
    assert (b["ci_method"], b["se"]) == ("clustered", pytest.approx(se, rel=1e-12))
    assert se == pytest.approx(0.1603448, abs=1e-7)
    assert b["ci_low"] == pytest.approx(6 / 14 - Z * se, rel=1e-12)
    assert b["ci_high"] == pytest.approx(6 / 14 + Z * se, rel=1e-12)
    assert (b["planned"], b["coverage"]) == (15, pytest.approx(14 / 15))
    assert b["strict_pass_rate"] == pytest.approx(6 / 15)  # the timeout counted as a failure
    # pass@3 = mean over tasks with n >= 3 scored samples of 1 - C(n-c, 3) / C(n, 3):
    # t1 n3 c3: C(0,3) = 0 -> 1;  t2 n3 c1: C(2,3) = 0 -> 1;  t3 n3 c0: 1 - C(3,3)/C(3,3) = 0;
    # t5 n3 c1: C(2,3) = 0 -> 1;  t4 has n = 2 < 3 and is left out -> (1 + 1 + 0 + 1) / 4 = .75
    assert (b["k"], b["pass_at_k_tasks"]) == (3, 4)
    assert b["pass_at_k"] == pytest.approx(0.75)
    assert (b["cost_usd"], b["cost_per_solved"]) == (0.0, 0.0)  # a local model costs nothing
    # wall_s = 10·task + epoch; scored: 10 11 12 20 21 22 30 31 32 40 41 50 51 52 (t4's error, 42, is out)
    # p50 at 6.5 -> (30 + 31) / 2 = 30.5; p95 at .95·13 = 12.35 -> 51 + .35·(52 - 51) = 51.35
    assert b["task_p50_s"] == pytest.approx(30.5) and b["task_p95_s"] == pytest.approx(51.35)
    assert (b["calls"], b["call_p50_s"], b["call_p95_s"]) == (0, None, None)  # no traces for this run

    # gamma: nothing scored -> no rate, no interval, no cost per solved; all five errors are infra.
    g = rows["gamma"]
    assert (g["scored"], g["errors"], g["errors_infra"]) == (0, 5, 5)
    assert (g["pass_rate"], g["ci_low"], g["ci_high"], g["cost_per_solved"]) == (None, None, None, None)


def test_pass_at_any_k_uses_the_unbiased_estimator(fixed_lake: GoatPaths) -> None:
    with open_snapshot(fixed_lake) as snap:
        (row,) = query(snap.con, "SELECT * FROM pass_at(2) WHERE run_id = 'run-b1'")
        # pass@2 = 1 - C(n-c, 2) / C(n, 2) per task:
        # t1 n3 c3: 1;  t2 n3 c1: 1 - C(2,2)/C(3,2) = 1 - 1/3 = 2/3;  t3 n3 c0: 0;
        # t4 n2 c1: C(1,2) = 0 -> 1;  t5 n3 c1: 2/3  -> (1 + 2/3 + 0 + 1 + 2/3) / 5 = 2/3
        assert (row["k"], row["tasks"]) == (2, 5)
        assert row["pass_at_k"] == pytest.approx(2 / 3, rel=1e-12)
        # the scalar macro, against the closed form for n = 10, c = 3, k = 5: 1 - C(7,5)/C(10,5) = 1 - 21/252
        (value,) = snap.con.execute("SELECT pass_at_k(10, 3, 5)").fetchone()
        assert value == pytest.approx(1 - math.comb(7, 5) / math.comb(10, 5), rel=1e-12)
        assert snap.con.execute("SELECT pass_at_k(2, 1, 3)").fetchone() == (None,)  # n < k: undefined


def test_task_matrix_and_markdown(fixed_lake: GoatPaths) -> None:
    board = build_leaderboard(fixed_lake)
    cells = {(t["task_id"], t["model"]): t["cell"] for t in board.tasks}
    assert {t["run_id"] for t in board.tasks} == {"run-a2", "run-b1", "run-g1"}  # latest runs only
    assert [cells[(f"t{i}", "alpha")] for i in range(1, 6)] == ["✓", "✗", "✓", "✗", "E:infra"]
    assert [cells[(f"t{i}", "beta")] for i in range(1, 6)] == ["3/3", "1/3", "0/3", "1/2 E:1", "1/3"]
    outcome = {(t["task_id"], t["model"]): t["outcome"] for t in board.tasks}
    # majority of scored epochs: t1 3/3 passed; t2 1/3, t4 1/2 (not a strict majority) failed
    assert (outcome[("t1", "beta")], outcome[("t2", "beta")], outcome[("t4", "beta")]) == (
        "passed",
        "failed",
        "failed",
    )
    assert outcome[("t1", "gamma")] == "error"

    # errors as failures: alpha 2 of 5 planned -> Wilson(2, 5) from .1176; beta 6 of 15 planned, clustered
    assert wilson(2, 5)[0] == pytest.approx(0.11762, abs=1e-5)
    md = leaderboard_markdown(board)
    assert md.splitlines()[:5] == [
        "| rank | model | pass@1 | 95% CI | passed | scored/planned | errors as failures | $/solved |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        "| 1 | alpha | 50.0% | 15.0-85.0 | 2/4 | 4/5 | ≥11.8% | $0.0525 |",
        "| 1 | beta | 42.9% | 11.4-74.3 | 6/14 | 14/15 | ≥10.6% | $0 |",
        "| - | gamma | - | - | 0/0 | 0/5 | ≥0.0% | - |",
    ]
    details = details_markdown(board)
    assert (
        "| 1 | beta | smoke | run-b1 | 5 | 3 | 14 | 6 | 8 | 1 (timeout 1) | 42.9% | 11.4-74.3 | clustered "
        "| 14/15 | ≥10.6% | pass@3 75.0% (4/5 tasks) | $0 | $0 | 0 | - | 30.50 / 51.35 | 150 / 15 |"
    ) in details
    assert "| 6 | 3.50 / 8.75 | 25.00 / 38.50 | 1050 / 105 |" in details
    matrix = matrix_markdown(board)
    assert "| t4 | ✗ | 1/2 E:1 | E:infra |" in matrix
    assert "| **passed** | 2/4 | 6/14 | 0/0 |" in matrix
    text = render_leaderboard_text(board)
    assert text.splitlines()[0].split()[:3] == ["RANK", "MODEL", "SUITE"]
    assert "pass→fail 1, fail→pass 1" in text


def test_the_boards_matrix_is_the_task_matrix_view(fixed_lake: GoatPaths) -> None:
    """The board makes its per-task matrix from the task outcomes its comparisons read
    (`TaskMatrix.of_runs`): the same rows, in the same order, as the warehouse's `task_matrix`
    view (and, for chosen runs, as `task_outcomes` of those runs), columns and values alike."""
    for run_ids, sql in (
        (None, "SELECT * FROM task_matrix"),
        (["run-a1", "run-b1"], "SELECT * FROM task_outcomes WHERE run_id IN ('run-a1', 'run-b1') "
         "ORDER BY suite, task_id, model"),
    ):  # fmt: skip
        board = build_leaderboard(fixed_lake, run_ids=run_ids)
        with open_snapshot(fixed_lake) as snap:
            expected = query(snap.con, sql)
        assert expected and list(board.tasks) == expected
        assert list(board.tasks.rows()[0]) == list(expected[0])  # the columns in the view's order


def test_ab_comparison_of_two_runs(fixed_lake: GoatPaths) -> None:
    # default: each ranked run against the previous run of its (model, suite): only alpha has one
    board = build_leaderboard(fixed_lake)
    (cmp,) = board.comparisons
    assert (cmp.run_a, cmp.run_b) == ("run-a1", "run-a2")
    # a1: P P F F P   a2: P F P F E  -> t2 pass→fail, t3 fail→pass, t1 and t4 unchanged, t5 not comparable
    assert cmp.counts == {"pass→fail": 1, "fail→pass": 1, "unchanged": 2, "not comparable": 1}
    assert {r["task_id"]: r["change"] for r in cmp.flipped} == {"t2": "pass→fail", "t3": "fail→pass"}
    as_json = json.loads(json.dumps(board.to_json()))  # what `--json` prints
    assert as_json["comparisons"][0]["counts"]["pass→fail"] == 1
    assert as_json["leaderboard"][0]["started_at"].startswith("2026-01-02T10:01:40")
    assert comparison_markdown(board.comparisons) == (
        "- **A**: alpha on smoke (run-a1)\n- **B**: alpha on smoke (run-a2)\n"
        "- pass→fail: 1 (t2)\n- fail→pass: 1 (t3)\n- unchanged: 2, not comparable: 1"
    )

    # explicit: across models. a1 P P F F P vs b1 (majority) P F F F F -> t2 and t5 pass→fail
    board = build_leaderboard(fixed_lake, compare=("run-a1", "run-b1"))
    (cmp,) = board.comparisons
    assert cmp.counts == {"pass→fail": 2, "fail→pass": 0, "unchanged": 3, "not comparable": 0}
    with pytest.raises(UnknownRunError, match="no-such-run"):
        build_leaderboard(fixed_lake, compare=("run-a1", "no-such-run"))


def test_chosen_runs_instead_of_latest(fixed_lake: GoatPaths) -> None:
    board = build_leaderboard(fixed_lake, run_ids=["run-a1", "run-b1"])
    assert board.selection == "runs run-a1, run-b1"
    # a1: 3 passed of 5 scored = 60%, ahead of beta's 6/14
    assert [(r["run_id"], r["passed"], r["scored"]) for r in board.rows] == [
        ("run-a1", 3, 5),
        ("run-b1", 6, 14),
    ]
    assert {t["run_id"] for t in board.tasks} == {"run-a1", "run-b1"}
    assert board.comparisons == []  # a1 is alpha's first run; b1 beta's only one
    with pytest.raises(UnknownRunError, match="nope"):
        build_leaderboard(fixed_lake, run_ids=["run-a1", "nope"])


def test_results_without_traces(results_only_lake: GoatPaths) -> None:
    board = build_leaderboard(results_only_lake)
    assert board.trace_rows == 0
    a = by_model(board)["alpha"]
    # everything from results is there; per-call latency is simply unknown
    assert (a["passed"], a["scored"], a["task_p50_s"], a["cost_per_solved"]) == (
        2,
        4,
        25.0,
        pytest.approx(0.0525),
    )
    assert (a["calls"], a["call_p50_s"], a["call_p95_s"]) == (0, None, None)
    assert "| 50.0% | 15.0-85.0 | wilson | 4/5 | ≥11.8% | - | $0.105 | $0.0525 | 0 | - | 25.00 / 38.50 |" in (
        details_markdown(board)
    )


def test_empty_lake(goat_paths: GoatPaths) -> None:
    board = build_leaderboard(goat_paths)  # GOAT_HOME without even a lake directory
    assert (board.rows, board.tasks, board.comparisons, board.runs_in_lake) == ([], [], [], 0)
    assert leaderboard_markdown(board) == "_No benchmark results in the lake yet._"
    assert matrix_markdown(board) == "_No task results yet._"
    assert render_leaderboard_text(board) == "No benchmark results in the lake yet."
    goat_paths.lake_results.mkdir(parents=True)
    goat_paths.lake_traces.mkdir(parents=True)
    assert build_leaderboard(goat_paths).rows == []  # empty directories too


def test_partial_file_is_skipped_not_fatal(fixed_lake: GoatPaths) -> None:
    # a run still writing its file (no footer yet) must not break the analysis of the others
    (fixed_lake.lake_results / "run-in-progress.parquet").write_bytes(b"PAR1\x00\x01 half a file")
    board = build_leaderboard(fixed_lake)
    assert len(board.skipped_files) == 1 and "run-in-progress.parquet" in board.skipped_files[0]
    assert board.runs_in_lake == 4 and by_model(board)["alpha"]["passed"] == 2


def test_chart_is_a_png(fixed_lake: GoatPaths) -> None:
    board = build_leaderboard(fixed_lake)
    path = render_chart(board.rows, fixed_lake.lake / "leaderboard" / "leaderboard.png")
    assert path is not None
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 800 and height >= 250
    assert image_markdown(path, "chart").startswith("![chart](data:image/png;base64,iVBORw0KGgo")
    assert render_chart([], path) is None


def test_chart_of_a_model_that_solved_nothing(goat_paths: GoatPaths) -> None:
    """0/5: Wilson's lower bound is 0 up to float noise (~3e-17), which must not become a negative
    error bar (matplotlib refuses those)."""
    from .conftest import manifest, result_row, write_manifest_file, write_parquet

    rows = [result_row("run-zero", "tiny", t, 1, "failed", day=0, wall_s=5.0) for t in range(5)]
    write_parquet(goat_paths.lake_results / "run-zero.parquet", rows)
    write_manifest_file(goat_paths, manifest("run-zero", "tiny"))  # the leaderboard counts it
    board = build_leaderboard(goat_paths)
    assert board.rows[0]["passed"] == 0 and board.rows[0]["ci_low"] < 1e-9
    path = render_chart(board.rows, goat_paths.lake / "leaderboard" / "zero.png")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"


def test_a_lake_without_trace_files_ranks_the_same(results_only_lake: GoatPaths) -> None:
    """With no trace file the snapshot's `calls` does not look traces up in the results (no scan of
    every results file); the board is the one of the same lake with a trace file whose calls are
    all another run's (there the lookup runs, a call without its run_id included)."""
    without = build_leaderboard(results_only_lake)
    elsewhere = [{**t, "run_id": "run-elsewhere", "trace_id": "tr-x"} for t in fixed_traces()]
    elsewhere[0]["run_id"] = None  # looked up in the results: not found there
    write_parquet(results_only_lake.lake_traces / "run-elsewhere.parquet", elsewhere)
    with_traces = build_leaderboard(results_only_lake)
    assert with_traces.trace_rows == len(elsewhere) and without.trace_rows == 0
    assert {**with_traces.to_json(), "trace_rows": 0} == without.to_json()
    assert details_markdown(with_traces) == details_markdown(without)
    assert matrix_markdown(with_traces) == matrix_markdown(without)
    with open_snapshot(results_only_lake, traces=False, objects=LEADERBOARD_OBJECTS) as snap:
        assert "results" not in {
            name for (name,) in snap.con.execute("SELECT view_name FROM duckdb_views()").fetchall()
        }, "nothing the snapshot defines reads the results' rows"


def test_the_build_leaves_the_garbage_collector_as_it_found_it(fixed_lake: GoatPaths) -> None:
    assert gc.isenabled()
    build_leaderboard(fixed_lake)
    assert gc.isenabled()
    gc.disable()
    try:
        build_leaderboard(fixed_lake)
        assert not gc.isenabled()
    finally:
        gc.enable()


def _views(paths: GoatPaths) -> set[str]:
    with open_snapshot(paths, objects=LEADERBOARD_OBJECTS) as snap:
        return {name for (name,) in snap.con.execute("SELECT view_name FROM duckdb_views()").fetchall()}


def test_traces_that_all_name_their_run_are_not_looked_up(fixed_lake: GoatPaths) -> None:
    """A call without its run_id (c5) is found through its trace_id in the results; once every trace
    names its run the results are not read for it, and the numbers are the same."""
    looked_up = build_leaderboard(fixed_lake)
    assert "results" in _views(fixed_lake)
    named = [{**t, "run_id": t["run_id"] or "run-a2"} for t in fixed_traces()]
    write_parquet(fixed_lake.lake_traces / "run-a2.parquet", named)
    assert "results" not in _views(fixed_lake)
    board = build_leaderboard(fixed_lake)
    assert by_model(board)["alpha"]["calls"] == by_model(looked_up)["alpha"]["calls"] > 0
    assert board.to_json() == looked_up.to_json()
    assert details_markdown(board) == details_markdown(looked_up)
