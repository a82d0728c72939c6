"""The task outcomes of the runs being compared, as one run x task matrix, and what each pair of runs
gives: the A/B change of every task and the paired statistics' exact sums.

`OutcomeMatrix.load(con, run_ids)` reads the runs' rows of the warehouse's `task_outcomes` (one query:
scored, passed, pass fraction, outcome and cell per (run, task)) into integer-keyed arrays: a row per
run, a column per task id (sorted, as DuckDB sorts them). `pairs(...)` then computes every pair asked
at once, with numpy over those arrays, never a join of rows by string keys:

- the change of each task either run has, by the warehouse's own `ab_change(outcome_a, outcome_b)`
  (compare_sql.py: the one definition, which `ab_compare_pairs` uses too; evaluated here once for each
  combination of outcomes, a missing task being NULL as in that macro's outer join), and the count of
  each change (the A/B);
- on the tasks both runs scored (`scored > 0`): their number, the mean pass fraction of each, the mean
  and sample standard deviation of the per-task differences d = frac_b - frac_a, the tasks each
  run scored alone, and the flipped tasks (changes pass→fail and fail→pass: they are scored by both).

The sums are exact: a pass fraction passed/scored is an integer in units of 1/L (L the least common
multiple of the scored counts in the matrix), so every sum is an integer (int64 while T x L^2 fits,
Python integers beyond) and each number is one correctly rounded division of integers: nothing
depends on the order of addition, nor on which other runs are in the matrix (`goat compare A B` gives
the numbers the leaderboard gives for the pair).

A/B rows (`rows`) are made only when read: the board shows the flipped tasks' ids and counts; the
pass fractions and cells stay in the Arrow table DuckDB returned until `--json` or a viewer page asks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow is imported where it is used (see task_matrix.py): DuckDB imports it when it hands a
# table over.

CHANGES = ("pass→fail", "fail→pass", "unchanged", "not comparable")
FLIPS = ("pass→fail", "fail→pass")
ROW_ORDER = tuple(sorted(CHANGES))  # ab_compare_pairs' rows: by change, then task id

# the runs' rows, each with its run's index in $1 (an integer key instead of the run id's string);
# every column, as the leaderboard's per-task matrix (task_matrix.py) is made of the same rows
OUTCOMES_SQL = """SELECT r.run, o.*
FROM task_outcomes o JOIN (SELECT unnest($1) AS run_id, generate_subscripts($1, 1) - 1 AS run) r
    ON r.run_id = o.run_id"""

# ab_change of every pair of the outcomes $1: one list per outcome of A, over the outcomes of B
CHANGE_TABLE_SQL = "SELECT list_transform($1, lambda a: list_transform($1, lambda b: ab_change(a, b)))"

_INT64_SUMS = 2**62  # below this, every sum of products fits an int64
_CELLS_AT_ONCE = 2**20  # pair x task cells computed at once (memory: ~8 MB per int64 array)


@dataclass(frozen=True)
class PairNumbers:
    """Run B against run A (see the module docstring): what compare.py makes a `Comparison` of, and
    the A/B's counts and flipped tasks."""

    run_a: str
    run_b: str
    shared_tasks: int
    only_a: list[str]  # tasks only A scored
    only_b: list[str]
    pass_rate_a: float | None  # mean pass fraction on the shared tasks
    pass_rate_b: float | None
    mean_d: float | None
    sd_d: float | None  # sample standard deviation of the differences (None below two tasks)
    pass_to_fail: list[str]  # by task id
    fail_to_pass: list[str]
    counts: dict[str, int]  # per change, over the tasks either run has


class ABRows:
    """The per-task rows of one pair's A/B, as `ab_compare_pairs` has them (task_id, outcome_a,
    outcome_b — 'missing' for a task the run lacks —, pass_frac_a, pass_frac_b, cell_a, cell_b,
    change): their tasks and changes, the rows made as dicts when asked for."""

    def __init__(self, matrix: OutcomeMatrix, a: int, b: int, tasks: np.ndarray, changes: np.ndarray) -> None:
        self._matrix, self._a, self._b = matrix, a, b
        self._tasks, self._changes = tasks, changes

    def changes(self) -> list[tuple[str, str]]:
        """(task id, change) of each row, in order, without making the rows."""
        names = self._matrix.task_names[self._tasks].tolist()
        return list(zip(names, [CHANGES[c] for c in self._changes.tolist()], strict=True))

    def rows(self) -> list[dict[str, Any]]:
        return self._matrix.ab_rows(self._a, self._b, self._tasks, self._changes)

    def __eq__(self, other: object) -> bool:
        return self.rows() == other.rows() if isinstance(other, ABRows) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ABRows({len(self._tasks)} rows)"


