"""The leaderboard across models, the per-task matrix and A/B comparisons of runs, from the warehouse SQL.

Entry point: `build_leaderboard()` reads the lake in an in-memory snapshot (see warehouse.py for the
definitions of every number) and returns a `Leaderboard`; leaderboard_render.py renders it (markdown
for the Dagster UI, text for a terminal).

Which run counts for a model: by default the latest run per (model, suite) among the runs made with
the current prompt set, harness and grader (latest start, then latest finish, then greatest run_id:
the `leaderboard` view); the latest runs it leaves out are listed (`outdated`). Pass `run_ids` to
rank chosen runs instead. Runs of a suite are ranked only when their manifests agree on everything
but the model (comparability.py); otherwise they are listed by model, not ranked, with what
differs (`mismatches`), unless `allow_mismatch`.
Comparisons: by default each ranked run against the previous run of the same (model, suite), when
there is one; pass `compare=(run_a, run_b)` for any two runs. Each says what else differed.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import duckdb

from goat_dagster import config
from goat_dagster.analysis.comparability import Mismatch, board_mismatches, outdated_runs
from goat_dagster.analysis.compare import (
    ComparedRuns,
    Comparison,
    UnknownRunError,
    comparisons_and_ranks,
)
from goat_dagster.analysis.pair_matrix import FLIPS, ABRows
from goat_dagster.analysis.snapshot import LakeSnapshot, open_snapshot, query
from goat_dagster.analysis.task_health import TaskHealth, task_health_in
from goat_dagster.analysis.task_matrix import TaskMatrix
from goat_dagster.bench.manifest import Difference

SELECTION_LATEST = "latest run per (model, suite) with the current prompt set and harness"
# what `build_leaderboard` reads of its snapshot (and, defined with them, what they read)
LEADERBOARD_OBJECTS = (
    "leaderboard",
    "run_summary",
    "task_outcomes",
    "current_setup",
    "traces",
    "run_manifests",
    "ab_change",
    "task_health",
)


@dataclass(frozen=True)
class RunComparison:
    """Per-task A/B of two runs: `rows` as `ab_compare(run_a, run_b)` has them (every task; in a
    leaderboard only the flipped ones, all it shows of them; made when first read), `counts` per
    change."""

    run_a: str
    run_b: str
    label_a: str
    label_b: str
    tasks: ABRows  # the rows' tasks and changes
    counts: dict[str, int]
    differences: list[Difference] = field(default_factory=list)  # besides the model (manifests)

    @functools.cached_property
    def rows(self) -> list[dict[str, Any]]:
        return self.tasks.rows()

    @property
    def flipped(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["change"] in FLIPS]

    def changes(self) -> list[tuple[str, str]]:
        """(task id, change) of each row, in order, without making the rows."""
        return self.tasks.changes()

    @property
    def comparable(self) -> bool:
        return not self.differences

    def to_json(self, *, refused: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "label_a": self.label_a,
            "label_b": self.label_b,
            "comparable": self.comparable,
            "differences": [{"field": d.field, "a": d.a, "b": d.b} for d in self.differences],
            "refused": refused,
        }
        if not refused:
            out.update(counts=self.counts, flipped=self.flipped)
        return out


@dataclass(frozen=True)
class Leaderboard:
    """Rows of `run_summary` for the ranked runs (best pass rate first within a suite), their
    `task_outcomes`, and how the runs were chosen."""

    rows: list[dict[str, Any]]
    tasks: TaskMatrix  # the task_outcomes rows of the ranked runs, as dicts when read
    selection: str
    result_rows: int = 0
    trace_rows: int = 0
    runs_in_lake: int = 0
    skipped_files: list[str] = field(default_factory=list)
    comparisons: list[RunComparison] = field(default_factory=list)
    ranked: bool = True  # False: the runs differ in more than the model; listed by model instead
    mismatches: list[Mismatch] = field(default_factory=list)
    outdated: list[dict[str, Any]] = field(default_factory=list)  # latest runs left out, and why
    current: dict[str, Any] = field(default_factory=dict)  # the setup runs are chosen by
    paired_ab: list[Comparison] = field(default_factory=list)  # the A/B comparisons' paired statistics
    ranks: dict[str, int] = field(default_factory=dict)  # run id -> rank by paired differences
    paired: list[Comparison] = field(default_factory=list)  # every pair of ranked runs of a suite
    health: list[TaskHealth] = field(default_factory=list)

    @property
    def suites(self) -> list[str]:
        return sorted({r["suite"] for r in self.rows})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO strings) for `--json` output."""

        def clean(row: dict[str, Any]) -> dict[str, Any]:
            return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}

        return {
            "selection": self.selection,
            "result_rows": self.result_rows,
            "trace_rows": self.trace_rows,
            "runs_in_lake": self.runs_in_lake,
            "skipped_files": self.skipped_files,
            "current_setup": self.current,
            "ranked": self.ranked,
            "mismatches": [m.as_dict() for m in self.mismatches],
            "outdated": self.outdated,
            "leaderboard": [clean(r) for r in self.rows],
            "tasks": [clean(r) for r in self.tasks],
            "comparisons": [
                c.to_json() | ({"paired": p.model_dump(mode="json")} if p is not None else {})
                for c, p in zip(self.comparisons, self._paired_ab(), strict=True)
            ],
            "ranks": self.ranks,
            "paired_comparisons": [c.model_dump(mode="json") for c in self.paired],
            "task_health": [h.model_dump(mode="json") for h in self.health if h.flags],
        }

    def _paired_ab(self) -> list[Comparison | None]:
        by_pair = {(c.run_a.run_id, c.run_b.run_id): c for c in self.paired_ab}
        return [by_pair.get((c.run_a, c.run_b)) for c in self.comparisons]


