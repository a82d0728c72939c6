"""DuckDB over the results and traces lake: one set of SQL, two ways to run it.

- `ensure_warehouse()` keeps the views in `$GOAT_HOME/warehouse.duckdb` for people who open the file
  themselves (`duckdb .goat/warehouse.duckdb`, then `SELECT * FROM leaderboard`). The views read the
  lake through globs, so the file only needs writing when a view is missing or its SQL changed
  (tracked as a version in `goat_warehouse_meta`). DuckDB allows one read-write process per file, so
  the write is short, retried on lock errors, and skipped (state "busy") if the file stays locked.
- `open_snapshot()` runs the same SQL in an in-memory connection over the Parquet files that are
  complete right now (a file still being written is skipped and reported), so computing the
  leaderboard never waits on, or blocks, the warehouse file or a benchmark run writing the lake.

Objects (all in schema main):
  results        the results lake, DESIGN §6 columns with their types (one row per task x epoch)
  traces         the traces lake, `TraceRecord` columns (one row per LLM call)
  calls          traces de-duplicated by call_id, run_id filled in from results.trace_id, latency_s
                 filled in from end_time - start_time when missing
  task_outcomes  one row per (run, task): attempts, scored, passed, failed, errors, outcome, cell
  run_intervals  one row per run: planned attempts, scored, coverage (scored / planned), pass rate with
                 its 95% interval (Wilson with one epoch; task-clustered, Miller 2024, with several),
                 and the same for errors counted as failures (strict_pass_rate, strict_ci_low/high)
  run_summary    one row per run: counts, pass rate with its 95% interval (run_intervals), pass@k,
                 cost, latency, tokens, and `recency` (1 = the latest run of its (model, suite))
  leaderboard    run_summary of the latest run per (model, suite)
  task_matrix    task_outcomes of those same runs (long form: suite, task_id, model, cell)
  task_health    one row per task of each suite's current version (its newest run's): the latest oracle
                 run's outcome, how many models' latest runs scored / passed / failed it, models whose
                 epochs disagree (flaky), infra errors; `flags`: oracle fails, flaky, every model
                 fails / passes (2+ models), infra errors
  macros         wilson_low(x, n), wilson_high(x, n), clustered_se(sq, cross, n), pass_at_k(n, c, k),
                 pass_at(k) -> per-run pass@k table, ab_compare(run_a, run_b) -> per-task flips

Conventions (the numbers a user reads):
- An attempt is one (task, epoch) row. `status = 'error'` rows are infrastructure (error_kind infra,
  timeout, agent or budget) and are never scored: pass_rate = passed / (passed + failed).
- The 95% interval (z = 1.95996): Wilson's score interval over scored attempts for a run of one epoch;
  with epochs > 1, s +- z SE with the task-clustered SE of Miller 2024 (analysis/stats.py: attempts of
  one task are not independent). Coverage = scored / planned attempts; the strict pass rate counts
  errors as failures (passed / planned), so a run with many errors cannot look better than it is.
- pass@k (Chen et al. 2021, unbiased estimator 1 - C(n-c, k) / C(n, k), n scored and c passed attempts
  of a task, averaged over tasks with n >= k) with k = the run's number of epochs, when that is > 1.
  `pass_at(k)` gives any other k.
- A run is identified by run_id; it "starts" at its earliest started_at. The run that counts for a
  model is the latest run per (model, suite): latest start, then latest finish, then greatest run_id.
- A task's outcome in a run: 'passed' if a strict majority of its scored attempts passed, 'failed' if
  it had scored attempts otherwise, 'error' if none was scored (only errors).
- Latency: per call from traces (latency_s), per task from results.wall_s of scored attempts;
  percentiles are quantile_cont (linear interpolation, as numpy's default).
- A run's wall_s is its first task's start to its last task's finish (as `goat run` and `goat
  results` report it); task_s is the sum of its tasks' wall_s (more than wall_s with parallel tasks).
- cost_per_solved = total cost_usd of the run (errors included: they were paid for) / passed attempts.
"""

