"""A leaderboard's per-task matrix, kept columnar until something reads it.

The `task_matrix` rows (`task_outcomes` of the ranked runs, ordered by suite, task, model) are 40,000
at 20 models x 1000 tasks x 2 suites; a page of `goat view` shows 200 tasks of one suite, the
asset's metadata the first `MATRIX_MD_TASKS` of each. `TaskMatrix` holds them as the Arrow table
DuckDB returns, reads as a sequence of row dicts (made once, when first iterated: `to_json`, the
tests), and gives one suite's task ids and the cells of some tasks without making the others.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

import duckdb

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow is imported where it is used, as in tabular.py: `goat view` and the CLI start without it
# (DuckDB imports it when it hands a table over).


class TaskMatrix(Sequence[dict[str, Any]]):
    """`task_matrix` rows (suite, task_id, model, run_id, cell, outcome, counts, ...) as a sequence
    of dicts over an Arrow table."""

    def __init__(self, table: pa.Table | None = None, *, ordered: bool = True) -> None:
        """`ordered`: the table's rows are in `task_matrix`'s order already (else sorted when read)."""
        self.table = table
        self._ordered = ordered
        self._rows: list[dict[str, Any]] | None = None

    @classmethod
    def of_runs(cls, outcomes: pa.Table, run_ids: Sequence[str]) -> TaskMatrix:
        """The rows of these runs among `outcomes` (`task_outcomes` rows of some runs, in any order:
        those the comparisons read, `OutcomeMatrix.task_outcomes`), as `task_matrix` has them."""
        import pyarrow as pa
        import pyarrow.compute as pc

        keep = pc.is_in(outcomes["run_id"], pa.array(list(run_ids), pa.string()))
        return cls(outcomes.filter(keep), ordered=False)

    @classmethod
    def query(
        cls, con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None
    ) -> TaskMatrix:
        """The rows of a query (`?` parameters), straight into Arrow."""
        return cls(con.sql(sql, params=list(params) if params else None).to_arrow_table())

    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            if self.table is not None and not self._ordered:  # as task_matrix's ORDER BY
                self.table = self.table.sort_by([(c, "ascending") for c in ("suite", "task_id", "model")])
                self._ordered = True
            self._rows = self.table.to_pylist() if self.table is not None else []
        return self._rows

    def __len__(self) -> int:
        return self.table.num_rows if self.table is not None else 0

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self.rows()[i]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TaskMatrix):
            return self.rows() == other.rows()
        if isinstance(other, Sequence):
            return self.rows() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TaskMatrix({len(self)} rows)"

    def _of(self, suite: str) -> pa.Table:
        import pyarrow.compute as pc  # see the top of the module

        assert self.table is not None
        return self.table.filter(pc.equal(self.table["suite"], suite))

    def suites(self) -> list[str]:
        import pyarrow.compute as pc

        if self.table is None or not len(self):
            return []
        return sorted(pc.unique(self.table["suite"]).to_pylist())

    def task_ids(self, suite: str) -> list[str]:
        """The suite's task ids, sorted."""
        import pyarrow.compute as pc

        if not len(self):
            return []
        return sorted(pc.unique(self._of(suite)["task_id"]).to_pylist())

    def cells(
        self, suite: str, task_ids: Sequence[str], columns: Sequence[str] | None = None
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """task id -> model -> its row (`columns`: only these, with task_id and model), for these
        tasks of the suite."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not len(self) or not task_ids:
            return {}
        mine = self._of(suite)
        mine = mine.filter(pc.is_in(mine["task_id"], pa.array(list(task_ids), pa.string())))
        if columns is not None:
            mine = mine.select(list(dict.fromkeys(["task_id", "model", *columns])))
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for row in mine.to_pylist():
            out.setdefault(row["task_id"], {})[row["model"]] = row
        return out
