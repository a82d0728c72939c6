"""The one pass over the results rows: `task_rollup`, one row per (run, task) with everything the
numbers above it need (part of the warehouse SQL; warehouse_sql.py runs it before the others).

`task_outcomes`, `run_summary` (its counts, sums, quantiles and distinct epochs), `run_intervals` and
`task_health` all read `task_rollup`, never the rows: a run's per-task rollup is all they need, and it
is a fifth of the rows with five epochs. That is what makes a run's stored summary possible
(summaries.py: `lake/summaries/<run_id>.parquet` holds exactly these rows of the run, made by this
statement over its results file): a snapshot reads a run's summary instead of its results, and
computes the rollup from the results of the runs that have none. Either way the rows come from this
one statement, and every number from the same SQL above it.

The numbers of a run that do not add up from its tasks' are on each of its rows, the same on all:
`run_epochs` (its distinct epochs), `run_task_p50_s` and `run_task_p95_s` (quantiles of the wall
times of its scored attempts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from goat_dagster.bench.lake import ERROR_KINDS, STATUSES


def _sql_list(values: Sequence[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


_KIND_COUNTS = ",\n    ".join(
    f"count(*) FILTER (WHERE status = 'error' AND error_kind = '{k}') AS errors_{k}" for k in ERROR_KINDS
)

# The rollup of the rows of a relation `results` (a view over Parquet files, or a run's rows): per
# task, and the few numbers of its run that do not add up from its tasks' (`run_*`, the same on every
# row of a run: the quantiles of its scored attempts' wall times, its distinct epochs).
ROLLUP_SELECT = f"""WITH per_task AS (
SELECT run_id, suite, model, task_id,
    min(suite_version) AS suite_version,
    min(agent) AS agent,
    min(sandbox) AS sandbox,
    min(started_at) AS started_at,
    max(finished_at) AS finished_at,
    count(*) AS attempts,
    count(*) FILTER (WHERE status IN ('passed', 'failed')) AS scored,
    count(*) FILTER (WHERE status = 'passed') AS passed,
    count(*) FILTER (WHERE status = 'failed') AS failed,
    count(*) FILTER (WHERE status = 'error') AS errors,
    count(*) FILTER (WHERE status = 'unscored') AS unscored,
    {_KIND_COUNTS},
    count(*) FILTER (WHERE status = 'error' AND (error_kind IS NULL
        OR error_kind NOT IN ({_sql_list(ERROR_KINDS)}))) AS errors_other,
    count(*) FILTER (WHERE status IS NULL OR status NOT IN ({_sql_list(STATUSES)})) AS invalid_rows,
    -- the distinct kinds, sorted, comma-separated (as string_agg(DISTINCT ... ORDER BY ...), at a
    -- third of its cost over a large lake)
    array_to_string(list_sort(list_distinct(
        list(coalesce(error_kind, 'unknown')) FILTER (WHERE status = 'error'))), ',') AS error_kinds,
    median(wall_s) AS wall_s,
    sum(wall_s) AS task_s,
    sum(cost_usd) AS cost_usd,
    CAST(sum(prompt_tokens) AS BIGINT) AS prompt_tokens,
    CAST(sum(completion_tokens) AS BIGINT) AS completion_tokens,
    CAST(sum(steps) AS BIGINT) AS steps,
    CAST(sum(tool_calls) AS BIGINT) AS tool_calls,
    list_unique(list(epoch)) AS epochs  -- count(DISTINCT epoch), at a third of its cost
FROM {{source}}
GROUP BY run_id, suite, model, task_id
), per_run AS (
SELECT run_id, suite, model,
    count(DISTINCT epoch) AS run_epochs,
    quantile_cont(wall_s, 0.5) FILTER (WHERE status IN ('passed', 'failed')) AS run_task_p50_s,
    quantile_cont(wall_s, 0.95) FILTER (WHERE status IN ('passed', 'failed')) AS run_task_p95_s
FROM {{source}}
GROUP BY run_id, suite, model
)
SELECT t.*, r.run_epochs, r.run_task_p50_s, r.run_task_p95_s
FROM per_task t JOIN per_run r ON r.run_id IS NOT DISTINCT FROM t.run_id
    AND r.suite IS NOT DISTINCT FROM t.suite AND r.model IS NOT DISTINCT FROM t.model"""

# A stored summary is used only when it was made by this very statement.
ROLLUP_VERSION = hashlib.sha256(ROLLUP_SELECT.encode()).hexdigest()[:16]


def rollup_of(source: str) -> str:
    """The rollup SELECT over a relation (a view or a table name)."""
    return ROLLUP_SELECT.format(source=source)


def task_rollup_sql(source: str | None, stored: Sequence[Path] = (), stored_table: str | None = None) -> str:
    """The `task_rollup` view: the rollup of `source`'s rows, and the rows of the stored summaries
    `stored` (summaries.py: of other results files than those `source` reads) or of the table
    `stored_table` (the lake index's rows, lake_index.py: their source columns left out).
    `source` None (every file has its summary): the stored rows only, no rollup of an empty
    relation for DuckDB to bind again in every view and query that reads this one."""
    parts = [rollup_of(source)] if source is not None else []
    if stored:
        files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in stored)
        parts.append(f"SELECT * FROM read_parquet([{files}])")
    if stored_table:
        parts.append(f"SELECT * EXCLUDE (source_file, source_size, source_mtime_ns) FROM {stored_table}")
    assert parts, "task_rollup of nothing"
    body = "\nUNION ALL BY NAME\n".join(parts)
    return f"CREATE OR REPLACE VIEW task_rollup AS\n{body}"