class OutcomeMatrix:
    """The `task_outcomes` of some runs, a row per run and a column per task id (see the module
    docstring)."""

    def __init__(
        self, run_ids: Sequence[str], table: pa.Table, ab_change: Callable[[list[str | None]], list[str]]
    ) -> None:
        """`table`: the `task_outcomes` rows of the runs `run_ids` (distinct), OUTCOMES_SQL's columns
        (kept: `table`);
        `ab_change`: the change of each combination of the given outcomes (A's outer, B's inner;
        CHANGE_TABLE_SQL)."""
        import pyarrow.compute as pc  # see the top of the module

        self.table = table
        self.run_index = {run_id: i for i, run_id in enumerate(run_ids)}
        tasks = pc.dictionary_encode(table["task_id"]).combine_chunks()
        names = tasks.dictionary.to_pylist()
        order = sorted(range(len(names)), key=names.__getitem__)
        column = np.empty(len(names), dtype=np.int64)
        column[order] = np.arange(len(names))
        self.task_names = np.array([names[i] for i in order], dtype=object)
        r, t = table["run"].to_numpy(), column[tasks.indices.to_numpy()]
        shape = (len(self.run_index), len(names))
        self.row = np.full(shape, -1, dtype=np.int64)  # the table's row of (run, task), -1: none
        self.row[r, t] = np.arange(len(r))
        if np.count_nonzero(self.row >= 0) != len(r):  # a (run, task) twice: of two suites or models
            keys, times = np.unique(r * shape[1] + t, return_counts=True)
            run, task = divmod(int(keys[times > 1][0]), shape[1])
            raise ValueError(
                f"run {list(self.run_index)[run]} has more than one row for task {self.task_names[task]} "
                "in task_outcomes (rows of several suites or models under one run id)"
            )
        # outcome code 0: no row (the run lacks the task), else 1 + the outcome's index in `outcomes`
        outcomes = pc.dictionary_encode(table["outcome"]).combine_chunks()
        self.outcomes: list[str | None] = [None, *outcomes.dictionary.to_pylist()]
        self.code = np.zeros(shape, dtype=np.int8)
        self.code[r, t] = outcomes.indices.to_numpy(zero_copy_only=False) + 1
        n = len(self.outcomes)  # the change (index in CHANGES) of each pair of outcome codes
        changes = [CHANGES.index(c) for c in ab_change(self.outcomes)]
        self.change = np.array(changes, dtype=np.int8).reshape(n, n)
        scored, passed = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
        scored[r, t], passed[r, t] = table["scored"].to_numpy(), table["passed"].to_numpy()
        self.scored = scored > 0
        self.x, self.unit = _scaled_fractions(scored, passed)

    @property
    def task_outcomes(self) -> pa.Table:
        """The runs' `task_outcomes` rows as read (every column of the view, in its order)."""
        return self.table.drop_columns(["run"])

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> OutcomeMatrix:
        """The runs' `task_outcomes` rows in one query, and `ab_change` of their outcomes."""
        ids = list(dict.fromkeys(run_ids))
        table = con.sql(OUTCOMES_SQL, params=[ids]).to_arrow_table()

        def ab_change(outcomes: list[str | None]) -> list[str]:
            ((table,),) = con.execute(CHANGE_TABLE_SQL, [outcomes]).fetchall()
            return [change for row in table for change in row]

        return cls(ids, table, ab_change)

    def _index(self, run_ids: Sequence[str]) -> np.ndarray:
        return np.fromiter((self.run_index[r] for r in run_ids), dtype=np.int64, count=len(run_ids))

    def pairs(self, pairs: Sequence[tuple[str, str]]) -> list[PairNumbers]:
        """The numbers of each (run A, run B), in order; every run must be one of the matrix's. In
        chunks of pairs of about a million pair x task cells each: 100 models of a 1000-task suite
        make 4950 pairs, and each array of the pairs' cells would be 40 MB at once."""
        chunk = max(1, _CELLS_AT_ONCE // max(1, len(self.task_names)))
        return [n for i in range(0, len(pairs), chunk) for n in self._pairs(pairs[i : i + chunk])]

    def _pairs(self, pairs: Sequence[tuple[str, str]]) -> list[PairNumbers]:
        if not pairs:
            return []
        ia, ib = self._index([a for a, _ in pairs]), self._index([b for _, b in pairs])
        code_a, code_b = self.code[ia], self.code[ib]
        change = self.changes_of(code_a, code_b)
        change[(code_a == 0) & (code_b == 0)] = len(CHANGES)  # neither run has the task: not counted
        counts = np.stack([np.count_nonzero(change == c, axis=1) for c in range(len(CHANGES))], axis=1)
        scored_a, scored_b = self.scored[ia], self.scored[ib]
        both = scored_a & scored_b
        shared = np.count_nonzero(both, axis=1)
        x_a, x_b = self.x[ia], self.x[ib]
        sum_a = (x_a * scored_b).sum(axis=1)  # x is 0 where unscored: these run over the shared tasks
        sum_b = (x_b * scored_a).sum(axis=1)
        d = (x_b - x_a) * both
        sum_d2 = (d * d).sum(axis=1)
        only_a = _per_row(scored_a & ~scored_b, self.task_names)
        only_b = _per_row(scored_b & ~scored_a, self.task_names)
        flips = [_per_row(change == CHANGES.index(c), self.task_names) for c in FLIPS]
        return [
            PairNumbers(
                run_a=run_a,
                run_b=run_b,
                shared_tasks=int(shared[k]),
                only_a=only_a[k],
                only_b=only_b[k],
                **_paired_numbers(int(shared[k]), int(sum_a[k]), int(sum_b[k]), int(sum_d2[k]), self.unit),
                pass_to_fail=flips[0][k],
                fail_to_pass=flips[1][k],
                counts=dict(zip(CHANGES, counts[k].tolist(), strict=True)),
            )
            for k, (run_a, run_b) in enumerate(pairs)
        ]

    def changes_of(self, code_a: np.ndarray, code_b: np.ndarray) -> np.ndarray:
        """The change code of each pair of outcome codes (arrays of one shape)."""
        n = np.int16(len(self.outcomes))
        return np.take(self.change.ravel(), code_a.astype(np.int16) * n + code_b)

    def ab(self, run_a: str, run_b: str, *, flips_only: bool) -> ABRows:
        """The A/B rows of one pair: every task either run has, or (`flips_only`) the flipped
        tasks, ordered by change and task id as `ab_compare_pairs` orders them."""
        a, b = self.run_index[run_a], self.run_index[run_b]
        change = self.changes_of(self.code[a], self.code[b])
        if flips_only:
            tasks = np.flatnonzero((change == CHANGES.index(FLIPS[0])) | (change == CHANGES.index(FLIPS[1])))
        else:
            tasks = np.flatnonzero((self.code[a] != 0) | (self.code[b] != 0))
        rank = np.array([ROW_ORDER.index(c) for c in CHANGES])[change[tasks]]
        tasks = tasks[np.argsort(rank, kind="stable")]
        return ABRows(self, a, b, tasks, change[tasks])

    def ab_rows(self, a: int, b: int, tasks: np.ndarray, changes: np.ndarray) -> list[dict[str, Any]]:
        """The rows of `ABRows` (a, b: the runs' rows in the matrix)."""
        return [
            {
                "task_id": task_id,
                "outcome_a": oa,
                "outcome_b": ob,
                "pass_frac_a": fa,
                "pass_frac_b": fb,
                "cell_a": ca,
                "cell_b": cb,
                "change": CHANGES[c],
            }
            for task_id, (oa, fa, ca), (ob, fb, cb), c in zip(
                self.task_names[tasks].tolist(),
                self._side(self.row[a, tasks]),
                self._side(self.row[b, tasks]),
                changes.tolist(),
                strict=True,
            )
        ]

    def _side(self, rows: np.ndarray) -> list[tuple[str, float | None, str | None]]:
        """(outcome, pass_frac, cell) of each table row; ('missing', None, None) for -1."""
        import pyarrow as pa  # see the top of the module

        columns = self.table.select(["outcome", "pass_frac", "cell"])
        taken = columns.take(pa.array(np.maximum(rows, 0)))
        return [
            (o, f, c) if i >= 0 else ("missing", None, None)
            for i, o, f, c in zip(rows.tolist(), *(col.to_pylist() for col in taken.columns), strict=True)
        ]


def _scaled_fractions(scored: np.ndarray, passed: np.ndarray) -> tuple[np.ndarray, int]:
    """Each task's pass fraction passed / scored as an integer in units of 1 / L (0 where unscored),
    and L: the least common multiple of the scored counts."""
    mask = scored > 0
    counts = np.flatnonzero(np.bincount(scored.ravel()))  # the scored counts there are (and 0)
    unit = math.lcm(*counts[counts > 0].tolist())  # 1 without any
    big = scored.shape[1] * unit * unit >= _INT64_SUMS  # sums of squares could overflow an int64
    dtype: Any = object if big else np.int64
    per = unit // np.where(mask, scored, 1).astype(dtype)  # exact; Python integers when L is large
    return np.where(mask, passed.astype(dtype) * per, 0).astype(dtype), unit


def _per_row(mask: np.ndarray, names: np.ndarray) -> list[list[str]]:
    """For each row of a boolean matrix, the names of its True columns (in column order)."""
    if not mask.any():
        return [[] for _ in range(mask.shape[0])]
    return [names[np.flatnonzero(row)].tolist() for row in mask]


def _paired_numbers(n: int, sum_a: int, sum_b: int, sum_d2: int, unit: int) -> dict[str, float | None]:
    """Pass rates, mean and sample sd of the differences from exact sums in units of 1/unit: each a
    correctly rounded division of integers (the sd's variance; then its square root)."""
    if n == 0:
        return {"pass_rate_a": None, "pass_rate_b": None, "mean_d": None, "sd_d": None}
    sum_d = sum_b - sum_a
    sd = math.sqrt((n * sum_d2 - sum_d * sum_d) / (n * (n - 1) * unit * unit)) if n > 1 else None
    return {
        "pass_rate_a": sum_a / (n * unit),
        "pass_rate_b": sum_b / (n * unit),
        "mean_d": sum_d / (n * unit),
        "sd_d": sd,
    }