from __future__ import annotations

import hashlib
import time
import types
import typing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import duckdb

from goat_dagster import config
from goat_dagster.analysis.stats import Z95
from goat_dagster.tracing.schema import TraceRecord

# DESIGN §6: the results row. Order and names are the contract.
RESULT_COLUMNS: dict[str, str] = {
    "run_id": "VARCHAR",
    "suite": "VARCHAR",
    "suite_version": "VARCHAR",
    "model": "VARCHAR",
    "agent": "VARCHAR",
    "sandbox": "VARCHAR",
    "task_id": "VARCHAR",
    "epoch": "INTEGER",
    "status": "VARCHAR",
    "error_kind": "VARCHAR",
    "started_at": "TIMESTAMPTZ",
    "finished_at": "TIMESTAMPTZ",
    "wall_s": "DOUBLE",
    "steps": "INTEGER",
    "tool_calls": "INTEGER",
    "prompt_tokens": "BIGINT",
    "completion_tokens": "BIGINT",
    "cost_usd": "DOUBLE",
    "trace_id": "VARCHAR",
}

ERROR_KINDS = ("infra", "timeout", "agent", "budget")

Z_95 = Z95  # 1.959963984540054, the one z of every 95% interval (analysis/stats.py)

META_TABLE = "goat_warehouse_meta"
LOCK_TIMEOUT_S = 10.0


def _duckdb_type(annotation: Any) -> str:
    """The DuckDB type of a `TraceRecord` field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _duckdb_type(args[0])
    if origin is Literal or annotation is str:
        return "VARCHAR"
    if origin is list and typing.get_args(annotation) == (str,):
        return "VARCHAR[]"
    simple = {bool: "BOOLEAN", int: "BIGINT", float: "DOUBLE", datetime: "TIMESTAMPTZ"}
    if annotation in simple:
        return simple[annotation]
    raise TypeError(f"TraceRecord field type {annotation!r} has no DuckDB mapping in analysis/warehouse.py")


# `TraceRecord` is the row schema of the traces lake; the view follows it field for field.
TRACE_COLUMNS: dict[str, str] = {
    name: _duckdb_type(f.annotation) for name, f in TraceRecord.model_fields.items()
}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _lake_relation(columns: dict[str, str], source: str | Sequence[Path]) -> str:
    """SELECT of exactly `columns` (typed) from Parquet files: a glob string or a list of files.

    A zero-row typed relation is unioned in by name, so the view works on an empty lake and on files
    that lack a column (an older writer) or stored one with another type (e.g. all-null, or a
    timestamp written as an ISO string); every column is then cast to its contract type.
    """
    typed_empty = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in columns.items())
    casts = ",\n    ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in columns.items())
    if isinstance(source, str):
        files = f"read_parquet({_literal(source)}, union_by_name = true, allow_empty = true)"
    elif source:
        files = "read_parquet([{}], union_by_name = true)".format(", ".join(_literal(str(p)) for p in source))
    else:
        files = None
    body = f"(SELECT {typed_empty} LIMIT 0)"
    if files:
        body = f"{body}\n    UNION ALL BY NAME\n    SELECT * FROM {files}"
    return f"SELECT\n    {casts}\nFROM (\n    {body}\n)"


def _z(power: int = 1) -> str:
    return repr(Z_95**power)


# (name, kind for DROP, statement)
ANALYSIS_SQL: list[tuple[str, str, str]] = [
    (
        "wilson_low",
        "MACRO",
        f"""CREATE OR REPLACE MACRO wilson_low(x, n) AS
CASE WHEN n > 0 THEN greatest(0.0,
    (CAST(x AS DOUBLE) / n + {_z(2)} / (2 * n)
     - {_z()} * sqrt((CAST(x AS DOUBLE) / n) * (1 - CAST(x AS DOUBLE) / n) / n + {_z(2)} / (4 * n * n)))
    / (1 + {_z(2)} / n)) END""",
    ),
    (
        "wilson_high",
        "MACRO",
        f"""CREATE OR REPLACE MACRO wilson_high(x, n) AS
