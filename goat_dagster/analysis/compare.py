"""Paired comparison of two runs, and ranking models by paired differences.

`compare_runs(run_a, run_b) -> Comparison` is the one entry point (`goat compare`, the leaderboard,
the regression check, the results viewer's /compare page). On the tasks both runs scored (each
task's pass fraction over its scored epochs, 0/1 with one epoch):

- the difference in pass rate B - A, with a paired 95% interval (Miller 2024: the SE of the mean of
  per-task differences, stats.paired_interval);
- an exact McNemar test on the discordant tasks (stats.mcnemar_exact), a task's outcome being the
  strict majority of its scored epochs (the `task_outcomes` view);
- the tasks that flipped each way: pass->fail (passed in A, failed in B) and fail->pass.

The runs' task outcomes (the warehouse's `task_outcomes`) are read once for every pair asked
(`ComparedRuns`: one query, a run x task matrix, pair_matrix.py), which gives each pair's counts,
exact sums and flipped tasks; the interval and the McNemar p from them, here.

A difference is *significant* (at alpha = 0.05) by the test that fits the data: with one epoch on
both sides (0/1 per task), the exact McNemar test (valid for the handful of discordant tasks a
small suite has); with several epochs, the paired interval (per-task pass fractions carry more than
a majority vote, which is all McNemar sees). Models are ranked so that one is ahead of another only
when that difference is significant: rank = 1 + the number of models significantly better (ties
share a rank), never by comparing marginal intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import duckdb
from pydantic import BaseModel, Field

from goat_dagster import config
from goat_dagster.analysis.comparability import ManifestDifferences, manifests_of
from goat_dagster.analysis.pair_matrix import OutcomeMatrix, PairNumbers
from goat_dagster.analysis.snapshot import open_snapshot, query
from goat_dagster.analysis.stats import mcnemar_exact, paired_interval

ALPHA = 0.05


class UnknownRunError(ValueError):
    """A run id asked for is not in the results lake."""


class RunInfo(BaseModel):
    run_id: str
    model: str
    suite: str
    suite_version: str | None = None
    agent: str | None = None
    epochs: int = 1
    tasks: int = 0
    scored: int = 0
    pass_rate: float | None = Field(default=None, description="the run's own pass rate (all its tasks)")

    @property
    def label(self) -> str:
        return f"{self.model} on {self.suite} ({self.run_id})"


class Comparison(BaseModel):
    """Run B against run A on the tasks both scored (see the module docstring)."""

    run_a: RunInfo
    run_b: RunInfo
    same_suite_version: bool
    shared_tasks: int = Field(description="tasks both runs scored")
    only_a: list[str] = Field(default_factory=list, description="tasks only run A scored")
    only_b: list[str] = Field(default_factory=list, description="tasks only run B scored")
    pass_rate_a: float | None = Field(default=None, description="mean pass fraction of A on the shared tasks")
    pass_rate_b: float | None = None
    difference: float | None = Field(default=None, description="pass_rate_b - pass_rate_a")
    se: float | None = Field(default=None, description="paired standard error of the difference")
    ci_low: float | None = None
    ci_high: float | None = None
    pass_to_fail: list[str] = Field(default_factory=list, description="passed in A, failed in B")
    fail_to_pass: list[str] = Field(default_factory=list, description="failed in A, passed in B")
    mcnemar_p: float = Field(default=1.0, description="exact two-sided McNemar p on the discordant tasks")
    alpha: float = ALPHA
    test: str = Field(default="mcnemar", description="what `significant` rests on: mcnemar | paired interval")
    significant: bool = Field(default=False, description="McNemar p < alpha (one epoch), else the interval")
    differences: list[dict[str, Any]] = Field(
        default_factory=list,
        description="what the runs' manifests differ in besides the model (comparability.py): field, a, b",
    )

    @property
    def comparable(self) -> bool:
        return not self.differences

    @property
    def direction(self) -> str:
        if not self.significant or self.difference is None:
            return "no significant difference"
        return "B is better" if self.difference > 0 else "B is worse"

    def summary(self) -> str:
        """One line: the difference, its interval, McNemar and the flips."""
        if self.difference is None:
            return f"no task scored by both runs ({self.run_a.run_id}, {self.run_b.run_id})"
        ci = (
            f" (95% CI {100 * self.ci_low:+.1f} to {100 * self.ci_high:+.1f})"
            if self.ci_low is not None and self.ci_high is not None
            else ""
        )
        return (
            f"B - A = {100 * self.difference:+.1f} pp{ci} on {self.shared_tasks} shared tasks; "
            f"McNemar p = {self.mcnemar_p:.3g} ({len(self.pass_to_fail)} pass→fail, "
            f"{len(self.fail_to_pass)} fail→pass): {self.direction}"
        )


def run_infos(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> dict[str, RunInfo]:
    """Each run's `RunInfo`; `UnknownRunError` for a run not in the lake."""
    info: dict[str, RunInfo] = {}
    for r in query(
        con,
        """SELECT run_id, model, suite, suite_version, agent, epochs, tasks, scored, pass_rate
           FROM run_summary WHERE list_contains(?, run_id)""",
        [list(run_ids)],
    ):
        info.setdefault(r["run_id"], RunInfo.model_validate(r))
    for run_id in run_ids:
        if run_id not in info:
            raise UnknownRunError(f"run not in the results lake: {run_id}")
    return info


