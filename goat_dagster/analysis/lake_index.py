"""The lake's index: every run's summary and every run's manifest, each kind in one Parquet file.

A snapshot of a lake of 200 runs read 200 summaries and 200 one-row manifests, at about 0.3 ms a
file: more than the rest of the SQL. The index holds the same rows in two files, under
`lake/summaries/index/`:

  rollup-<ROLLUP_VERSION>.parquet   the `task_rollup` rows of the summarized runs (summaries.py), each
                                    with the results file it was made from as it was then:
                                    `source_file` (name), `source_size`, `source_mtime_ns`
  manifests-<version>.parquet       the runs lake's rows (`RunManifest`), each with its file's name,
                                    size and modification time the same way
  runs-<TOTALS_VERSION>.parquet     each run's `run_totals` row (totals_sql.py: its counts, interval,
                                    pass@k, cost, tokens, times; made by that statement from the run's
                                    rollup rows), with the results file the run's rows all came from,
                                    the same way: a snapshot aggregates 200 rows, not 200,000

How it is read (snapshot.py): only the rows whose source is still the file of that name, same size,
same modification time (one query: the rows and their check together, from one version of the
file); the files it does not cover are read as before (their own summary, else their rows; their
manifest file). So a replaced results file is never read through the index, and a run is counted
from exactly one place.

Who writes it: any snapshot that found runs the index did not cover (a run finished since, a lake
from before the index) writes it again from what it read — the index's rows still valid and the
summaries of the others — aside and renamed (`copy_to_lake_file`). Two snapshots doing that at once
each write a complete index of what they saw; whichever lands last, every run it lacks is read from
its own summary until the next rewrite: nothing is lost or counted twice. A version of the rollup
statement, of the statements `run_totals` is made by, or of the manifest columns is in the file's
name: another version of goat ignores it. A run's stored totals are read only when every rollup row
of that run in the snapshot comes from the one file they name, as it was; any other run (a new one,
one whose file changed, one spread over several files or read from its rows) is computed by the
statement, and the index written again.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from goat_dagster.analysis.rollup_sql import ROLLUP_VERSION
from goat_dagster.analysis.warehouse_sql import TOTALS_VERSION
from goat_dagster.bench.lake import copy_to_lake_file
from goat_dagster.bench.manifest import MANIFEST_TYPES

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow is imported where it is used, as in task_matrix.py: `goat view` and the CLI start without it
# (DuckDB imports it when it hands a table over).

SOURCE_COLUMNS = ("source_file", "source_size", "source_mtime_ns")
MANIFESTS_VERSION = hashlib.sha256(repr(sorted(MANIFEST_TYPES.items())).encode()).hexdigest()[:16]

Signatures = dict[str, tuple[int, int]]  # file name -> (size, mtime_ns)


def index_dir(summaries_dir: Path) -> Path:
    return summaries_dir / "index"


def rollup_index(summaries_dir: Path) -> Path:
    return index_dir(summaries_dir) / f"rollup-{ROLLUP_VERSION}.parquet"


def manifests_index(summaries_dir: Path) -> Path:
    return index_dir(summaries_dir) / f"manifests-{MANIFESTS_VERSION}.parquet"


def totals_index(summaries_dir: Path) -> Path:
    return index_dir(summaries_dir) / f"runs-{TOTALS_VERSION}.parquet"


def signatures(files: Sequence[Path]) -> Signatures:
    """Each file's name, size and modification time now (a file gone meanwhile is left out)."""
    out: Signatures = {}
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        out[f.name] = (st.st_size, st.st_mtime_ns)
    return out


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _signature_rows(sigs: Signatures) -> tuple[str, dict[str, list[Any]]]:
    """The signatures as a relation (source_file, source_size, source_mtime_ns) and its parameters
    (lists: a tenth of the time DuckDB takes to parse as many VALUES rows)."""
    names = sorted(sigs)
    params = {
        "sig_names": names,
        "sig_sizes": [sigs[n][0] for n in names],
        "sig_mtimes": [sigs[n][1] for n in names],
    }
    return (
        "SELECT unnest($sig_names::VARCHAR[]) AS source_file, unnest($sig_sizes::BIGINT[]) AS source_size, "
        "unnest($sig_mtimes::BIGINT[]) AS source_mtime_ns"
    ), params


def exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether the connection has the table (binding a query of it: a tenth of asking the catalog)."""
    try:
        con.execute(f"SELECT NULL FROM {table} LIMIT 0")
    except duckdb.CatalogException:
        return False
    return True


def load(
    con: duckdb.DuckDBPyConnection,
    index: Path,
    table: str,
    sigs: Signatures,
    columns: Collection[str] | None = None,
) -> set[str]:
    """`table`: the index's rows whose source file is still as it was (`sigs`: the files now);
    returns the names of the files it covers. No index, or an unreadable one: no table and an empty
    set. `columns`: only those of the index's columns (and the source columns): a table that is not
    what the index is written from (`write`).

    The file is read once, with Arrow (strings as dictionaries, as Parquet stores them), and the
    connection scans that Arrow table in place (`register`): copying 200,000 rows into a DuckDB table
    cost more than reading them. When every row's source is still as it was (the usual case), that is
    the table; otherwise the rows of the files still as they were are copied into a temporary one."""
    _drop(con, table)
    if not index.is_file() or not sigs:
        return set()
    rows = _read(index, columns)
    if rows is None or not set(SOURCE_COLUMNS) <= set(rows.column_names):
        return set()  # removed meanwhile, truncated, another layout: read without it
    con.register(table, rows)
    found = con.execute(f"SELECT DISTINCT {', '.join(SOURCE_COLUMNS)} FROM {table}").fetchall()
    if all(sigs.get(name) == (size, mtime) for name, size, mtime in found):
        return {name for name, _, _ in found}
    relation, params = _signature_rows(sigs)  # some files changed since: the rows of the others only
    _copy_registered(con, table, f"SEMI JOIN ({relation}) s USING ({', '.join(SOURCE_COLUMNS)})", params)
    return {name for (name,) in con.execute(f"SELECT DISTINCT source_file FROM {table}").fetchall()}


def _copy_registered(
    con: duckdb.DuckDBPyConnection, table: str, join: str = "", params: dict[str, Any] | None = None
) -> None:
    """The Arrow table `load` registered as `table` replaced by a temporary table of that name with
    its rows (`join`: those of them it keeps), one rows can be added to."""
    con.execute(f"CREATE TEMP TABLE {table}__copy AS SELECT * FROM {table} {join}", params or {})
    con.unregister(table)
    con.execute(f"ALTER TABLE {table}__copy RENAME TO {table}")


def _read(index: Path, columns: Collection[str] | None) -> pa.Table | None:
    """The index file's rows (`columns`: those of them, and the source columns), from one open file;
    None when it cannot be read."""
    import pyarrow as pa  # see the top of the module
    import pyarrow.parquet as pq

    try:
        with index.open("rb") as f:
            schema = pq.ParquetFile(f).schema_arrow
            strings = [
                c.name for c in schema if pa.types.is_string(c.type) or pa.types.is_large_string(c.type)
            ]
            keep = None if columns is None else {*columns, *SOURCE_COLUMNS}
            wanted = None if keep is None else [n for n in schema.names if n in keep]
            return pq.ParquetFile(f, read_dictionary=strings).read(columns=wanted)
    except (OSError, pa.ArrowException):
        return None


def _drop(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Drop `table`, an Arrow table registered by `load` or a temporary table."""
    con.unregister(table)
    con.execute(f"DROP TABLE IF EXISTS {table}")


def add(
    con: duckdb.DuckDBPyConnection, table: str, files: Sequence[Path], sigs: Signatures, exists: bool
) -> bool:
    """Add the rows of these Parquet files (each the one of its source file in `sigs`, by name) to
    `table`, created when it does not exist; returns whether it exists now."""
    if not files:
        return exists
    rows, params = _signature_rows(sigs)
    source = f"""SELECT f.* EXCLUDE (filename), s.source_file, s.source_size, s.source_mtime_ns
        FROM read_parquet([{", ".join(_literal(str(p)) for p in files)}], filename = true,
                          union_by_name = true) f
        JOIN ({rows}) s ON s.source_file = parse_filename(f.filename)"""
    if exists:
        _as_temporary_table(con, table)
        con.execute(f"INSERT INTO {table} BY NAME {source}", params)
    else:
        con.execute(f"CREATE TEMP TABLE {table} AS {source}", params)
    return True


def _as_temporary_table(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """`table` made a temporary table (rows can be added), when it is an Arrow table `load`
    registered."""
    if con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND temporary", [table]
    ).fetchall() != [(1,)]:
        _copy_registered(con, table)


def write(con: duckdb.DuckDBPyConnection, table: str, index: Path) -> None:
    """Write the index from `table` (aside, then renamed); a lake that takes no file is left as it
    is: the runs are read without the index."""
    with contextlib.suppress(OSError, duckdb.Error):
        copy_to_lake_file(con, f"SELECT * FROM {table} ORDER BY source_file", index)
