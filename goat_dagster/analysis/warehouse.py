"""The warehouse file, `$GOAT_HOME/warehouse.duckdb`: the warehouse SQL as views, for people who
open the file themselves (`duckdb .goat/warehouse.duckdb`, then `SELECT * FROM leaderboard`).

The views read the lake through globs, so the file only needs writing when a view is missing or its
SQL changed (tracked as a version in `goat_warehouse_meta`). DuckDB allows one read-write process
per file, so the write is short, retried on lock errors, and skipped (state "busy") if the file
stays locked. No number is computed from this file (snapshot.py is how), so an open warehouse never
blocks a run or the leaderboard.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import duckdb
from tenacity import Retrying, retry_if_exception, stop_before_delay, wait_exponential

from goat_dagster import config
from goat_dagster.analysis.warehouse_sql import OBJECTS, lake_globs, views_version, warehouse_sql

log = logging.getLogger(__name__)

META_TABLE = "goat_warehouse_meta"
LOCK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class WarehouseStatus:
    """What `ensure_warehouse` did. state: created | updated | current | busy (locked, left as it was)."""

    path: Path
    version: str
    state: Literal["created", "updated", "current", "busy"]
    detail: str = ""


def is_lock_error(exc: BaseException) -> bool:
    """DuckDB's "file is locked by another process" (or, within one process, "already open with
    another configuration", e.g. read-only vs read-write)."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and (
        "lock" in text or "different configuration" in text or "already attached" in text
    )


def _stored_version(con: duckdb.DuckDBPyConnection) -> str | None:
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?", [META_TABLE]
    ).fetchone()
    if not exists or not exists[0]:
        return None
    row = con.execute(f"SELECT value FROM {META_TABLE} WHERE key = 'views_version'").fetchone()
    return row[0] if row else None


def _stored_objects(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = con.execute(f"SELECT key, value FROM {META_TABLE} WHERE key LIKE 'object:%'").fetchall()
    return {k.removeprefix("object:"): v for k, v in rows}


def _write_views(con: duckdb.DuckDBPyConnection, paths: config.GoatPaths, version: str) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR)")
        for name, kind in _stored_objects(con).items():
            if name not in OBJECTS:
                con.execute(f'DROP {kind} IF EXISTS "{name}"')
        for stmt in warehouse_sql(*lake_globs(paths)):
            con.execute(stmt)
        rows = [("views_version", version), ("written_at", datetime.now().astimezone().isoformat())]
        rows += [(f"object:{name}", kind) for name, kind in OBJECTS.items()]
        con.executemany(f"INSERT OR REPLACE INTO {META_TABLE} VALUES (?, ?)", rows)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def ensure_warehouse(
    paths: config.GoatPaths | None = None, *, timeout_s: float = LOCK_TIMEOUT_S
) -> WarehouseStatus:
    """Create or update the views in `warehouse.duckdb` if they are missing or their SQL changed.

    Reads the stored version read-only first (no write lock when nothing changed), writes under the
    read-write lock otherwise. A locked file is retried with backoff for `timeout_s`, then left as it
    is (state "busy"): the analysis itself never needs the file (see `open_snapshot`).
    """
    paths = paths or config.paths()
    target = paths.warehouse
    version = views_version(paths)
    retrying = Retrying(
        retry=retry_if_exception(is_lock_error),
        wait=wait_exponential(multiplier=0.02, max=0.5),
        stop=stop_before_delay(timeout_s),
        retry_error_callback=lambda state: WarehouseStatus(
            target, version, "busy", f"left unchanged, file locked: {state.outcome.exception()}"
        ),
    )
    return retrying(_ensure, paths, version)


def _ensure(paths: config.GoatPaths, version: str) -> WarehouseStatus:
    target = paths.warehouse
    if target.exists():
        with duckdb.connect(str(target), read_only=True) as con:
            if _stored_version(con) == version:
                return WarehouseStatus(target, version, "current")
    target.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(target)) as con:
        stored = _stored_version(con)  # again, under the write lock: another writer may have won
        if stored == version:
            return WarehouseStatus(target, version, "current")
        _write_views(con, paths, version)
        return WarehouseStatus(target, version, "created" if stored is None else "updated")


def update_views(paths: config.GoatPaths | None = None) -> WarehouseStatus | None:
    """After a run: the views made or brought up to date if that is quick (they read the lake's
    files by glob, so later runs show without a rewrite). A warehouse someone holds open is left as
    it is, and so is one DuckDB cannot open: the run's Parquet file is what counts."""
    try:
        status = ensure_warehouse(paths, timeout_s=2.0)
    except duckdb.Error as exc:
        log.warning("warehouse views not updated: %s", exc)
        return None
    if status.state == "busy":
        log.info("warehouse.duckdb is held open by another process; its views were left as they were")
    return status