class ComparedRuns:
    """What comparisons of some runs read, fetched once: each run's `RunInfo`, its manifest, and the
    runs' task outcomes as one run x task matrix (pair_matrix.py) from which every pair's numbers
    come, never the runs' rows pair by pair. The leaderboard's A/B and paired comparisons share one."""

    def __init__(self, con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(run_ids))
        self.info = run_infos(con, ids)
        self.manifests = manifests_of(con, ids)
        self.differences = ManifestDifferences(self.manifests)
        self.matrix = OutcomeMatrix.load(con, ids)
        self._numbers: dict[tuple[str, str], PairNumbers] = {}

    def numbers(self, pairs: Sequence[tuple[str, str]]) -> list[PairNumbers]:
        """Each pair's numbers (pair_matrix.py), those not made yet in one pass over the matrix."""
        todo = list(dict.fromkeys(p for p in pairs if p not in self._numbers))
        self._numbers.update(zip(todo, self.matrix.pairs(todo), strict=True))
        return [self._numbers[p] for p in pairs]

    def compare_all(self, pairs: Sequence[tuple[str, str]], alpha: float = ALPHA) -> list[Comparison]:
        """The comparison of each (run A, run B), in order."""
        return [self._comparison(numbers, alpha) for numbers in self.numbers(pairs)]

    def _comparison(self, numbers: PairNumbers, alpha: float) -> Comparison:
        a, b = self.info[numbers.run_a], self.info[numbers.run_b]
        shared = numbers.shared_tasks
        interval = paired_interval(shared, numbers.mean_d, numbers.sd_d) if shared else None  # type: ignore[arg-type]
        p2f, f2p = numbers.pass_to_fail, numbers.fail_to_pass
        p = mcnemar_exact(len(p2f), len(f2p))
        spread = interval is not None and interval.se is not None
        excludes_zero = spread and (interval.low > 0 or interval.high < 0)  # type: ignore[union-attr]
        single = a.epochs <= 1 and b.epochs <= 1
        return Comparison(
            run_a=a,
            run_b=b,
            same_suite_version=a.suite == b.suite and a.suite_version == b.suite_version,
            shared_tasks=shared,
            only_a=numbers.only_a,
            only_b=numbers.only_b,
            pass_rate_a=numbers.pass_rate_a,
            pass_rate_b=numbers.pass_rate_b,
            difference=interval.estimate if interval else None,
            se=interval.se if interval else None,
            ci_low=interval.low if interval and interval.se is not None else None,
            ci_high=interval.high if interval and interval.se is not None else None,
            pass_to_fail=p2f,
            fail_to_pass=f2p,
            mcnemar_p=p,
            alpha=alpha,
            test="mcnemar" if single else "paired interval",
            significant=bool(shared) and (p < alpha if single else bool(excludes_zero)),
            differences=[
                {"field": d.field, "a": d.a, "b": d.b} for d in self.differences(a.run_id, b.run_id)
            ],
        )


