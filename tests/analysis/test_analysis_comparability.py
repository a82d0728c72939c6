"""Honest comparisons: the leaderboard and `goat compare` say when runs differ in more than the model,
refuse a ranking across them unless asked, and count each model's latest run made with the current
prompt set and harness. Over the fixed lake (conftest), whose runs' manifests are changed here."""

from __future__ import annotations

import json
from datetime import timedelta

from click.testing import CliRunner

from goat_dagster.analysis.leaderboard import build_leaderboard
from goat_dagster.analysis.leaderboard_render import (
    details_markdown,
    leaderboard_markdown,
    render_leaderboard_text,
)
from goat_dagster.bench.manifest import HARNESS_VERSION, current_setup
from goat_dagster.cli import main
from goat_dagster.config import GoatPaths

from .conftest import fixed_results, manifest, write_manifest_file, write_parquet


def test_runs_of_one_setup_are_ranked(fixed_lake: GoatPaths) -> None:
    board = build_leaderboard(fixed_lake)
    assert board.ranked and board.mismatches == [] and board.outdated == []
    assert board.current["prompt_sha256"] == current_setup().prompt_sha256
    assert board.current["harness_version"] == HARNESS_VERSION
    assert "Not ranked" not in leaderboard_markdown(board)


def test_a_sampling_difference_refuses_the_ranking_unless_asked(fixed_lake: GoatPaths) -> None:
    hot = {"temperature": 0.7, "tool_choice": "auto", "max_tokens": 1024}
    write_manifest_file(fixed_lake, manifest("run-b1", "beta", epochs=3, sampling=hot))
    board = build_leaderboard(fixed_lake)
    assert not board.ranked
    (m,) = board.mismatches
    assert (m.suite, m.field) == ("smoke", "sampling.temperature")
    assert m.values == {"0.3": ["alpha", "gamma"], "0.7": ["beta"]}
    assert str(m) == "sampling.temperature: 0.3 (alpha, gamma); 0.7 (beta)"
    compact = leaderboard_markdown(board)
    assert compact.startswith("**Not ranked**: the runs differ in more than the model")
    assert "They differ in: sampling.temperature." in compact
    assert "- smoke: sampling.temperature: 0.3 (alpha, gamma); 0.7 (beta)" in details_markdown(board)
    assert "Not ranked: the runs differ" in render_leaderboard_text(board)
    as_json = json.loads(json.dumps(board.to_json()))
    assert as_json["ranked"] is False and as_json["mismatches"][0]["field"] == "sampling.temperature"

    allowed = build_leaderboard(fixed_lake, allow_mismatch=True)
    assert allowed.ranked and [m.field for m in allowed.mismatches] == ["sampling.temperature"]
    assert "**Ranked despite differences** (allow_mismatch)" in leaderboard_markdown(allowed)


def test_not_ranked_means_listed_by_model(fixed_lake: GoatPaths) -> None:
    """A refused ranking does not sneak back in as the order of the rows."""
    rows = [{**r, "model": "aardvark", "run_id": "run-z1"} for r in fixed_results()["run-g1"]]
    write_parquet(fixed_lake.lake_results / "run-z1.parquet", rows)  # scores nothing: last when ranked
    limits = {"agent": {"max_steps": 5}, "sandbox": {"memory_mb": 2048}}
    write_manifest_file(fixed_lake, manifest("run-z1", "aardvark", limits=limits))
    ranked = build_leaderboard(fixed_lake, allow_mismatch=True)
    assert [r["model"] for r in ranked.rows] == ["alpha", "beta", "aardvark", "gamma"]
    refused = build_leaderboard(fixed_lake)
    assert [r["model"] for r in refused.rows] == ["aardvark", "alpha", "beta", "gamma"]
    assert [str(m) for m in refused.mismatches] == [
        "limits.agent.max_steps: 5 (aardvark); 30 (alpha, beta, gamma)"
    ]


