"""The warehouse SQL in memory: over the lake's complete files of one moment (`open_snapshot`), or
over rows not in the lake yet (`open_rows`: a run's journal) — how every number is computed.

A file still being written is skipped and reported, so one run in progress never breaks the
analysis of the others, and nothing here waits on, or blocks, the warehouse file or a run. A snapshot
of the lake reads each results file's summary (its per-task rollup, summaries.py), written first when
missing or stale, instead of its rows; and the summaries and manifests of the runs the lake index
covers from its two files (lake_index.py), which it writes again when it lacked some.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from goat_dagster import config
from goat_dagster.analysis import lake_index
from goat_dagster.analysis.summaries import SummaryPlan, summarize_missing
from goat_dagster.analysis.totals_sql import StoredTotals, run_filter
from goat_dagster.analysis.warehouse_sql import (
    RESULT_COLUMNS,
    TRACE_COLUMNS,
    Source,
    Table,
    lake_relation,
    warehouse_sql,
)
from goat_dagster.bench.lake import ResultRow, load_rows
from goat_dagster.bench.manifest import CurrentSetup, current_setup

ROWS_TABLE = "unsaved_results"


def lake_files(
    con: duckdb.DuckDBPyConnection, directory: Path, candidates: Sequence[Path] | None = None
) -> tuple[list[Path], list[str]]:
    """The complete Parquet files of a lake directory (or of `candidates`, files listed from it
    before), and a note for each one skipped.

    A file whose footer cannot be read (still being written, or truncated) is skipped, so one run in
    progress never breaks the analysis of the others. The footers are read in one call; only when
    one of them is bad, file by file.
    """
    files = _listed(directory) if candidates is None else list(candidates)
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


def _listed(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.parquet")) if directory.is_dir() else []


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


_shared: tuple[int, duckdb.DuckDBPyConnection] | None = None  # (pid, the process's in-memory database)
_shared_lock = threading.Lock()


def _database() -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB database the snapshots open their connections on: opening and
    closing a database costs ~13 ms each time, a connection to an open one ~0.3 ms. It holds no
    object of its own: a snapshot's are temporary (`_temporary`), its connection's alone, dropped
    when it closes. A forked child (DuckDB's threads do not survive a fork) opens its own."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared[0] != os.getpid():
            _shared = (os.getpid(), duckdb.connect(":memory:"))
        return _shared[1]


@contextmanager
def _connect(private: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection of its own to the process's database (`private`: a database of its own, for
    what creates objects that are not temporary, such as `open_rows`' table)."""
    con = duckdb.connect(":memory:") if private else _database().cursor()
    try:
        con.execute("SET TimeZone = 'UTC'")  # every snapshot's, so the same for the whole database
        yield con
    finally:
        con.close()


def _temporary(stmt: str) -> str:
    """A warehouse statement's view or macro made temporary: seen by its own connection only."""
    for kind in ("VIEW", "MACRO"):
        prefix = f"CREATE OR REPLACE {kind} "
        if stmt.startswith(prefix):
            return f"CREATE OR REPLACE TEMP {kind} " + stmt[len(prefix) :]
    return stmt


_DEFINES = re.compile(r"CREATE OR REPLACE (?:TEMP TABLE|VIEW|MACRO) (\w+)")


def needed_statements(statements: Sequence[str], objects: Collection[str]) -> list[str]:
    """Of the warehouse statements (in dependency order: each reads only objects defined before
    it), those that define `objects` and everything they read, directly or not. DuckDB binds every
    view and computes every snapshot table it is given: one run's totals need 11 of 22."""
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
    summaries: tuple[Sequence[Path] | Table, Sequence[Path]] | None = None,
    objects: Collection[str] | None = None,
    totals: StoredTotals | None = None,
    traces_lack_runs: bool = True,
) -> set[str]:
    """Define the warehouse objects (`objects`: those and what they read); returns the names
    defined."""
    stored = summaries
    providers = None if objects is None or "model_providers" in objects else {}  # else read from models.yaml
    statements = warehouse_sql(
        results,
        traces,
        manifests,
        current,
        snapshot=True,
        summaries=stored,
        providers=providers,
        totals=totals,
        traces_lack_runs=traces_lack_runs,
    )
    defined: set[str] = set()
    for stmt in statements if objects is None else needed_statements(statements, objects):
        con.execute(_temporary(stmt))
        if m := _DEFINES.match(stmt):
            defined.add(m.group(1))
    return defined