def compare_in(con: duckdb.DuckDBPyConnection, run_a: str, run_b: str, alpha: float = ALPHA) -> Comparison:
    """The comparison of two runs over an open warehouse connection (a snapshot)."""
    return ComparedRuns(con, [run_a, run_b]).compare_all([(run_a, run_b)], alpha)[0]


def compare_pairs(
    con: duckdb.DuckDBPyConnection, pairs: Sequence[tuple[str, str]], alpha: float = ALPHA
) -> list[Comparison]:
    """`compare_in` of each (run A, run B), their rows fetched once."""
    return comparisons_and_ranks(con, pairs, [], alpha)[0]


def comparisons_and_ranks(
    con: duckdb.DuckDBPyConnection,
    pairs: Sequence[tuple[str, str]],
    rows: Sequence[dict[str, Any]],
    alpha: float = ALPHA,
    runs: ComparedRuns | None = None,
) -> tuple[list[Comparison], dict[str, int], list[Comparison]]:
    """`compare_pairs(pairs)` and `paired_ranks(rows)` (what a leaderboard shows): one matrix for
    every comparison of both (`runs`, when given, must hold every run of them)."""
    ranked = _rankable(rows)
    if runs is None:
        runs = ComparedRuns(con, [run for pair in pairs for run in pair] + [r["run_id"] for r in ranked])
    ranking = _ranking_pairs(ranked)
    made = runs.compare_all([*ranking, *pairs], alpha)
    ranks, comparisons = _ranks(ranked, made[: len(ranking)])
    return made[len(ranking) :], ranks, comparisons


def compare_runs(
    run_a: str, run_b: str, paths: config.GoatPaths | None = None, alpha: float = ALPHA
) -> Comparison:
    """Run B against run A on the tasks both scored: paired difference, McNemar, flips."""
    with open_snapshot(paths) as snap:
        return compare_in(snap.con, run_a, run_b, alpha)


def paired_ranks(
    con: duckdb.DuckDBPyConnection, rows: Sequence[dict[str, Any]], alpha: float = ALPHA
) -> tuple[dict[str, int], list[Comparison]]:
    """Rank the given runs (rows of run_summary) within each suite by paired differences: rank =
    1 + the number of runs significantly better. Returns the ranks by run id and every pairwise
    comparison made (A = the run with the higher pass rate, so B - A reads "how far behind")."""
    _, ranks, comparisons = comparisons_and_ranks(con, [], rows, alpha)
    return ranks, comparisons


def _rankable(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["pass_rate"] is not None]  # a run that scored nothing has no rank


def _by_suite(rows: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The runs of each suite, best pass rate first."""
    suites: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        suites.setdefault(r["suite"], []).append(r)
    return [sorted(runs, key=lambda r: (-r["pass_rate"], r["model"])) for runs in suites.values()]


def _ranking_pairs(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """Every pair of runs of a suite, the one with the higher pass rate as A."""
    return [(a["run_id"], b["run_id"]) for runs in _by_suite(rows) for a, b in combinations(runs, 2)]


def _ranks(
    rows: Sequence[dict[str, Any]], comparisons: Sequence[Comparison]
) -> tuple[dict[str, int], list[Comparison]]:
    """rank = 1 + the runs of its suite significantly better; `comparisons` those of
    `_ranking_pairs(rows)`, in order."""
    behind = {r["run_id"]: 0 for runs in _by_suite(rows) for r in runs}
    for c in comparisons:
        if c.significant and c.difference is not None:
            behind[c.run_b.run_id if c.difference < 0 else c.run_a.run_id] += 1
    return {run_id: 1 + n for run_id, n in behind.items()}, list(comparisons)


def comparison_text(c: Comparison) -> str:
    """`goat compare` for a terminal."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    lines = [
        *(
            ["the runs differ in more than the model (A vs B; compared as asked):"]
            + [f"  {d['field']}: {d['a']} vs {d['b']}" for d in c.differences]
            if c.differences
            else []
        ),
        f"A: {c.run_a.label}: {pct(c.pass_rate_a)} on the shared tasks (run: {pct(c.run_a.pass_rate)})",
        f"B: {c.run_b.label}: {pct(c.pass_rate_b)} on the shared tasks (run: {pct(c.run_b.pass_rate)})",
        f"shared tasks: {c.shared_tasks} (scored by A only: {len(c.only_a)}, by B only: {len(c.only_b)})",
    ]
    if not c.same_suite_version:
        lines.append(
            f"warning: different suites or suite versions ({c.run_a.suite} {c.run_a.suite_version}, "
            f"{c.run_b.suite} {c.run_b.suite_version}): tasks of one id may differ"
        )
    if c.difference is None:
        lines.append("no task was scored by both runs: nothing to compare")
        return "\n".join(lines)
    ci = (
        f"95% CI {100 * c.ci_low:+.1f} to {100 * c.ci_high:+.1f} pp, paired SE {100 * c.se:.1f} pp"
        if c.ci_low is not None and c.ci_high is not None and c.se is not None
        else "no interval with one shared task"
    )
    lines += [
        f"difference B - A: {100 * c.difference:+.1f} pp ({ci})",
        f"McNemar exact on discordant tasks: {len(c.pass_to_fail)} pass→fail, {len(c.fail_to_pass)} "
        f"fail→pass, p = {c.mcnemar_p:.4g}",
        f"{c.direction} (at {c.alpha:g}, by the {c.test}"
        + (": one epoch on both sides)" if c.test == "mcnemar" else ": several epochs)"),
    ]
    for name, tasks in (("pass→fail", c.pass_to_fail), ("fail→pass", c.fail_to_pass)):
        if tasks:
            lines.append(
                f"{name}: {', '.join(tasks[:50])}"
                + (f", … ({len(tasks) - 50} more)" if len(tasks) > 50 else "")
            )
    return "\n".join(lines)


