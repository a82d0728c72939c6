"""The statistics against independent computations, on a seeded synthetic lake.

Four runs of 40 tasks whose difficulty is shared (so attempts of one task are correlated, which is
what the clustered standard error is for): two models with 3 epochs, two with one, some infra
errors. Each number goat reports — the `run_intervals` view (SQL), `analysis.stats` (Python) and
`compare_runs` — is checked against a computation written out here from the definitions: Miller's
clustered SE as an explicit double sum over pairs of attempts, Wilson's interval and the exact
McNemar p from scipy, the paired interval from numpy.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from goat_dagster.analysis.compare import compare_runs
from goat_dagster.analysis.snapshot import open_snapshot, query
from goat_dagster.analysis.stats import clustered, mcnemar_exact, paired, wilson
from goat_dagster.config import GoatPaths

from .conftest import manifest, result_row, write_manifest_file, write_parquet

SEED = 1313
TASKS = 40
Z = sps.norm.ppf(0.975)
RUNS = {  # run id -> (model, epochs, base pass probability)
    "syn-a": ("alpha", 3, 0.85),
    "syn-b": ("beta", 3, 0.55),
    "syn-c": ("gamma", 1, 0.75),
    "syn-d": ("delta", 1, 0.72),  # gamma's equal, but for noise
}


def synthetic(paths: GoatPaths) -> dict[str, dict[int, list[str]]]:
    """Write the lake; return run -> task -> statuses by epoch ('passed' / 'failed' / 'error')."""
    rng = random.Random(SEED)
    difficulty = [rng.random() for _ in range(TASKS)]
    outcomes: dict[str, dict[int, list[str]]] = {}
    for run_id, (model, epochs, base) in RUNS.items():
        rows, per_task = [], {}
        for t in range(1, TASKS + 1):
            p = min(0.98, max(0.02, base + 0.6 * (0.5 - difficulty[t - 1])))
            statuses = []
            for e in range(1, epochs + 1):
                status = "error" if rng.random() < 0.04 else "passed" if rng.random() < p else "failed"
                statuses.append(status)
                rows.append(
                    result_row(
                        run_id,
                        model,
                        t,
                        e,
                        status,
                        day=1,
                        wall_s=1.0,
                        error_kind="infra" if status == "error" else None,
                    )
                )
            per_task[t] = statuses
        outcomes[run_id] = per_task
        write_parquet(paths.lake_results / f"{run_id}.parquet", rows)
    return outcomes


def miller_clustered_se(per_task: dict[int, list[str]]) -> tuple[float, float]:
    """(mean, SE) straight from Miller 2024's definition: the CLT variance of the scores plus, for
    every task, the products of the residuals of each pair of its attempts (i != j)."""
    scores = {t: [1.0 if s == "passed" else 0.0 for s in st if s != "error"] for t, st in per_task.items()}
    flat = [x for xs in scores.values() for x in xs]
    n = len(flat)
    mean = sum(flat) / n
    clt = sum((x - mean) ** 2 for x in flat) / (n - 1) / n
    cross = 0.0
    for xs in scores.values():
        for i, xi in enumerate(xs):
            for j, xj in enumerate(xs):
                if i != j:
                    cross += (xi - mean) * (xj - mean)
    return mean, math.sqrt(clt + cross / n**2)


def frac(statuses: list[str]) -> float | None:
    scored = [s for s in statuses if s != "error"]
    return sum(s == "passed" for s in scored) / len(scored) if scored else None


def outcome(statuses: list[str]) -> str | None:
    scored = [s for s in statuses if s != "error"]
    if not scored:
        return None
    return "passed" if 2 * sum(s == "passed" for s in scored) > len(scored) else "failed"


@pytest.fixture
def lake(goat_paths: GoatPaths) -> tuple[GoatPaths, dict[str, dict[int, list[str]]]]:
    return goat_paths, synthetic(goat_paths)


def test_run_intervals_match_the_definitions(lake: tuple[GoatPaths, dict]) -> None:
    paths, outcomes = lake
    with open_snapshot(paths) as snap:
        views = {r["run_id"]: r for r in query(snap.con, "SELECT * FROM run_intervals")}
    for run_id, (_model, epochs, _base) in RUNS.items():
        v = views[run_id]
        statuses = [s for st in outcomes[run_id].values() for s in st]
        passed, scored = statuses.count("passed"), sum(s != "error" for s in statuses)
        assert (v["planned"], v["scored"], v["passed"]) == (TASKS * epochs, scored, passed)
        assert v["coverage"] == pytest.approx(scored / (TASKS * epochs))
        if epochs > 1:
            mean, se = miller_clustered_se(outcomes[run_id])
            assert v["ci_method"] == "clustered" and v["se"] == pytest.approx(se, rel=1e-9)
            assert (v["ci_low"], v["ci_high"]) == (pytest.approx(mean - Z * se), pytest.approx(mean + Z * se))
            per_task = [
                (st.count("passed"), sum(s != "error" for s in st)) for st in outcomes[run_id].values()
            ]
            py = clustered(per_task)
            assert py is not None and py.se == pytest.approx(se, rel=1e-9)
            # with task-correlated attempts the honest interval is wider than the naive one
            naive = math.sqrt(mean * (1 - mean) / scored)
            assert se > naive
            # errors counted as failures: the same estimator over planned attempts
            strict = {t: ["failed" if s == "error" else s for s in st] for t, st in outcomes[run_id].items()}
            ms, ses = miller_clustered_se(strict)
            assert v["strict_pass_rate"] == pytest.approx(ms)
            assert v["strict_ci_low"] == pytest.approx(ms - Z * ses)
        else:
            ci = sps.binomtest(passed, scored).proportion_ci(confidence_level=0.95, method="wilson")
            assert v["ci_method"] == "wilson" and v["se"] is None
            assert (v["ci_low"], v["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
            py = wilson(passed, scored)
            assert py is not None and (py.low, py.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
            strict_ci = sps.binomtest(passed, TASKS).proportion_ci(confidence_level=0.95, method="wilson")
            assert v["strict_ci_low"] == pytest.approx(strict_ci.low)
        assert v["strict_pass_rate"] == pytest.approx(passed / (TASKS * epochs))


@pytest.mark.parametrize(("run_a", "run_b"), [("syn-a", "syn-b"), ("syn-c", "syn-d"), ("syn-b", "syn-c")])
def test_paired_comparison_matches_the_definitions(
    lake: tuple[GoatPaths, dict], run_a: str, run_b: str
) -> None:
    paths, outcomes = lake
    c = compare_runs(run_a, run_b, paths)
    a, b = outcomes[run_a], outcomes[run_b]
    shared = [t for t in range(1, TASKS + 1) if frac(a[t]) is not None and frac(b[t]) is not None]
    d = np.array([frac(b[t]) - frac(a[t]) for t in shared])
    se = d.std(ddof=1) / math.sqrt(len(d))
    assert c.shared_tasks == len(shared) and len(c.only_a) + len(c.only_b) == sum(
        (frac(a[t]) is None) != (frac(b[t]) is None) for t in range(1, TASKS + 1)
    )
    assert c.difference == pytest.approx(d.mean()) and c.se == pytest.approx(se)
    assert (c.ci_low, c.ci_high) == (pytest.approx(d.mean() - Z * se), pytest.approx(d.mean() + Z * se))
    p2f = [f"t{t}" for t in shared if outcome(a[t]) == "passed" and outcome(b[t]) == "failed"]
    f2p = [f"t{t}" for t in shared if outcome(a[t]) == "failed" and outcome(b[t]) == "passed"]
    assert (sorted(c.pass_to_fail), sorted(c.fail_to_pass)) == (sorted(p2f), sorted(f2p))
    discordant = len(p2f) + len(f2p)
    expected_p = sps.binomtest(min(len(p2f), len(f2p)), discordant, 0.5).pvalue if discordant else 1.0
    assert c.mcnemar_p == pytest.approx(expected_p)
    several = RUNS[run_a][1] > 1 or RUNS[run_b][1] > 1
    assert c.test == ("paired interval" if several else "mcnemar")
    assert c.significant == ((c.ci_low > 0 or c.ci_high < 0) if several else expected_p < 0.05)


def test_the_synthetic_models_are_told_apart_only_when_they_differ(lake: tuple[GoatPaths, dict]) -> None:
    """alpha (85%) vs beta (55%) over 40 tasks x 3 epochs: a real, significant gap; the paired
    interval is narrower than the two marginal intervals suggest, since the tasks are shared.
    gamma vs delta (75% vs 72%, one epoch): noise, not significant."""
    paths, _ = lake
    c = compare_runs("syn-a", "syn-b", paths)
    assert c.significant and c.difference is not None and c.difference < 0
    noise = compare_runs("syn-c", "syn-d", paths)
    assert not noise.significant and noise.test == "mcnemar" and noise.mcnemar_p > 0.05
    with open_snapshot(paths) as snap:
        v = {r["run_id"]: r for r in query(snap.con, "SELECT * FROM run_intervals")}
    marginal = math.hypot(v["syn-a"]["se"], v["syn-b"]["se"])
    assert c.se is not None and c.se < marginal


def test_stats_edge_cases() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32) == pytest.approx(sps.binomtest(0, 5, 0.5).pvalue)
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(1, 9) == pytest.approx(sps.binomtest(1, 10, 0.5).pvalue)
    assert wilson(0, 0) is None and clustered([(1, 1)]) is None
    one = paired([0.5])
    assert one is not None and (one.estimate, one.se) == (0.5, None)
    assert paired([]) is None
    # one epoch per task: the clustered SE is the plain binomial one (no pair of attempts shares a task)
    per_task = [(1, 1)] * 7 + [(0, 1)] * 3
    ci = clustered(per_task)
    assert ci is not None and ci.se == pytest.approx(math.sqrt(0.7 * 0.3 / 9))  # sample s.d. / sqrt(n)


def test_goat_compare_and_task_health_commands(lake: tuple[GoatPaths, dict], tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    paths, _ = lake
    for run_id in ("syn-a", "syn-b"):  # made with one setup: comparable (a run without one is not)
        write_manifest_file(paths, manifest(run_id, RUNS[run_id][0], epochs=RUNS[run_id][1]))
    env = {**os.environ, "GOAT_HOME": str(paths.home)}
    goat = [str(Path(sys.executable).parent / "goat")]
    out = subprocess.run(
        [*goat, "compare", "syn-a", "syn-b", "--json"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    c = compare_runs("syn-a", "syn-b", paths)
    assert data == {**json.loads(c.model_dump_json()), "comparable": True, "refused": False}
    text = subprocess.run(
        [*goat, "compare", "syn-a", "syn-b"], capture_output=True, text=True, env=env
    ).stdout
    assert f"difference B - A: {100 * c.difference:+.1f} pp" in text and "B is worse" in text
    bad = subprocess.run([*goat, "compare", "syn-a", "nope"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "run not in the results lake: nope" in bad.stderr
    health = subprocess.run(
        [*goat, "results", "--task-health", "--json"], capture_output=True, text=True, env=env
    )
    rows = json.loads(health.stdout)["task_health"]
    assert len(rows) == TASKS and any("flaky" in r["flags"] for r in rows)