CASE WHEN n > 0 THEN least(1.0,
    (CAST(x AS DOUBLE) / n + {_z(2)} / (2 * n)
     + {_z()} * sqrt((CAST(x AS DOUBLE) / n) * (1 - CAST(x AS DOUBLE) / n) / n + {_z(2)} / (4 * n * n)))
    / (1 + {_z(2)} / n)) END""",
    ),
    (
        # 1 - C(n-c, k) / C(n, k) via log-gamma: C(n-c,k)/C(n,k) = (n-c)! (n-k)! / ((n-c-k)! n!)
        "pass_at_k",
        "MACRO",
        """CREATE OR REPLACE MACRO pass_at_k(n, c, k) AS
CASE WHEN k < 1 OR n < k THEN NULL
     WHEN n - c < k THEN 1.0
     ELSE 1.0 - exp(lgamma(n - c + 1) + lgamma(n - k + 1) - lgamma(n - c - k + 1) - lgamma(n + 1)) END""",
    ),
    (
        "calls",
        "VIEW",
        """CREATE OR REPLACE VIEW calls AS
WITH trace_runs AS (
    SELECT trace_id, min(run_id) AS run_id FROM results WHERE trace_id IS NOT NULL GROUP BY trace_id
)
SELECT t.* REPLACE (
    coalesce(t.run_id, tr.run_id) AS run_id,
    coalesce(t.latency_s, epoch(t.end_time) - epoch(t.start_time)) AS latency_s)
FROM traces t LEFT JOIN trace_runs tr ON t.trace_id = tr.trace_id
QUALIFY t.call_id IS NULL
    OR row_number() OVER (PARTITION BY t.call_id ORDER BY t.source DESC, t.end_time DESC NULLS LAST) = 1""",
    ),
    (
        "task_outcomes",
        "VIEW",
        """CREATE OR REPLACE VIEW task_outcomes AS
WITH per_task AS (
    SELECT run_id, suite, model, task_id,
        count(*) AS attempts,
        count(*) FILTER (WHERE status IN ('passed', 'failed')) AS scored,
        count(*) FILTER (WHERE status = 'passed') AS passed,
        count(*) FILTER (WHERE status = 'failed') AS failed,
        count(*) FILTER (WHERE status = 'error') AS errors,
        string_agg(DISTINCT coalesce(error_kind, 'unknown'), ',' ORDER BY coalesce(error_kind, 'unknown'))
            FILTER (WHERE status = 'error') AS error_kinds,
        median(wall_s) AS wall_s,
        sum(cost_usd) AS cost_usd
    FROM results
    GROUP BY run_id, suite, model, task_id
), judged AS (
    SELECT *,
        CAST(passed AS DOUBLE) / nullif(scored, 0) AS pass_frac,
        CASE WHEN scored = 0 THEN 'error' WHEN 2 * passed > scored THEN 'passed' ELSE 'failed' END AS outcome
    FROM per_task
)
SELECT *,
    CASE
        WHEN attempts = 1 AND outcome = 'passed' THEN '✓'
        WHEN attempts = 1 AND outcome = 'failed' THEN '✗'
        WHEN attempts = 1 THEN 'E:' || error_kinds
        ELSE passed || '/' || scored || CASE WHEN errors > 0 THEN ' E:' || errors ELSE '' END
    END AS cell
FROM judged""",
    ),
    (
        "clustered_se",
        "MACRO",
        """CREATE OR REPLACE MACRO clustered_se(sq, cross_sum, n) AS
CASE WHEN n > 1 THEN sqrt(greatest(0.0, sq / (n * (n - 1.0)) + cross_sum / (CAST(n AS DOUBLE) * n))) END""",
    ),
    (
        "run_intervals",
        "VIEW",
        f"""CREATE OR REPLACE VIEW run_intervals AS