# ---- regression between a model's consecutive runs ----------------------------------------------


class Regression(BaseModel):
    """A run against the model's previous run of the same suite version and agent."""

    run_id: str | None = None
    previous_run_id: str | None = None
    comparison: Comparison | None = None
    dropped: bool = Field(default=False, description="the pass rate fell, significantly")
    description: str = ""


def previous_run_in(con: duckdb.DuckDBPyConnection, run_id: str) -> str | None:
    """The run of the same model, suite, suite version and agent that started last before `run_id`."""
    row = con.execute(
        """SELECT p.run_id FROM run_summary s
           JOIN run_summary p ON p.model = s.model AND p.suite = s.suite
               AND p.suite_version IS NOT DISTINCT FROM s.suite_version
               AND p.agent IS NOT DISTINCT FROM s.agent
               AND p.run_id != s.run_id
               AND (p.started_at, p.finished_at, p.run_id) < (s.started_at, s.finished_at, s.run_id)
           WHERE s.run_id = ?
           ORDER BY p.started_at DESC, p.finished_at DESC, p.run_id DESC LIMIT 1""",
        [run_id],
    ).fetchone()
    return row[0] if row else None


def latest_run_in(con: duckdb.DuckDBPyConnection, model: str) -> str | None:
    row = con.execute(
        """SELECT run_id FROM run_summary WHERE model = ?
           ORDER BY started_at DESC, finished_at DESC, run_id DESC LIMIT 1""",
        [model],
    ).fetchone()
    return row[0] if row else None


def regression(
    model: str, run_id: str | None = None, paths: config.GoatPaths | None = None, alpha: float = ALPHA
) -> Regression:
    """Did `run_id` (default: the model's newest run) drop significantly against the previous run
    of the same suite version and agent? (compare_in's test: McNemar with one epoch, else the paired
    interval.)"""
    with open_snapshot(paths) as snap:
        run_id = run_id or latest_run_in(snap.con, model)
        if run_id is None:
            return Regression(description=f"no run of {model} in the results lake yet")
        run_infos(snap.con, [run_id])  # an unknown run is an error, not "no regression"
        prev = previous_run_in(snap.con, run_id)
        if prev is None:
            return Regression(
                run_id=run_id,
                description=f"{run_id}: no earlier run of {model} with this suite version and agent",
            )
        c = compare_in(snap.con, prev, run_id, alpha)
    dropped = c.significant and c.difference is not None and c.difference < 0
    verdict = "significant drop" if dropped else "no significant drop"
    return Regression(
        run_id=run_id,
        previous_run_id=prev,
        comparison=c,
        dropped=dropped,
        description=f"{verdict} against {prev}: {c.summary()}",
    )
