"""The results lake: one Parquet file per run under `$GOAT_HOME/lake/results/` (DESIGN §6, §7).

A file is written whole and renamed into place, so readers never see half of one and concurrent
runs never share a file or a lock. Queries read the files with an in-memory DuckDB connection
(no lock on warehouse.duckdb, which belongs to the analysis views).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from goat_dagster import config

RESULT_COLUMNS: tuple[str, ...] = (
    "run_id", "suite", "suite_version", "model", "agent", "sandbox", "task_id", "epoch", "status",
    "error_kind", "started_at", "finished_at", "wall_s", "steps", "tool_calls", "prompt_tokens",
    "completion_tokens", "cost_usd", "trace_id",
)  # fmt: skip
STATUSES = ("passed", "failed", "error")
ERROR_KINDS = ("infra", "timeout", "agent", "budget")


class ResultRow(BaseModel):
    """One task x epoch of a run: exactly the columns of the results lake."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    suite: str
    suite_version: str
    model: str
    agent: str
    sandbox: str
    task_id: str
    epoch: int
    status: Literal["passed", "failed", "error"]
    error_kind: Literal["infra", "timeout", "agent", "budget"] | None = None
    started_at: datetime
    finished_at: datetime
    wall_s: float
    steps: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    trace_id: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.task_id, self.epoch)


# DuckDB (and so Parquet) types of the columns; timestamps are UTC instants
RESULT_TYPES: dict[str, str] = {
    **{c: "VARCHAR" for c in RESULT_COLUMNS},
    "epoch": "INTEGER", "started_at": "TIMESTAMPTZ", "finished_at": "TIMESTAMPTZ", "wall_s": "DOUBLE",
    "steps": "INTEGER", "tool_calls": "INTEGER", "prompt_tokens": "BIGINT", "completion_tokens": "BIGINT",
    "cost_usd": "DOUBLE",
}  # fmt: skip


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


_SUMMARY_SQL = """
SELECT run_id, any_value(model) AS model, any_value(suite) AS suite,
       any_value(suite_version) AS suite_version, any_value(agent) AS agent,
       any_value(sandbox) AS sandbox, count(*) AS n,
       count(*) FILTER (status = 'passed') AS passed,
       count(*) FILTER (status = 'failed') AS failed,
       count(*) FILTER (status = 'error') AS errors,
       count(*) FILTER (error_kind = 'infra') AS errors_infra,
       count(*) FILTER (error_kind = 'timeout') AS errors_timeout,
       count(*) FILTER (error_kind = 'agent') AS errors_agent,
       count(*) FILTER (error_kind = 'budget') AS errors_budget,
       max(epoch) AS epochs,
       epoch_ms(max(finished_at)) / 1000.0 - epoch_ms(min(started_at)) / 1000.0 AS span_s,
       sum(cost_usd) AS cost_usd, sum(prompt_tokens) AS prompt_tokens,
       sum(completion_tokens) AS completion_tokens,
       min(started_at) AS started_at, max(finished_at) AS finished_at
FROM read_parquet(?)
{where}
GROUP BY run_id
ORDER BY max(finished_at) DESC
"""


def run_summaries(
    run_id: str | None = None, model: str | None = None, suite: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """One summary per run in the lake, newest first."""
    if not _has_files():
        return []
    conds, params = [], []
    for col, val in (("run_id", run_id), ("model", model), ("suite", suite)):
        if val is not None:
            conds.append(f"{col} = ?")
            params.append(val)
    sql = _SUMMARY_SQL.format(where=("WHERE " + " AND ".join(conds)) if conds else "")
    if limit:
        sql += f" LIMIT {int(limit)}"
    with _duck() as con:
        cur = con.execute(sql, [_glob(), *params])
        cols = [d[0] for d in cur.description]
        fetched = cur.fetchall()
    out = []
    for r in fetched:
        row = dict(zip(cols, r, strict=True))
        scored = row["passed"] + row["failed"]
        row["pass_rate"] = round(row["passed"] / scored, 4) if scored else None
        row["errors_by_kind"] = {k: row.pop(f"errors_{k}") for k in ERROR_KINDS}
        row["wall_s"] = round(float(row.pop("span_s") or 0.0), 3)
        row["cost_usd"] = float(row["cost_usd"] or 0.0)
        out.append(row)
    return out


def latest_run(model: str, suite: str | None = None) -> dict[str, Any] | None:
    """The most recent run of `model` (registry key) in the lake, optionally for one suite."""
    runs = run_summaries(model=model, suite=suite, limit=1)
    return runs[0] if runs else None
