"""The warehouse SQL in memory: over the lake's complete files of one moment (`open_snapshot`), or
over rows not in the lake yet (`open_rows`: a run's journal) — how every number is computed.

A file still being written is skipped and reported, so one run in progress never breaks the
analysis of the others, and nothing here waits on, or blocks, the warehouse file or a run. A snapshot
of the lake reads each results file's summary (its per-task rollup, summaries.py), written first when
missing or stale, instead of its rows.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from goat_dagster import config
from goat_dagster.analysis.summaries import SummaryPlan, summarize_missing
from goat_dagster.analysis.warehouse_sql import Source, Table, warehouse_sql
from goat_dagster.bench.lake import ResultRow, load_rows
from goat_dagster.bench.manifest import CurrentSetup, current_setup

ROWS_TABLE = "unsaved_results"


def lake_files(con: duckdb.DuckDBPyConnection, directory: Path) -> tuple[list[Path], list[str]]:
    """The complete Parquet files of a lake directory, and a note for each one skipped.

    A file whose footer cannot be read (still being written, or truncated) is skipped, so one run in
    progress never breaks the analysis of the others. The footers are read in one call; only when
    one of them is bad, file by file.
    """
    files = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
    if not files:
        return [], []
    try:
        con.execute("SELECT count(*) FROM parquet_file_metadata(?)", [[str(p) for p in files]]).fetchall()
        return files, []
    except duckdb.Error:
        pass
    good: list[Path] = []
    skipped: list[str] = []
    for path in files:
        try:
            con.execute("SELECT num_rows FROM parquet_file_metadata(?)", [str(path)]).fetchall()
        except duckdb.Error as exc:
            skipped.append(f"{path}: {type(exc).__name__}: {exc}")
            continue
        good.append(path)
    return good, skipped


@dataclass
class LakeSnapshot:
    """An in-memory DuckDB connection with the warehouse objects over the lake files of one moment."""

    con: duckdb.DuckDBPyConnection
    results_files: list[Path] = field(default_factory=list)
    trace_files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    current: CurrentSetup | None = None  # the setup whose runs the leaderboard counts

    def count(self, relation: str) -> int:
        row = self.con.execute(f"SELECT count(*) FROM {relation}").fetchone()
        return int(row[0]) if row else 0


@contextmanager
def _connect() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()


_DEFINES = re.compile(r"CREATE OR REPLACE (?:TEMP TABLE|VIEW|MACRO) (\w+)")


def needed_statements(statements: Sequence[str], objects: Collection[str]) -> list[str]:
    """Of the warehouse statements (in dependency order: each reads only objects defined before
    it), those that define `objects` and everything they read, directly or not. DuckDB binds every
    view and computes every snapshot table it is given: one run's totals need 11 of 21."""
    named = [((m.group(1) if (m := _DEFINES.match(stmt)) else None), stmt) for stmt in statements]
    names = re.compile(r"\b(" + "|".join(re.escape(n) for n, _ in named if n) + r")\b")
    wanted = set(objects)
    for name, stmt in reversed(named):
        if name in wanted:
            wanted.update(names.findall(stmt.partition(" AS")[2]))
    return [stmt for name, stmt in named if name is None or name in wanted]


def _define(
    con: duckdb.DuckDBPyConnection,
    results: Source,
    traces: Source,
    manifests: Source = (),
    current: CurrentSetup | None = None,
    summaries: SummaryPlan | None = None,
    objects: Collection[str] | None = None,
) -> None:
    stored = (summaries.summaries, summaries.unsummarized) if summaries is not None else None
    providers = None if objects is None or "model_providers" in objects else {}  # else read from models.yaml
    statements = warehouse_sql(
        results, traces, manifests, current, snapshot=True, summaries=stored, providers=providers
    )
    for stmt in statements if objects is None else needed_statements(statements, objects):
        con.execute(stmt)


@contextmanager
def open_snapshot(
    paths: config.GoatPaths | None = None,
    *,
    traces: bool = True,
    current: CurrentSetup | None = None,
    summaries: bool = True,
) -> Iterator[LakeSnapshot]:
    """The warehouse SQL over the lake's complete files, in memory (closes on exit); with
    `traces=False` the traces lake is left out (what needs only the results reads less).
    `current`: the setup whose runs the leaderboard counts (default: `current_setup()`, now).
    `summaries`: read each results file's summary (summaries.py; the missing or stale ones are
    written first) instead of its rows; False reads every row (the same numbers, slower)."""
    paths = paths or config.paths()
    current = current or current_setup()
    with _connect() as con:
        results_files, skipped_results = lake_files(con, paths.lake_results)
        trace_files, skipped_traces = lake_files(con, paths.lake_traces) if traces else ([], [])
        manifest_files, skipped_manifests = lake_files(con, paths.lake_runs)
        plan = summarize_missing(con, results_files, paths.lake_summaries) if summaries else None
        _define(con, results_files, trace_files, manifest_files, current, plan)
        skipped = skipped_results + skipped_traces + skipped_manifests
        yield LakeSnapshot(con, results_files, trace_files, skipped, current)


@contextmanager
def open_files(
    results_files: Sequence[Path], trace_files: Sequence[Path] = (), objects: Collection[str] | None = None
) -> Iterator[LakeSnapshot]:
    """The warehouse SQL over these files only (e.g. the one a run has just written, or one run's
    results and its exported traces); `objects`: only these objects and what they read (default:
    every one)."""
    with _connect() as con:
        _define(con, list(results_files), list(trace_files), objects=objects)
        yield LakeSnapshot(con, list(results_files), list(trace_files))


@contextmanager
def open_rows(rows: Sequence[ResultRow]) -> Iterator[LakeSnapshot]:
    """The warehouse SQL over results rows that are not in the lake (an unfinished run's journal)."""
    with _connect() as con:
        load_rows(con, ROWS_TABLE, rows)
        _define(con, Table(ROWS_TABLE), [])
        yield LakeSnapshot(con)


def query(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """Rows of a query as dicts keyed by column name."""
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
