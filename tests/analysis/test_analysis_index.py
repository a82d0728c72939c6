"""The lake index's loading (lake_index.load): the rows of the files still as they were, read once;
never a row of a file changed since, however the index is read."""

from __future__ import annotations

from pathlib import Path

import duckdb

from goat_dagster.analysis import lake_index


def _index(tmp_path: Path) -> tuple[Path, lake_index.Signatures]:
    """An index of two source files (two rows each) and the files' signatures now."""
    sigs = {"a.parquet": (10, 100), "b.parquet": (20, 200)}
    index = tmp_path / "rollup.parquet"
    with duckdb.connect() as con:
        con.execute(
            """COPY (SELECT * FROM (VALUES
                    ('run-a', 't1', 'a.parquet', 10, 100), ('run-a', 't2', 'a.parquet', 10, 100),
                    ('run-b', 't1', 'b.parquet', 20, 200), ('run-b', 't2', 'b.parquet', 20, 200))
                AS t(run_id, task_id, source_file, source_size, source_mtime_ns)) TO ? (FORMAT parquet)""",
            [str(index)],
        )
    return index, sigs


def _rows(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return sorted(con.execute("SELECT run_id, task_id FROM idx").fetchall())


def test_an_index_whose_files_are_unchanged_is_read_whole(tmp_path: Path) -> None:
    index, sigs = _index(tmp_path)
    with duckdb.connect() as con:
        assert lake_index.load(con, index, "idx", sigs) == {"a.parquet", "b.parquet"}
        assert len(_rows(con)) == 4
        assert lake_index.load(con, index, "idx", sigs, columns={"task_id"}) == {"a.parquet", "b.parquet"}
        names = {n for n, *_ in con.execute("DESCRIBE idx").fetchall()}
        assert names == {"task_id", *lake_index.SOURCE_COLUMNS}  # only the columns asked for


def test_the_rows_of_a_file_changed_since_are_never_read(tmp_path: Path) -> None:
    index, sigs = _index(tmp_path)
    sigs["b.parquet"] = (21, 200)  # b was written again since the index
    with duckdb.connect() as con:
        assert lake_index.load(con, index, "idx", sigs) == {"a.parquet"}
        assert _rows(con) == [("run-a", "t1"), ("run-a", "t2")]
        del sigs["a.parquet"]  # a is gone: nothing of the index is still valid
        assert lake_index.load(con, index, "idx", sigs) == set()
        assert _rows(con) == []  # the table exists, empty: the others are added to it


def test_rows_are_added_to_an_index_read_whole_and_a_broken_index_is_not_read(tmp_path: Path) -> None:
    index, sigs = _index(tmp_path)
    summary = tmp_path / "c.summary.parquet"
    with duckdb.connect() as con:
        con.execute("COPY (SELECT 'run-c' AS run_id, 't1' AS task_id) TO ? (FORMAT parquet)", [str(summary)])
        assert lake_index.load(con, index, "idx", sigs) == {"a.parquet", "b.parquet"}
        sigs[summary.name] = (5, 500)
        assert lake_index.add(con, "idx", [summary], sigs, lake_index.exists(con, "idx"))
        assert ("run-c", "t1") in _rows(con) and len(_rows(con)) == 5
        index.write_bytes(index.read_bytes()[:40])  # truncated
        assert lake_index.load(con, index, "idx", sigs) == set()
        assert not lake_index.exists(con, "idx")