def _order(rows: list[dict[str, Any]], ranks: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """By suite, then rank by paired differences (when known), then pass rate."""

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        rank = (ranks or {}).get(r["run_id"])
        unranked = rank is None and bool(ranks)
        return (
            r["suite"],
            unranked,
            rank or 0,
            r["pass_rate"] is None,
            -(r["pass_rate"] or 0.0),
            r["model"],
            r["run_id"],
        )

    return sorted(rows, key=key)


def _by_model(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["suite"], r["model"], r["run_id"]))


def compute_leaderboard(
    snapshot: LakeSnapshot,
    run_ids: Sequence[str] | None = None,
    *,
    allow_mismatch: bool = False,
    with_tasks: bool = True,
) -> Leaderboard:
    """The leaderboard of one snapshot: the `leaderboard` view, or the given runs of `run_summary`;
    ranked only when the runs of each suite differ in nothing but the model, or `allow_mismatch`.
    `with_tasks`: read the runs' per-task matrix too (else it is left empty: `build_leaderboard`
    makes it from the rows its comparisons read)."""
    con = snapshot.con
    if run_ids:
        ids = list(dict.fromkeys(run_ids))
        rows = query(con, "SELECT * EXCLUDE (recency) FROM run_summary WHERE list_contains(?, run_id)", [ids])
        missing = sorted(set(ids) - {r["run_id"] for r in rows})
        if missing:
            raise UnknownRunError(f"run(s) not in the results lake: {', '.join(missing)}")
        sql = "SELECT * FROM task_outcomes WHERE list_contains(?, run_id) ORDER BY suite, task_id, model"
        params: list[Any] = [ids]
        selection = "runs " + ", ".join(ids)
    else:
        rows = query(con, "SELECT * FROM leaderboard")
        sql, params = "SELECT * FROM task_matrix", []
        selection = SELECTION_LATEST
    tasks = TaskMatrix.query(con, sql, params) if with_tasks else TaskMatrix()
    runs = con.execute("SELECT count(*) FROM run_summary").fetchone()
    attempts = con.execute("SELECT sum(attempts) FROM run_summary").fetchone()
    mismatches = board_mismatches(con, rows)
    ranked = not mismatches or allow_mismatch
    current = query(con, "SELECT * FROM current_setup")
    return Leaderboard(
        rows=_order(rows) if ranked else _by_model(rows),  # build_leaderboard ranks by paired tests
        tasks=tasks,
        selection=selection,
        result_rows=int(attempts[0] or 0) if attempts else 0,  # = count(*) of results: each row once
        trace_rows=snapshot.count("traces"),
        runs_in_lake=int(runs[0]) if runs else 0,
        skipped_files=list(snapshot.skipped),
        ranked=ranked,
        mismatches=mismatches,
        outdated=[] if run_ids else outdated_runs(con),
        current=current[0] if current else {},
    )