WITH per_task AS (
    SELECT run_id, suite, model, task_id,
        count(*) AS planned,
        count(*) FILTER (WHERE status IN ('passed', 'failed')) AS scored,
        count(*) FILTER (WHERE status = 'passed') AS passed,
        count(DISTINCT epoch) AS epochs
    FROM results
    GROUP BY run_id, suite, model, task_id
), runs AS (
    SELECT run_id, suite, model,
        count(*) AS tasks,
        max(epochs) AS epochs,
        sum(planned) AS planned,
        sum(scored) AS scored,
        sum(passed) AS passed,
        CAST(sum(passed) AS DOUBLE) / nullif(sum(scored), 0) AS m,
        CAST(sum(passed) AS DOUBLE) / nullif(sum(planned), 0) AS ms
    FROM per_task
    GROUP BY run_id, suite, model
), residuals AS (
    SELECT r.run_id, r.suite, r.model,
        t.passed * (1 - r.m) ^ 2 + (t.scored - t.passed) * r.m ^ 2 AS sq,
        (t.passed - t.scored * r.m) ^ 2 AS s1sq,
        t.passed * (1 - r.ms) ^ 2 + (t.planned - t.passed) * r.ms ^ 2 AS sq_strict,
        (t.passed - t.planned * r.ms) ^ 2 AS s1sq_strict
    FROM per_task t JOIN runs r USING (run_id, suite, model)
), sums AS (
    SELECT run_id, suite, model,
        sum(sq) AS sq, sum(s1sq - sq) AS cross_sum,
        sum(sq_strict) AS sq_strict, sum(s1sq_strict - sq_strict) AS cross_strict
    FROM residuals
    GROUP BY run_id, suite, model
), se AS (
    SELECT r.*,
        clustered_se(s.sq, s.cross_sum, r.scored) AS cse,
        clustered_se(s.sq_strict, s.cross_strict, r.planned) AS cse_strict
    FROM runs r JOIN sums s USING (run_id, suite, model)
)
SELECT run_id, suite, model, tasks, epochs, planned, scored, passed,
    planned - scored AS errors,
    CAST(scored AS DOUBLE) / nullif(planned, 0) AS coverage,
    m AS pass_rate,
    CASE WHEN epochs > 1 THEN 'clustered' ELSE 'wilson' END AS ci_method,
    CASE WHEN epochs > 1 THEN cse END AS se,
    CASE WHEN epochs > 1 THEN greatest(0.0, m - {_z()} * cse) ELSE wilson_low(passed, scored) END AS ci_low,
    CASE WHEN epochs > 1 THEN least(1.0, m + {_z()} * cse) ELSE wilson_high(passed, scored) END AS ci_high,
    ms AS strict_pass_rate,
    CASE WHEN epochs > 1 THEN greatest(0.0, ms - {_z()} * cse_strict)
        ELSE wilson_low(passed, planned) END AS strict_ci_low,
    CASE WHEN epochs > 1 THEN least(1.0, ms + {_z()} * cse_strict)
        ELSE wilson_high(passed, planned) END AS strict_ci_high
FROM se""",
    ),
    (
        "run_summary",
        "VIEW",
        """CREATE OR REPLACE VIEW run_summary AS