def test_the_latest_run_with_the_current_prompts_and_harness_counts(fixed_lake: GoatPaths) -> None:
    """alpha's newest run was made with other prompts, gamma's newest by an older harness, beta's
    before manifests: the board keeps each model's latest run of the current setup, and says which
    newer runs it left out, and why."""
    for run_id, model, day, fields in [
        ("run-a3", "alpha", 5, {"prompt_sha256": "f" * 64}),
        ("run-g2", "gamma", 5, {"harness_version": "0"}),
        ("run-b2", "beta", 5, None),
    ]:
        rows = [
            {**r, "run_id": run_id, "started_at": r["started_at"] + timedelta(days=day),
             "finished_at": r["finished_at"] + timedelta(days=day)}
            for r in fixed_results()[{"alpha": "run-a1", "gamma": "run-g1", "beta": "run-b1"}[model]]
        ]  # fmt: skip
        write_parquet(fixed_lake.lake_results / f"{run_id}.parquet", rows)
        if fields is not None:
            write_manifest_file(fixed_lake, manifest(run_id, model, **fields))
    board = build_leaderboard(fixed_lake)
    assert {r["model"]: r["run_id"] for r in board.rows} == {
        "alpha": "run-a2",
        "beta": "run-b1",
        "gamma": "run-g1",
    }
    why = {o["run_id"]: o["why"] for o in board.outdated}
    assert why["run-a3"] == f"prompt set ffffffffffff (now {current_setup().prompt_sha256[:12]})"
    assert why["run-g2"] == f"harness 0 (now {HARNESS_VERSION})"
    assert why["run-b2"] == "made before manifests"
    assert "3 latest run(s) left out" in leaderboard_markdown(board)
    assert "- alpha on smoke: run-a3 (prompt set ffffffffffff" in details_markdown(board)


def test_goat_compare_flags_a_sampling_difference(fixed_lake: GoatPaths) -> None:
    hot = {"temperature": 0.7, "tool_choice": "auto", "max_tokens": 1024}
    write_manifest_file(fixed_lake, manifest("run-b1", "beta", epochs=3, sampling=hot))
    runner = CliRunner()

    out = runner.invoke(main, ["compare", "run-a1", "run-b1"])
    assert out.exit_code == 1, out.output
    assert (
        "the runs differ in more than the model (A vs B):\n  sampling.temperature: 0.3 vs 0.7" in out.output
    )
    assert "not compared" in out.output and "pass→fail" not in out.output

    out = runner.invoke(main, ["compare", "run-a1", "run-b1", "--json"])
    data = json.loads(out.output)
    assert out.exit_code == 1 and data["refused"] is True and data["comparable"] is False
    assert data["differences"] == [{"field": "sampling.temperature", "a": 0.3, "b": 0.7}]

    out = runner.invoke(main, ["compare", "run-a1", "run-b1", "--allow-mismatch"])
    assert out.exit_code == 0, out.output
    assert "sampling.temperature: 0.3 vs 0.7" in out.output
    assert "compared as asked" in out.output and "2 pass→fail, 0 fail→pass" in out.output

    # two runs of one model and one setup: nothing differs; a run before manifests differs in that
    out = runner.invoke(main, ["compare", "run-a1", "run-a2"])
    assert out.exit_code == 0 and "differ in more than the model" not in out.output, out.output
    (fixed_lake.lake_runs / "run-a1.parquet").unlink()
    out = runner.invoke(main, ["compare", "run-a1", "run-a2"])
    assert out.exit_code == 1 and "manifest: none (made before manifests) vs recorded" in out.output
    out = runner.invoke(main, ["compare", "run-a1", "nope"])
    assert out.exit_code == 1 and "nope" in out.output


def test_what_served_the_model_counts_between_runs_of_one_model(fixed_lake: GoatPaths) -> None:
    write_manifest_file(fixed_lake, manifest("run-a1", "alpha", weights_sha256="1" * 64))
    out = CliRunner().invoke(main, ["compare", "run-a1", "run-a2"])
    assert out.exit_code == 1 and f"weights_sha256: {'1' * 64} vs {'0' * 64}" in out.output
    # between two models, their weights differ by nature: not a difference of the setup
    out = CliRunner().invoke(main, ["compare", "run-a1", "run-b1"])
    assert out.exit_code == 0, out.output
