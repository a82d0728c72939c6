"""The summaries lake: each results file's per-task rollup, `lake/summaries/<run_id>.parquet`.

A summary holds the `task_rollup` rows (rollup_sql.py) of one results file, made by that statement
over that file: with five epochs a fifth of its rows, and all the analysis needs of them. A snapshot
of the lake (snapshot.py) reads the summaries that are still their file's, and the rows of the
files that have none, through the same statement: the numbers are the same either way.

- When: `analysis.runs.summarize_run` writes the summary of a run as soon as its results file is
  written (`goat run` and the `benchmark_results` asset call it after every run); a snapshot of the
  lake writes the ones that are missing or stale first (a lake from before summaries, a run killed
  between its results and its summary, a resumed run that replaced its file). When it cannot (a
  read-only lake), it reads those files' rows instead.
- Whose: the Parquet footer of a summary records the size and modification time (ns) of the results
  file it was made from, and the version of the rollup statement; a summary that does not match
  its file as it is now, or the statement of this code, is not used (and is rewritten).
- Concurrency: one file per run, written aside and renamed (`bench.lake.copy_to_lake_file`); two
  writers of one summary (the run, a snapshot) write the same rows, and a reader sees one or the
  other whole. A summary is checked against its results file at every read, so a replaced results
  file is never read through an older summary: no row is lost or counted twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from goat_dagster.analysis.rollup_sql import ROLLUP_VERSION, rollup_of
from goat_dagster.analysis.warehouse_sql import RESULT_COLUMNS, lake_relation
from goat_dagster.bench.lake import copy_to_lake_file

# Parquet footer keys of a summary: the results file it was made from, as it was then, and the version
# of the statement that made it.
SIGNATURE_KEYS = ("source_size", "source_mtime_ns", "rollup_version")


@dataclass(frozen=True)
class SummaryPlan:
    """What a snapshot reads for the results files of one moment: the summaries that are theirs,
    and the results files that have none (read row by row)."""

    summaries: list[Path] = field(default_factory=list)
    unsummarized: list[Path] = field(default_factory=list)


def summary_file(summaries_dir: Path, results_file: Path) -> Path:
    return summaries_dir / results_file.name


def _signature(results_file: Path) -> dict[str, str]:
    st = results_file.stat()
    return {
        "source_size": str(st.st_size),
        "source_mtime_ns": str(st.st_mtime_ns),
        "rollup_version": ROLLUP_VERSION,
    }


def _kv(values: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}: '{v}'" for k, v in values.items()) + "}"


def write_summary(
    results_file: Path, summaries_dir: Path, con: duckdb.DuckDBPyConnection | None = None
) -> Path:
    """Write (or replace) the summary of a results file; returns its path. `con`: a connection to
    use (a new one by default)."""
    signature = _signature(results_file)  # before reading: a file replaced meanwhile leaves it stale
    if con is None:
        with duckdb.connect(":memory:") as own:
            own.execute("SET TimeZone = 'UTC'")
            return write_summary(results_file, summaries_dir, own)
    source = f"summary_source_{uuid.uuid4().hex[:8]}"
    con.execute(f"CREATE TEMP VIEW {source} AS {lake_relation(RESULT_COLUMNS, [results_file])}")
    try:
        target = summary_file(summaries_dir, results_file)
        return copy_to_lake_file(con, rollup_of(source), target, kv_metadata=_kv(signature))
    finally:
        con.execute(f"DROP VIEW IF EXISTS {source}")


def plan_summaries(
    con: duckdb.DuckDBPyConnection, results_files: Sequence[Path], summaries_dir: Path
) -> SummaryPlan:
    """Which of these results files have a summary that is still theirs."""
    candidates = [summary_file(summaries_dir, f) for f in results_files]
    present = [s for s in candidates if s.is_file()]
    found: dict[str, dict[str, str]] = {}
    if present:
        try:
            rows = con.execute(
                "SELECT file_name, decode(key), decode(value) FROM parquet_kv_metadata(?)",
                [[str(p) for p in present]],
            ).fetchall()
        except duckdb.Error:  # an unreadable summary: read the rows of every file this time
            rows = []
        for name, key, value in rows:
            found.setdefault(name, {})[key] = value
    plan = SummaryPlan()
    for results_file, summary in zip(results_files, candidates, strict=True):
        try:
            expected = _signature(results_file)
        except OSError:  # gone since it was listed
            continue
        mine = found.get(str(summary), {})
        if all(mine.get(k) == expected[k] for k in SIGNATURE_KEYS):
            plan.summaries.append(summary)
        else:
            plan.unsummarized.append(results_file)
    return plan


def summarize_missing(
    con: duckdb.DuckDBPyConnection, results_files: Sequence[Path], summaries_dir: Path
) -> SummaryPlan:
    """`plan_summaries` after writing the summaries that are missing or stale; a file whose summary
    cannot be written (a read-only lake, a file replaced or removed meanwhile) stays unsummarized."""
    plan = plan_summaries(con, results_files, summaries_dir)
    if not plan.unsummarized:
        return plan
    for results_file in plan.unsummarized:
        try:
            write_summary(results_file, summaries_dir, con)
        except (OSError, duckdb.Error):
            continue
    return plan_summaries(con, results_files, summaries_dir)