WITH runs AS (
    SELECT run_id, suite, model,
        min(suite_version) AS suite_version,
        min(agent) AS agent,
        min(sandbox) AS sandbox,
        min(started_at) AS started_at,
        max(finished_at) AS finished_at,
        count(DISTINCT task_id) AS tasks,
        count(DISTINCT epoch) AS epochs,
        count(*) AS attempts,
        count(*) FILTER (WHERE status = 'passed') AS passed,
        count(*) FILTER (WHERE status = 'failed') AS failed,
        count(*) FILTER (WHERE status = 'error') AS errors,
        count(*) FILTER (WHERE status = 'error' AND error_kind = 'infra') AS errors_infra,
        count(*) FILTER (WHERE status = 'error' AND error_kind = 'timeout') AS errors_timeout,
        count(*) FILTER (WHERE status = 'error' AND error_kind = 'agent') AS errors_agent,
        count(*) FILTER (WHERE status = 'error' AND error_kind = 'budget') AS errors_budget,
        count(*) FILTER (WHERE status = 'error' AND (error_kind IS NULL
            OR error_kind NOT IN ('infra', 'timeout', 'agent', 'budget'))) AS errors_other,
        count(*) FILTER (WHERE status IS NULL OR status NOT IN ('passed', 'failed', 'error')) AS invalid_rows,
        sum(cost_usd) AS cost_usd,
        sum(prompt_tokens) AS prompt_tokens,
        sum(completion_tokens) AS completion_tokens,
        sum(steps) AS steps,
        sum(tool_calls) AS tool_calls,
        (epoch_us(max(finished_at)) - epoch_us(min(started_at))) / 1e6 AS wall_s,
        sum(wall_s) AS task_s,
        quantile_cont(wall_s, 0.5) FILTER (WHERE status IN ('passed', 'failed')) AS task_p50_s,
        quantile_cont(wall_s, 0.95) FILTER (WHERE status IN ('passed', 'failed')) AS task_p95_s
    FROM results
    GROUP BY run_id, suite, model
), pass_k AS (
    SELECT o.run_id, o.suite, o.model,
        avg(pass_at_k(o.scored, o.passed, r.epochs)) AS pass_at_k,
        count(*) FILTER (WHERE o.scored >= r.epochs) AS pass_at_k_tasks
    FROM task_outcomes o JOIN runs r USING (run_id, suite, model)
    WHERE r.epochs > 1
    GROUP BY o.run_id, o.suite, o.model
), run_calls AS (
    SELECT run_id,
        count(*) AS calls,
        count(*) FILTER (WHERE status = 'error') AS call_errors,
        quantile_cont(latency_s, 0.5) AS call_p50_s,
        quantile_cont(latency_s, 0.95) AS call_p95_s
    FROM calls
    WHERE run_id IS NOT NULL
    GROUP BY run_id
)
SELECT
    r.model, r.suite, r.run_id, r.suite_version, r.agent, r.sandbox, r.started_at, r.finished_at,
    r.tasks, r.epochs, r.attempts,
    r.passed + r.failed AS scored,
    r.passed, r.failed, r.errors,
    r.errors_infra, r.errors_timeout, r.errors_agent, r.errors_budget, r.errors_other, r.invalid_rows,
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
    r.task_p50_s, r.task_p95_s,
    coalesce(c.calls, 0) AS calls,
    coalesce(c.call_errors, 0) AS call_errors,
    c.call_p50_s, c.call_p95_s,
    row_number() OVER (
        PARTITION BY r.model, r.suite
        ORDER BY r.started_at DESC NULLS LAST, r.finished_at DESC NULLS LAST, r.run_id DESC
    ) AS recency
FROM runs r
LEFT JOIN run_intervals ri ON ri.run_id = r.run_id AND ri.suite = r.suite AND ri.model = r.model
LEFT JOIN pass_k pk ON pk.run_id = r.run_id AND pk.suite = r.suite AND pk.model = r.model
LEFT JOIN run_calls c ON c.run_id = r.run_id""",
    ),
    (
        "leaderboard",
        "VIEW",
        """CREATE OR REPLACE VIEW leaderboard AS
SELECT * EXCLUDE (recency) FROM run_summary WHERE recency = 1
ORDER BY suite, pass_rate DESC NULLS LAST, model""",
    ),
    (
        "task_matrix",
        "VIEW",
        """CREATE OR REPLACE VIEW task_matrix AS
SELECT o.* FROM task_outcomes o
JOIN run_summary s ON s.run_id = o.run_id AND s.suite = o.suite AND s.model = o.model
WHERE s.recency = 1
ORDER BY o.suite, o.task_id, o.model""",
    ),
    (
        "task_health",
        "VIEW",
        """CREATE OR REPLACE VIEW task_health AS
