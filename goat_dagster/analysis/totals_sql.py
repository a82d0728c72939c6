"""The warehouse SQL of a run's own numbers: `run_totals`, and how a snapshot reads them stored.

Part of the warehouse SQL (warehouse_sql.py runs it among its own statements, after `run_intervals`):
  run_totals     one row per run: its counts and error kinds (from `task_rollup`), pass rate with its
                 95% interval, coverage and the errors-as-failures bound (`run_intervals`), pass@k
                 (from `task_outcomes`), cost, tokens, steps and times — everything of `run_summary`
                 that is the run's own; `run_summary` adds its calls (traces) and its recency among
                 the other runs.

A run's totals do not change while its results file does not: the lake index stores each run's row
(lake_index.py, `runs-<TOTALS_VERSION>.parquet`, made by this statement), and a snapshot reads the
stored rows of the runs it can (`StoredTotals`) and computes only the others, with this statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from goat_dagster.bench.lake import ERROR_KINDS


def _sums(*counts: str) -> str:
    """Per-run totals of per-task counts (BIGINT, as the counts themselves)."""
    return ", ".join(f"CAST(sum({c}) AS BIGINT) AS {c}" for c in counts)


RUN_TOTALS = (
    # everything of run_summary that is the run's own (not its calls, not its recency among the
    # others): what the lake index stores per run (lake_index.py), made by this statement
    "run_totals",
    "VIEW",
    f"""CREATE OR REPLACE VIEW run_totals AS
WITH runs AS (
    SELECT run_id, suite, model,
        min(suite_version) AS suite_version,
        min(agent) AS agent,
        min(sandbox) AS sandbox,
        min(started_at) AS started_at,
        max(finished_at) AS finished_at,
        count(*) AS tasks,  -- one row per task
        any_value(run_epochs) AS epochs,
        {_sums("attempts", "passed", "failed", "errors", "unscored")},
        {_sums(*(f"errors_{k}" for k in ERROR_KINDS), "errors_other", "invalid_rows")},
        sum(cost_usd) AS cost_usd,
        {_sums("prompt_tokens", "completion_tokens", "steps", "tool_calls")},
        (epoch_us(max(finished_at)) - epoch_us(min(started_at))) / 1e6 AS wall_s,
        sum(task_s) AS task_s,
        any_value(run_task_p50_s) AS task_p50_s,
        any_value(run_task_p95_s) AS task_p95_s
    FROM task_rollup
    GROUP BY run_id, suite, model
), pass_k AS (
    SELECT o.run_id, o.suite, o.model,
        avg(pass_at_k(o.scored, o.passed, r.epochs)) AS pass_at_k,
        count(*) FILTER (WHERE o.scored >= r.epochs) AS pass_at_k_tasks
    FROM task_outcomes o JOIN runs r USING (run_id, suite, model)
    WHERE r.epochs > 1
    GROUP BY o.run_id, o.suite, o.model
)
SELECT
    r.model, r.suite, r.run_id, r.suite_version, r.agent, r.sandbox, r.started_at, r.finished_at,
    r.tasks, r.epochs, r.attempts,
    r.passed + r.failed AS scored,
    r.passed, r.failed, r.errors, r.unscored,
    {", ".join(f"r.errors_{k}" for k in ERROR_KINDS)}, r.errors_other, r.invalid_rows,
    CAST(r.passed AS DOUBLE) / nullif(r.passed + r.failed, 0) AS pass_rate,
    ri.ci_low,
    ri.ci_high,
    ri.ci_method,
    ri.se,
    ri.planned,
    ri.coverage,
    ri.strict_pass_rate,
    ri.strict_ci_low,
    ri.strict_ci_high,
    CASE WHEN r.epochs > 1 THEN r.epochs END AS k,
    pk.pass_at_k,
    pk.pass_at_k_tasks,
    r.cost_usd,
    r.cost_usd / nullif(r.passed, 0) AS cost_per_solved,
    r.prompt_tokens, r.completion_tokens, r.steps, r.tool_calls, r.wall_s, r.task_s,
    r.task_p50_s, r.task_p95_s
FROM runs r
LEFT JOIN run_intervals ri ON ri.run_id = r.run_id AND ri.suite = r.suite AND ri.model = r.model
LEFT JOIN pass_k pk ON pk.run_id = r.run_id AND pk.suite = r.suite AND pk.model = r.model""",
)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class StoredTotals:
    """`run_totals` rows stored in a table of the connection (the lake index's, with their source
    columns): `stored_runs` are read from it, `computed_runs` (every other run of `task_rollup`)
    by the statement."""

    table: str
    stored_runs: Sequence[str]
    computed_runs: Sequence[str | None]


def run_filter(ids: Sequence[str | None]) -> str:
    """A condition: run_id is one of these (None: NULL) — a constant list, which DuckDB pushes down
    to the scan of a table."""
    named = [i for i in ids if i is not None]
    conditions = [f"run_id IN ({', '.join(_literal(i) for i in named)})"] if named else []
    if len(named) < len(ids):
        conditions.append("run_id IS NULL")
    return " OR ".join(conditions) or "false"


def stored_totals_sql(sql: str, totals: StoredTotals) -> str:
    """`run_totals` as a table: the statement over the computed runs only (DuckDB pushes the filter
    on run_id down to the rows of `task_rollup` those runs have), and the stored runs' rows."""
    stored = (
        f"SELECT * EXCLUDE (source_file, source_size, source_mtime_ns) "
        f"FROM {totals.table} WHERE {run_filter(totals.stored_runs)}"
    )
    if not totals.computed_runs:  # every run's row stored: the statement is not even bound, nor
        return f"CREATE OR REPLACE VIEW run_totals AS\n{stored}"  # the rows copied
    body = sql.partition(" AS\n")[2]
    return (
        f"CREATE OR REPLACE TEMP TABLE run_totals AS\nSELECT * FROM (\n{body}\n)"
        f"\nWHERE {run_filter(totals.computed_runs)}"
        f"\nUNION ALL BY NAME\n{stored}"
    )