@contextmanager
def open_snapshot(
    paths: config.GoatPaths | None = None,
    *,
    traces: bool = True,
    current: CurrentSetup | None = None,
    summaries: bool = True,
    objects: Collection[str] | None = None,
) -> Iterator[LakeSnapshot]:
    """The warehouse SQL over the lake's complete files, in memory (closes on exit); with
    `traces=False` the traces lake is left out (what needs only the results reads less).
    `current`: the setup whose runs the leaderboard counts (default: `current_setup()`, now).
    `summaries`: read each results file's summary (summaries.py; the missing or stale ones are
    written first) instead of its rows; False reads every row (the same numbers, slower).
    `objects`: only these objects and what they read (default: every one)."""
    paths = paths or config.paths()
    current = current or current_setup()
    with _connect() as con:
        trace_files, skipped_traces = lake_files(con, paths.lake_traces) if traces else ([], [])
        totals: StoredTotals | None = None
        if summaries:
            columns = _rollup_columns(objects, current)
            results_files, skipped_results, rollup, narrow = _indexed_results(con, paths, columns)
            manifests, skipped_manifests = _indexed_manifests(con, paths)
            totals, storable = _stored_totals(con, paths, rollup[1])
            if narrow and (totals is None or totals.computed_runs):
                # a run's totals computed from its rollup rows read every column: read them again
                results_files, skipped_results, rollup, _ = _indexed_results(con, paths)
                totals, storable = _stored_totals(con, paths, rollup[1])
        else:
            results_files, skipped_results = lake_files(con, paths.lake_results)
            manifests, skipped_manifests = lake_files(con, paths.lake_runs)
            rollup = None
        lookup = _some_trace_lacks_its_run(con, trace_files)
        defined = _define(
            con, results_files, trace_files, manifests, current, rollup, objects, totals, lookup
        )
        if totals is not None and storable and "run_totals" in defined:  # `objects` may leave it out
            _write_totals(con, paths, storable)
        skipped = skipped_results + skipped_traces + skipped_manifests
        yield LakeSnapshot(con, results_files, trace_files, skipped, current)


def _some_trace_lacks_its_run(con: duckdb.DuckDBPyConnection, trace_files: Sequence[Path]) -> bool:
    """Whether a trace of these files names no run (`calls` then finds it in the results by its
    trace_id); reads only their run_id column."""
    if not trace_files:
        return False
    row = con.execute(
        f"SELECT count(*) FROM ({lake_relation(TRACE_COLUMNS, trace_files)}) WHERE run_id IS NULL"
    ).fetchone()
    return bool(row and row[0])


ROLLUP_TABLE, MANIFESTS_TABLE, TOTALS_TABLE = "indexed_rollup", "indexed_manifests", "indexed_totals"


def _rollup_columns(objects: Collection[str] | None, current: CurrentSetup | None) -> set[str] | None:
    """The `task_rollup` columns the statements that define `objects` can read when every run's
    totals are stored (then `run_totals` reads none): every word of those that read it. None (every column)
    when the caller reads `task_rollup` itself or did not say what it reads. A column left out
    that a statement reads fails that statement: never a number read as NULL."""
    if objects is None or "task_rollup" in objects:
        return None
    statements = warehouse_sql(
        [], [], [], current, snapshot=True, providers={}, summaries=(Table(ROLLUP_TABLE), []),
        totals=StoredTotals(TOTALS_TABLE, ["-"], []), traces_lack_runs=False,
    )  # fmt: skip
    reading = [
        stmt.partition(" AS")[2]
        for stmt in needed_statements(statements, objects)
        if _READS_ROLLUP.search(stmt.partition(" AS")[2])
    ]
    return set(re.findall(r"\w+", "\n".join(reading)))