WITH runs AS (
    SELECT run_id, suite, model, agent, suite_version,
        min(started_at) AS started_at, max(finished_at) AS finished_at
    FROM results
    GROUP BY run_id, suite, model, agent, suite_version
), current_version AS (
    SELECT suite, arg_max(suite_version, started_at) AS suite_version FROM runs GROUP BY suite
), picked AS (
    SELECT r.*, r.agent = 'oracle' AS is_oracle
    FROM runs r JOIN current_version v USING (suite, suite_version)
    QUALIFY row_number() OVER (
        PARTITION BY r.suite, r.model, r.agent = 'oracle'
        ORDER BY r.started_at DESC, r.finished_at DESC, r.run_id DESC
    ) = 1
), oracle_run AS (
    SELECT suite, run_id FROM picked WHERE is_oracle
    QUALIFY row_number() OVER (PARTITION BY suite ORDER BY started_at DESC, run_id DESC) = 1
), oracle AS (
    SELECT o.suite, o.task_id, o.outcome FROM task_outcomes o JOIN oracle_run USING (suite, run_id)
), models AS (
    SELECT o.suite, o.task_id, o.model, o.outcome, o.scored, o.passed
    FROM task_outcomes o JOIN picked p ON o.run_id = p.run_id
    WHERE NOT p.is_oracle
), infra AS (
    SELECT r.suite, r.task_id,
        count(*) FILTER (WHERE r.status = 'error' AND r.error_kind = 'infra') AS infra_errors,
        count(*) FILTER (WHERE r.status = 'error') AS errors
    FROM results r JOIN current_version USING (suite, suite_version)
    GROUP BY r.suite, r.task_id
), counted AS (
    SELECT i.suite, i.task_id,
        any_value(ot.outcome) AS oracle,
        count(m.model) FILTER (WHERE m.scored > 0) AS models_scored,
        count(m.model) FILTER (WHERE m.outcome = 'passed') AS models_passed,
        count(m.model) FILTER (WHERE m.outcome = 'failed') AS models_failed,
        count(m.model) FILTER (WHERE m.passed > 0 AND m.passed < m.scored) AS flaky_models,
        string_agg(m.model, ',' ORDER BY m.model) FILTER (WHERE m.passed > 0 AND m.passed < m.scored)
            AS flaky_in,
        any_value(i.infra_errors) AS infra_errors,
        any_value(i.errors) AS errors
    FROM infra i
    LEFT JOIN models m USING (suite, task_id)
    LEFT JOIN oracle ot USING (suite, task_id)
    GROUP BY i.suite, i.task_id
)
SELECT c.suite, v.suite_version, c.task_id, c.oracle, c.models_scored, c.models_passed, c.models_failed,
    c.flaky_models, c.flaky_in, c.infra_errors, c.errors,
    list_filter([
        CASE WHEN c.oracle = 'failed' THEN 'oracle fails' END,
        CASE WHEN c.oracle = 'error' THEN 'oracle errors' END,
        CASE WHEN c.flaky_models > 0 THEN 'flaky' END,
        CASE WHEN c.models_scored >= 2 AND c.models_passed = 0 THEN 'every model fails' END,
        CASE WHEN c.models_scored >= 2 AND c.models_passed = c.models_scored THEN 'every model passes' END,
        CASE WHEN c.infra_errors > 0 THEN 'infra errors' END
    ], lambda f: f IS NOT NULL) AS flags
FROM counted c JOIN current_version v USING (suite)
ORDER BY c.suite, c.task_id""",
    ),
    (
        "pass_at",
        "MACRO TABLE",
        """CREATE OR REPLACE MACRO pass_at(k) AS TABLE
SELECT run_id, suite, model, k AS k,
    count(*) FILTER (WHERE scored >= k) AS tasks,
    avg(pass_at_k(scored, passed, k)) AS pass_at_k
FROM task_outcomes
GROUP BY run_id, suite, model""",
    ),
    (
        "ab_compare",
        "MACRO TABLE",
        """CREATE OR REPLACE MACRO ab_compare(run_a, run_b) AS TABLE