def compare_runs(con: duckdb.DuckDBPyConnection, run_a: str, run_b: str) -> RunComparison:
    """Which tasks flipped between run A and run B (pass→fail, fail→pass) and the counts per change."""
    return compare_run_pairs(con, [(run_a, run_b)])[0]


def compare_run_pairs(
    con: duckdb.DuckDBPyConnection,
    pairs: Sequence[tuple[str, str]],
    *,
    flips_only: bool = False,
    runs: ComparedRuns | None = None,
) -> list[RunComparison]:
    """`compare_runs` of each (run A, run B), from one read of the runs (`runs`, when given, must hold
    every run of the pairs: the leaderboard shares it with its paired comparisons). `flips_only`:
    keep only the flipped tasks' rows (with the counts of every change), what a leaderboard shows,
    not a row per task of every pair."""
    if not pairs:
        return []
    if runs is None:
        runs = ComparedRuns(con, [run for pair in pairs for run in pair])
    out = []
    for numbers in runs.numbers(pairs):
        a, b = numbers.run_a, numbers.run_b
        out.append(
            RunComparison(
                a,
                b,
                runs.info[a].label,
                runs.info[b].label,
                runs.matrix.ab(a, b, flips_only=flips_only),
                numbers.counts,
                runs.differences(a, b),
            )
        )
    return out


def previous_runs(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> list[tuple[str, str]]:
    """(previous run, run) for each run that has an earlier run of the same (model, suite)."""
    return [
        (prev, run)
        for run, prev in con.execute(
            """SELECT s.run_id, p.run_id FROM run_summary s
               JOIN run_summary p ON p.model = s.model AND p.suite = s.suite AND p.recency = s.recency + 1
               WHERE list_contains(?, s.run_id) ORDER BY s.suite, s.model""",
            [list(run_ids)],
        ).fetchall()
    ]


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The cyclic garbage collector paused while the leaderboard is built, as it was after. The build
    makes some 40,000 short-lived containers (query rows, dicts) that reference counting frees, yet
    they set off collections, and in a fresh process a full one of the whole heap (0.07-0.09 s at 1M
    rows); what is cyclic is collected once it runs again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def build_leaderboard(
    paths: config.GoatPaths | None = None,
    *,
    run_ids: Sequence[str] | None = None,
    compare: tuple[str, str] | None = None,
    allow_mismatch: bool = False,
    summaries: bool = True,
) -> Leaderboard:
    """Leaderboard, per-task outcomes and A/B comparisons from one in-memory snapshot of the lake.

    `run_ids`: rank these runs instead of the latest per (model, suite). `compare`: the one A/B to
    make; by default every ranked run against its (model, suite)'s previous run. `allow_mismatch`:
    rank runs that differ in more than the model (what differs is shown either way). `summaries`:
    read the runs' summaries (summaries.py), not their rows: the same numbers, sooner.
    """
    with _no_cyclic_gc(), open_snapshot(paths, summaries=summaries, objects=LEADERBOARD_OBJECTS) as snap:
        board = compute_leaderboard(snap, run_ids, allow_mismatch=allow_mismatch, with_tasks=False)
        shown = [r["run_id"] for r in board.rows]
        pairs = [compare] if compare else previous_runs(snap.con, shown)
        ranked = board.rows if board.ranked else []
        # one read of the task outcomes of every run shown or compared: the comparisons and the matrix
        runs = ComparedRuns(snap.con, [*(r for pair in pairs for r in pair), *shown])
        paired_ab, ranks, paired = comparisons_and_ranks(snap.con, pairs, ranked, runs=runs)
        comparisons = compare_run_pairs(snap.con, pairs, flips_only=True, runs=runs)  # the same pass
        health = task_health_in(snap.con)
    return replace(
        board,
        tasks=TaskMatrix.of_runs(runs.matrix.task_outcomes, shown),
        rows=_order(board.rows, ranks) if board.ranked else board.rows,
        comparisons=comparisons,
        paired_ab=paired_ab,
        ranks=ranks,
        paired=paired,
        health=health,
    )