_READS_ROLLUP = re.compile(r"\btask_rollup\b")


def _indexed_results(
    con: duckdb.DuckDBPyConnection, paths: config.GoatPaths, columns: Collection[str] | None = None
) -> tuple[list[Path], list[str], tuple[Sequence[Path] | Table, Sequence[Path]], bool]:
    """The results files, the notes of those skipped, and what `task_rollup` reads: the lake
    index's rows of the files it covers (lake_index.py), the summaries of the others (written first
    when missing or stale: summaries.py), the rows of the files left. The index is written again
    when it lacked a run that has a summary. `columns`: only those of the index's rows while it
    covers every file (then nothing is written from them; the last item says whether it did)."""
    listed = _listed(paths.lake_results)
    sigs = lake_index.signatures(listed)
    index = lake_index.rollup_index(paths.lake_summaries)
    names = lake_index.load(con, index, ROLLUP_TABLE, sigs, columns)
    narrow = columns is not None and len(names) == len(sigs) > 0
    if columns is not None and not narrow:  # the index is written again: every column
        names = lake_index.load(con, index, ROLLUP_TABLE, sigs)
    covered = [f for f in listed if f.name in names]
    # the others as listed with the signatures: a file landing from now on waits for the next snapshot
    rest, skipped = lake_files(con, paths.lake_results, [f for f in listed if f.name not in names])
    plan: SummaryPlan = summarize_missing(con, rest, paths.lake_summaries)
    stored = _add_summaries(con, plan, sigs, paths.lake_results)
    if plan.summaries:
        lake_index.write(con, ROLLUP_TABLE, index)
    rollup = (Table(ROLLUP_TABLE) if stored else [], plan.unsummarized)
    return sorted([*covered, *rest]), skipped, rollup, narrow


def _add_summaries(
    con: duckdb.DuckDBPyConnection, plan: SummaryPlan, sigs: lake_index.Signatures, results_dir: Path
) -> bool:
    """The plan's summaries added to the index table. Another process may replace a summary while
    DuckDB reads it (a run writing its own summary that this snapshot also wrote: the same rows,
    renamed into place), and a scan that opened the file before the rename and reads it after fails
    ("Invalid data"); the files are complete again at once, so the read is tried again, and a third
    failure reads those runs' rows instead."""
    for _ in range(3):
        exists = lake_index.exists(con, ROLLUP_TABLE)
        try:
            return lake_index.add(con, ROLLUP_TABLE, plan.summaries, sigs, exists)
        except duckdb.Error:
            continue
    plan.unsummarized.extend(results_dir / s.name for s in plan.summaries)  # summary_file's inverse
    plan.summaries.clear()
    return lake_index.exists(con, ROLLUP_TABLE)


def _indexed_manifests(con: duckdb.DuckDBPyConnection, paths: config.GoatPaths) -> tuple[Source, list[str]]:
    """The runs lake through the index the same way: its rows of the files it covers, the others'
    files (and the index written again with them)."""
    listed = _listed(paths.lake_runs)
    sigs = lake_index.signatures(listed)
    index = lake_index.manifests_index(paths.lake_summaries)
    names = lake_index.load(con, index, MANIFESTS_TABLE, sigs)
    rest, skipped = lake_files(con, paths.lake_runs, [f for f in listed if f.name not in names])
    try:
        stored = lake_index.add(con, MANIFESTS_TABLE, rest, sigs, lake_index.exists(con, MANIFESTS_TABLE))
    except duckdb.Error:  # a manifest file the index's columns cannot take: read the files
        files, skipped = lake_files(con, paths.lake_runs)
        return files, skipped
    if rest:
        lake_index.write(con, MANIFESTS_TABLE, index)
    return (Table(MANIFESTS_TABLE) if stored else []), skipped