SELECT
    coalesce(a.task_id, b.task_id) AS task_id,
    coalesce(a.outcome, 'missing') AS outcome_a,
    coalesce(b.outcome, 'missing') AS outcome_b,
    a.pass_frac AS pass_frac_a,
    b.pass_frac AS pass_frac_b,
    a.cell AS cell_a,
    b.cell AS cell_b,
    CASE
        WHEN a.outcome = 'passed' AND b.outcome = 'failed' THEN 'pass→fail'
        WHEN a.outcome = 'failed' AND b.outcome = 'passed' THEN 'fail→pass'
        WHEN a.outcome = b.outcome AND a.outcome IN ('passed', 'failed') THEN 'unchanged'
        ELSE 'not comparable'
    END AS change
FROM (SELECT * FROM task_outcomes WHERE run_id = run_a) a
FULL OUTER JOIN (SELECT * FROM task_outcomes WHERE run_id = run_b) b ON a.task_id = b.task_id
ORDER BY change, task_id""",
    ),
]

# Name -> kind, for dropping objects a newer version no longer defines.
OBJECTS: dict[str, str] = {"results": "VIEW", "traces": "VIEW"} | {
    name: kind for name, kind, _ in ANALYSIS_SQL
}


def warehouse_sql(results_source: str | Sequence[Path], traces_source: str | Sequence[Path]) -> list[str]:
    """Every statement that defines the warehouse objects, in dependency order.

    A source is a glob (the warehouse file: views follow the lake as it grows) or a list of files
    (a snapshot). The analysis statements are the same either way.
    """
    return [
        f"CREATE OR REPLACE VIEW results AS\n{_lake_relation(RESULT_COLUMNS, results_source)}",
        f"CREATE OR REPLACE VIEW traces AS\n{_lake_relation(TRACE_COLUMNS, traces_source)}",
        *(sql for _, _, sql in ANALYSIS_SQL),
    ]


def lake_globs(paths: config.GoatPaths) -> tuple[str, str]:
    return str(paths.lake_results / "*.parquet"), str(paths.lake_traces / "*.parquet")


def views_version(paths: config.GoatPaths) -> str:
    """Content hash of the warehouse SQL (lake paths included): the views are re-created when it changes."""
    sql = "\n;\n".join(warehouse_sql(*lake_globs(paths)))
    return hashlib.sha256(sql.encode()).hexdigest()[:16]


# ---- the warehouse file ------------------------------------------------------------------------


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
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        try:
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
        except duckdb.Error as exc:
            if not is_lock_error(exc):
                raise
            if time.monotonic() + delay > deadline:
                return WarehouseStatus(target, version, "busy", f"left unchanged, file locked: {exc}")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


# ---- in-memory snapshots -------------------------------------------------------------------------


def lake_files(directory: Path) -> tuple[list[Path], list[str]]:
    """The complete Parquet files of a lake directory, and a note for each one skipped.

    A file whose footer cannot be read (still being written, or truncated) is skipped, so one run in
    progress never breaks the analysis of the others.
    """
    import pyarrow.parquet as pq  # here, not at import: `goat run` imports this module for its views

    good: list[Path] = []
    skipped: list[str] = []
    for path in sorted(directory.glob("*.parquet")) if directory.is_dir() else []:
        try:
            pq.read_metadata(path)
        except Exception as exc:  # pyarrow raises several types for a partial file
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

    def count(self, relation: str) -> int:
        row = self.con.execute(f"SELECT count(*) FROM {relation}").fetchone()
        return int(row[0]) if row else 0


@contextmanager
def open_snapshot(paths: config.GoatPaths | None = None) -> Iterator[LakeSnapshot]:
    """The warehouse SQL over the lake's complete files, in memory (closes on exit)."""
    paths = paths or config.paths()
    results_files, skipped_results = lake_files(paths.lake_results)
    trace_files, skipped_traces = lake_files(paths.lake_traces)
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        for stmt in warehouse_sql(results_files, trace_files):
            con.execute(stmt)
        yield LakeSnapshot(con, results_files, trace_files, skipped_results + skipped_traces)
    finally:
        con.close()


def query(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """Rows of a query as dicts keyed by column name."""
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
