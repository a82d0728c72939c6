"""The results lake: one Parquet file per run under `$GOAT_HOME/lake/results/` (DESIGN §6, §7).

A file is written whole and renamed into place, so readers never see half of one and concurrent
runs never share a file or a lock. Queries read the files with an in-memory DuckDB connection
(no lock on warehouse.duckdb, which belongs to the analysis views).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
from pydantic import BaseModel, ConfigDict

from goat_dagster import config
from goat_dagster.atomic import written_aside
from goat_dagster.tabular import Int32, duckdb_columns, literal_values


class RunIdentity(BaseModel):
    """What a run is: the first columns of each of its rows, and of its journal's `RunSpec`."""

    run_id: str
    suite: str
    suite_version: str
    model: str  # registry key
    agent: str
    sandbox: str


class ResultRow(RunIdentity):
    """One task x epoch of a run: exactly the columns of the results lake (DESIGN §6, in order:
    the run's identity, then the task's outcome).

    `status` extends DESIGN §6's passed | failed | error with `unscored`: an attempt at a free-form
    prompt (`goat run --prompt/--batch`), which no check judged. It finished without an error; it
    is never scored, so it never counts in a pass rate (passed / (passed + failed)), and a run of
    such rows is never on the leaderboard.

    The one definition of the results schema: the Parquet files' column types and the warehouse's
    `results` view are derived from these fields (`RESULT_TYPES`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: str
    epoch: Int32
    status: Literal["passed", "failed", "error", "unscored"]
    error_kind: Literal["infra", "timeout", "agent", "budget"] | None = None
    started_at: datetime
    finished_at: datetime
    wall_s: float
    steps: Int32 = 0
    tool_calls: Int32 = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    trace_id: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.task_id, self.epoch)


# DuckDB (and so Parquet) types of the columns; timestamps are UTC instants
RESULT_TYPES: dict[str, str] = duckdb_columns(ResultRow)
RESULT_COLUMNS: tuple[str, ...] = tuple(RESULT_TYPES)
STATUSES = literal_values(ResultRow, "status")
ERROR_KINDS = literal_values(ResultRow, "error_kind")


def results_dir() -> Path:
    return config.paths().lake_results


def results_file(run_id: str) -> Path:
    return results_dir() / f"{run_id}.parquet"


def load_models(
    con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[BaseModel], types: Mapping[str, str]
) -> None:
    """Create `table` with the columns `types` (a row model's, `tabular.duckdb_columns`) and put
    `rows` in it (in bulk, through a temporary NDJSON file: row-by-row inserts are ~5x slower)."""
    con.execute(f'CREATE TABLE "{table}" ({", ".join(f"{c} {t}" for c, t in types.items())})')
    if not rows:
        return
    with tempfile.NamedTemporaryFile("w", prefix="goat-rows-", suffix=".jsonl", encoding="utf-8") as f:
        f.write("".join(r.model_dump_json() + "\n" for r in rows))
        f.flush()
        spec = "{" + ", ".join(f"{c}: '{t}'" for c, t in types.items()) + "}"
        con.execute(
            f'INSERT INTO "{table}" SELECT {", ".join(types)} FROM read_json(?, '
            f"format='newline_delimited', columns={spec})",
            [f.name],
        )


def load_rows(con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[ResultRow]) -> None:
    """Create `table` with the results columns and their types, and put `rows` in it."""
    load_models(con, table, rows, RESULT_TYPES)


def write_lake_file(target: Path, rows: Sequence[BaseModel], types: Mapping[str, str]) -> Path:
    """Write (or replace) one Parquet file of a lake atomically (written aside, then renamed)."""
    with _duck() as con:
        load_models(con, "r", rows, types)
        return copy_to_lake_file(con, "SELECT * FROM r", target)


def copy_to_lake_file(
    con: duckdb.DuckDBPyConnection, select: str, target: Path, *, kv_metadata: str | None = None
) -> Path:
    """Write (or replace) one Parquet file of a lake with the rows of a query, atomically: written
    aside under a name of its own (outside the lake's `*.parquet` glob), then renamed, so readers
    and concurrent writers of the same file never see half of one. `kv_metadata`: a DuckDB struct
    literal of footer key-values."""
    kv = f", KV_METADATA {kv_metadata}" if kv_metadata else ""
    with written_aside(target) as tmp:
        con.execute(f"COPY ({select}) TO '{_sql_path(tmp)}' (FORMAT parquet, COMPRESSION zstd{kv})")
    return target


def write_results(run_id: str, rows: list[ResultRow]) -> Path:
    """Write (or replace) the run's Parquet file atomically (written aside, then renamed)."""
    return write_lake_file(results_file(run_id), rows, RESULT_TYPES)


def _sql_path(p: Path) -> str:
    return str(p).replace("'", "''")


def _duck() -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB connection (UTC); use it as `with _duck() as con:` so it is closed."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    return con


def read_lake_rows(path: Path, order_by: str | None = None) -> list[dict[str, Any]]:
    """The rows of one lake file as dicts ([] when there is no such file)."""
    if not path.exists():
        return []
    with _duck() as con:
        order = f" ORDER BY {order_by}" if order_by else ""
        cur = con.execute(f"SELECT * FROM read_parquet(?){order}", [str(path)])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def read_rows(run_id: str) -> list[dict[str, Any]]:
    return read_lake_rows(results_file(run_id), "epoch, started_at, task_id")