def _stored_totals(
    con: duckdb.DuckDBPyConnection, paths: config.GoatPaths, unsummarized: Sequence[Path]
) -> tuple[StoredTotals | None, list[str]]:
    """Which runs' `run_totals` rows are read from the lake index (lake_index.py) and which are
    computed, and the runs the index should hold but lacks (then written again, `_write_totals`).

    A run's stored totals are read only when all its rollup rows in this snapshot come from one
    results file, through its summary or the index, and the stored row names that file as those rows
    do (name, size, modification time): a run with rows read from a results file, or spread over
    several files, is always computed."""
    if not lake_index.exists(con, ROLLUP_TABLE):
        return None, []
    sources: dict[str, set[tuple[str, int, int]]] = {}
    for run_id, *source in con.execute(
        f"SELECT DISTINCT run_id, {', '.join(lake_index.SOURCE_COLUMNS)} FROM {ROLLUP_TABLE}"
    ).fetchall():
        sources.setdefault(run_id, set()).add(tuple(source))
    from_rows: set[str] = set()
    if unsummarized:
        from_rows = {
            r
            for (r,) in con.execute(
                f"SELECT DISTINCT run_id FROM ({lake_relation(RESULT_COLUMNS, unsummarized)})"
            ).fetchall()
        }
    single = {
        run_id: next(iter(found))
        for run_id, found in sources.items()
        if run_id is not None and len(found) == 1 and run_id not in from_rows
    }
    sigs = {name: (size, mtime) for name, size, mtime in single.values()}
    lake_index.load(con, lake_index.totals_index(paths.lake_summaries), TOTALS_TABLE, sigs)
    stored: dict[str, set[tuple[str, int, int]]] = {}
    if lake_index.exists(con, TOTALS_TABLE):
        for run_id, *source in con.execute(
            f"SELECT run_id, {', '.join(lake_index.SOURCE_COLUMNS)} FROM {TOTALS_TABLE}"
        ).fetchall():
            stored.setdefault(run_id, set()).add(tuple(source))
    else:
        con.execute(
            f"""CREATE TEMP TABLE {TOTALS_TABLE} AS SELECT NULL::VARCHAR AS run_id,
            NULL::VARCHAR AS source_file, NULL::BIGINT AS source_size, NULL::BIGINT AS source_mtime_ns
            LIMIT 0"""
        )
    good = sorted(r for r, source in single.items() if stored.get(r) == {source})
    computed = [
        *sorted((set(sources) | from_rows) - set(good) - {None}),
        *([None] if None in sources else []),
    ]
    # written again when it lacks a run it could hold: then with every such run
    return StoredTotals(TOTALS_TABLE, good, computed), sorted(single) if len(good) < len(single) else []


def _write_totals(con: duckdb.DuckDBPyConnection, paths: config.GoatPaths, runs: Sequence[str]) -> None:
    """The lake index's `run_totals` written again: the rows of `runs` (each read from one summarized
    file), each with that file's signature."""
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW totals_to_index AS
        SELECT * FROM (
            SELECT t.*, s.source_file, s.source_size, s.source_mtime_ns
            FROM run_totals t JOIN (
                SELECT DISTINCT run_id, {", ".join(lake_index.SOURCE_COLUMNS)} FROM {ROLLUP_TABLE}
            ) s ON s.run_id = t.run_id
        ) WHERE {run_filter(runs)}"""
    )
    lake_index.write(con, "totals_to_index", lake_index.totals_index(paths.lake_summaries))


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
    with _connect(private=True) as con:  # the rows' table is not temporary
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
