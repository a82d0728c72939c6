"""The results lake: one Parquet file per run under `$GOAT_HOME/lake/results/` (DESIGN §6, §7).

A file is written whole and renamed into place, so readers never see half of one and concurrent
runs never share a file or a lock. Queries read the files with an in-memory DuckDB connection
(no lock on warehouse.duckdb, which belongs to the analysis views).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from goat_dagster import config
from goat_dagster.tabular import Int32, duckdb_columns, literal_values


class ResultRow(BaseModel):
    """One task x epoch of a run: exactly the columns of the results lake (DESIGN §6, in order).

    The one definition of the results schema: the Parquet files' column types and the warehouse's
    `results` view are derived from these fields (`RESULT_TYPES`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    suite: str
    suite_version: str
    model: str
    agent: str
    sandbox: str
    task_id: str
    epoch: Int32
    status: Literal["passed", "failed", "error"]
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


def summarize(rows: Iterable[ResultRow]) -> dict[str, Any]:
    """Totals of a run's rows: the one definition `goat run`, `goat results`, the journal of an
    unfinished run and the benchmark asset share. Errors are counted apart by kind and never scored
    (pass_rate = passed / (passed + failed)); wall_s runs from the first task's start to the last
    task's finish, so a resumed run counts the time it was down."""
    rows = list(rows)
    passed = sum(r.status == "passed" for r in rows)
    failed = sum(r.status == "failed" for r in rows)
    started = min((r.started_at for r in rows), default=None)
    finished = max((r.finished_at for r in rows), default=None)
    return {
        "n": len(rows),
        "passed": passed,
        "failed": failed,
        "errors": sum(r.status == "error" for r in rows),
        "pass_rate": round(passed / (passed + failed), 4) if passed + failed else None,
        "wall_s": round((finished - started).total_seconds(), 3) if started and finished else 0.0,
        "cost_usd": round(sum(r.cost_usd for r in rows), 6),
        "errors_by_kind": {k: sum(r.error_kind == k for r in rows) for k in ERROR_KINDS},
        "prompt_tokens": sum(r.prompt_tokens for r in rows),
        "completion_tokens": sum(r.completion_tokens for r in rows),
        "epochs": max((r.epoch for r in rows), default=0),
        "started_at": started,
        "finished_at": finished,
    }


def results_dir() -> Path:
    return config.paths().lake_results


def results_file(run_id: str) -> Path:
    return results_dir() / f"{run_id}.parquet"


def write_results(run_id: str, rows: list[ResultRow]) -> Path:
    """Write (or replace) the run's Parquet file atomically (written aside, then renamed)."""
    target = results_file(run_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    # names outside the lake's `*.parquet` glob until the final rename
    ndjson = target.with_name(f".{target.stem}.{os.getpid()}.jsonl.tmp")
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.parquet.tmp")
    ndjson.write_text("".join(r.model_dump_json() + "\n" for r in rows))
    try:
        with _duck() as con:
            cols = ", ".join(f"{c} {t}" for c, t in RESULT_TYPES.items())
            con.execute(f"CREATE TABLE r ({cols})")
            if rows:
                spec = "{" + ", ".join(f"{c}: '{t}'" for c, t in RESULT_TYPES.items()) + "}"
                con.execute(
                    f"INSERT INTO r SELECT {', '.join(RESULT_COLUMNS)} FROM read_json(?, "
                    f"format='newline_delimited', columns={spec})",
                    [str(ndjson)],
                )
            con.execute(f"COPY r TO '{_sql_path(tmp)}' (FORMAT parquet, COMPRESSION zstd)")
    finally:
        ndjson.unlink(missing_ok=True)
    tmp.replace(target)
    return target


def _sql_path(p: Path) -> str:
    return str(p).replace("'", "''")


def _duck() -> Any:
    """A new in-memory DuckDB connection (UTC); use it as `with _duck() as con:` so it is closed."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    return con


def _glob() -> str:
    return str(results_dir() / "*.parquet")


def _has_files() -> bool:
    d = results_dir()
    return d.is_dir() and any(d.glob("*.parquet"))


def read_rows(run_id: str) -> list[dict[str, Any]]:
    f = results_file(run_id)
    if not f.exists():
        return []
    with _duck() as con:
        cur = con.execute("SELECT * FROM read_parquet(?) ORDER BY epoch, started_at, task_id", [str(f)])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def run_summaries(
    run_id: str | None = None, model: str | None = None, suite: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """One summary per run in the lake (`summarize` of its rows plus what the run was), newest first."""
    if not _has_files():
        return []
    conds, params = [], []
    for col, val in (("run_id", run_id), ("model", model), ("suite", suite)):
        if val is not None:
            conds.append(f"{col} = ?")
            params.append(val)
    where = ("WHERE " + " AND ".join(conds)) if conds else ""
    runs = f"SELECT run_id FROM read_parquet(?) {where} GROUP BY run_id ORDER BY max(finished_at) DESC"
    if limit:
        runs += f" LIMIT {int(limit)}"
    sql = f"SELECT * FROM read_parquet(?) WHERE run_id IN ({runs})"
    with _duck() as con:
        cur = con.execute(sql, [_glob(), _glob(), *params])
        cols = [d[0] for d in cur.description]
        fetched = cur.fetchall()
    by_run: dict[str, list[ResultRow]] = {}
    for r in fetched:
        row = ResultRow.model_validate(dict(zip(cols, r, strict=True)))
        by_run.setdefault(row.run_id, []).append(row)
    out = []
    for rows in by_run.values():
        first = rows[0]
        out.append(
            {
                "run_id": first.run_id,
                "model": first.model,
                "suite": first.suite,
                "suite_version": first.suite_version,
                "agent": first.agent,
                "sandbox": first.sandbox,
                **summarize(rows),
            }
        )
    out.sort(key=lambda s: s["finished_at"], reverse=True)
    return out


def latest_run(model: str, suite: str | None = None) -> dict[str, Any] | None:
    """The most recent run of `model` (registry key) in the lake, optionally for one suite."""
    runs = run_summaries(model=model, suite=suite, limit=1)
    return runs[0] if runs else None
