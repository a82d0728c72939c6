"""The warehouse SQL: every number of the analysis, as DuckDB views and macros over the lakes.

One set of SQL (`warehouse_sql(results, traces, manifests, current)`), run two ways: as views in
`$GOAT_HOME/warehouse.duckdb` for people who open the file themselves (warehouse.py), and in memory
over the lake files complete right now, or over the rows of a run not yet in the lake
(snapshot.py), which is how the leaderboard, `goat run`'s summary and `goat results` are computed.

Objects (all in schema main):
  results        the results lake, DESIGN §6 columns with their types (one row per task x epoch)
  traces         the traces lake, `TraceRecord` columns (one row per LLM call)
  run_manifests  the runs lake, `RunManifest` columns (one row per run: what produced its results)
  current_setup  one row: the prompt set and harness/grader versions a run made now would have
  calls          traces de-duplicated by call_id, run_id filled in from results.trace_id, latency_s
                 filled in from end_time - start_time when missing
  task_rollup    one row per (run, task): the one pass over the results rows every number below reads
                 (rollup_sql.py); in a snapshot, a run's stored summary where it has one
  task_outcomes  one row per (run, task): attempts, scored, passed, failed, errors, outcome, cell
  run_intervals  one row per run: planned, scored, coverage, pass rate with its 95% interval, and the
                 errors-as-failures bound (quality_sql.py)
  run_totals     one row per run: counts, pass rate with its 95% interval (run_intervals), pass@k,
                 cost, tokens, times — everything of run_summary that is the run's own (in a
                 snapshot, stored per run in the lake index where it has them: totals_sql.py)
  run_summary    run_totals with the run's calls (latency) and `recency` (1 = the latest run of its
                 (model, suite); prompt runs apart)
  leaderboard    run_summary of the latest scored run per (model, suite) among the runs made with
                 the current setup (prompt set, harness and grader versions)
  task_matrix    task_outcomes of those same runs (long form: suite, task_id, model, cell)
  task_health    one row per task of each suite's current version, with its `flags` (quality_sql.py)
  model_providers  model -> the provider that bills for it (models.yaml: `ModelEntry.billing_provider`)
  spend          cost by provider, model and month (UTC, of the attempt's start) over the results lake:
                 runs, attempts, cost_usd, tokens (what models.yaml's `budgets` are held against)
  macros         wilson_low(x, n), wilson_high(x, n), clustered_se(sq, cross, n), pass_at_k(n, c, k),
                 pass_at(k) -> per-run pass@k table, ab_compare(run_a, run_b) -> per-task flips,
                 ab_compare_pairs(runs_a, runs_b) -> the same for many pairs at once, ab_change(a, b)
                 -> a task's change between two outcomes (compare_sql.py)

Conventions (the numbers a user reads):
- An attempt is one (task, epoch) row. `status = 'error'` rows are infrastructure (error_kind infra,
  timeout, agent or budget) and are never scored: pass_rate = passed / (passed + failed).
- `status = 'unscored'` rows are answered free-form prompts (`goat run --prompt/--batch`): no check
  judged them, so they are never scored either (counted as `unscored`), and a run of them is never
  on the leaderboard nor in the task matrix (its recency is counted among prompt runs only).
- The 95% interval (z = 1.95996): Wilson's score interval over scored attempts for a run of one epoch;
  with epochs > 1, s +- z SE with the task-clustered SE of Miller 2024 (analysis/stats.py: attempts of
  one task are not independent). Coverage = scored / planned attempts; the strict pass rate counts
  errors as failures (passed / planned), so a run with many errors cannot look better than it is.
- pass@k (Chen et al. 2021, unbiased estimator 1 - C(n-c, k) / C(n, k), n scored and c passed attempts
  of a task, averaged over tasks with n >= k) with k = the run's number of epochs, when that is > 1.
  `pass_at(k)` gives any other k.
- A run is identified by run_id; it "starts" at its earliest started_at. The run that counts for a
  model is the latest run per (model, suite) made with the current setup (`current_setup`: the
  prompt set's hash, any when an agent uses none or the current files are broken; the harness
  and grader versions): latest start, then latest finish, then greatest run_id. A run without a
  manifest (made before manifests) is never current; with no current setup given (NULLs) every
  run counts.
- A task's outcome in a run: 'passed' if a strict majority of its scored attempts passed, 'failed' if
  it had scored attempts otherwise, 'error' if none was scored (only errors).
- Latency: per call from traces (latency_s), per task from results.wall_s of scored attempts;
  percentiles are quantile_cont (linear interpolation, as numpy's default).
- A run's wall_s is its first task's start to its last task's finish (as `goat run` and `goat
  results` report it); task_s is the sum of its tasks' wall_s (more than wall_s with parallel tasks).
- cost_per_solved = total cost_usd of the run (errors included: they were paid for) / passed attempts.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from goat_dagster import config
from goat_dagster.analysis.compare_sql import AB_SQL
from goat_dagster.analysis.quality_sql import CLUSTERED_SE, RUN_INTERVALS, TASK_HEALTH
from goat_dagster.analysis.rollup_sql import ROLLUP_VERSION, task_rollup_sql
from goat_dagster.analysis.stats import Z95
from goat_dagster.analysis.totals_sql import RUN_TOTALS, StoredTotals, stored_totals_sql
from goat_dagster.bench.lake import RESULT_TYPES
from goat_dagster.bench.manifest import MANIFEST_TYPES, CurrentSetup
from goat_dagster.registry import RegistryError, load_registry
from goat_dagster.tabular import duckdb_columns
from goat_dagster.tracing.schema import TraceRecord

Z_95 = Z95  # 1.959963984540054, the one z of every 95% interval (analysis/stats.py)

# The lakes' row schemas, as DuckDB columns: the views follow the row models field for field.
RESULT_COLUMNS: dict[str, str] = RESULT_TYPES
TRACE_COLUMNS: dict[str, str] = duckdb_columns(TraceRecord)
MANIFEST_COLUMNS: dict[str, str] = MANIFEST_TYPES


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Table:
    """A source that is a table of the connection (e.g. rows loaded from a run's journal)."""

    name: str


Source = str | Sequence[Path] | Table  # a glob of Parquet files, a list of them, or a table


def lake_relation(columns: dict[str, str], source: Source) -> str:
    """SELECT of exactly `columns` (typed) from a source: Parquet files (a glob string or a list of
    files) or a table.

    A zero-row typed relation is unioned in by name, so the view works on an empty lake and on files
    that lack a column (an older writer) or stored one with another type (e.g. all-null, or a
    timestamp written as an ISO string); every column is then cast to its contract type.
    """
    typed_empty = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in columns.items())
    casts = ",\n    ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in columns.items())
    if isinstance(source, Table):
        files = f'"{source.name}"'
    elif isinstance(source, str):
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


def calls_sql(results: str = "results") -> str:
    """The `calls` view; `results`: where a trace that does not name its run finds it (by trace_id).
    A snapshot whose traces all name their run (or with no trace files) passes `NO_TRACE_RUNS`:
    nothing to look up, no scan of every results file's trace_id (31 ms at 1M rows), the same rows."""
    return f"""CREATE OR REPLACE VIEW calls AS
WITH trace_runs AS (  -- the run of a trace that does not name it
    SELECT trace_id, min(run_id) AS run_id FROM {results}
    WHERE trace_id IN (SELECT trace_id FROM traces WHERE run_id IS NULL)
    GROUP BY trace_id
)
SELECT t.* REPLACE (
    coalesce(t.run_id, tr.run_id) AS run_id,
    coalesce(t.latency_s, epoch(t.end_time) - epoch(t.start_time)) AS latency_s)
FROM traces t LEFT JOIN trace_runs tr ON t.trace_id = tr.trace_id
QUALIFY t.call_id IS NULL
    OR row_number() OVER (PARTITION BY t.call_id ORDER BY t.source DESC, t.end_time DESC NULLS LAST) = 1"""


NO_TRACE_RUNS = "(SELECT CAST(NULL AS VARCHAR) AS trace_id, CAST(NULL AS VARCHAR) AS run_id LIMIT 0)"


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
    ("calls", "VIEW", calls_sql()),
    ("task_rollup", "VIEW", task_rollup_sql("results")),
    (
        "task_outcomes",
        "VIEW",
        """CREATE OR REPLACE VIEW task_outcomes AS
WITH judged AS (
    SELECT run_id, suite, model, task_id, attempts, scored, passed, failed, errors, unscored, error_kinds,
        wall_s, cost_usd, epochs,
        CAST(passed AS DOUBLE) / nullif(scored, 0) AS pass_frac,
        CASE WHEN scored > 0 AND 2 * passed > scored THEN 'passed' WHEN scored > 0 THEN 'failed'
             WHEN unscored > 0 THEN 'unscored' ELSE 'error' END AS outcome
    FROM task_rollup
)
SELECT *,
    CASE
        WHEN attempts = 1 AND outcome = 'passed' THEN '✓'
        WHEN attempts = 1 AND outcome = 'failed' THEN '✗'
        WHEN outcome = 'unscored' THEN '·'
        WHEN attempts = 1 THEN 'E:' || error_kinds
        ELSE passed || '/' || scored || CASE WHEN errors > 0 THEN ' E:' || errors ELSE '' END
    END AS cell
FROM judged""",
    ),
    CLUSTERED_SE,
    RUN_INTERVALS,
    RUN_TOTALS,
    (
        "run_summary",
        "VIEW",
        """CREATE OR REPLACE VIEW run_summary AS
WITH run_calls AS (
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
    r.*,
    coalesce(c.calls, 0) AS calls,
    coalesce(c.call_errors, 0) AS call_errors,
    c.call_p50_s, c.call_p95_s,
    row_number() OVER (
        PARTITION BY r.model, r.suite, r.unscored > 0
        ORDER BY r.started_at DESC NULLS LAST, r.finished_at DESC NULLS LAST, r.run_id DESC
    ) AS recency
FROM run_totals r
LEFT JOIN run_calls c ON c.run_id = r.run_id""",
    ),
    (
        "leaderboard",
        "VIEW",
        """CREATE OR REPLACE VIEW leaderboard AS
WITH current_runs AS (
    SELECT s.*, row_number() OVER (
        PARTITION BY s.model, s.suite
        ORDER BY s.started_at DESC NULLS LAST, s.finished_at DESC NULLS LAST, s.run_id DESC
    ) AS current_recency
    FROM run_summary s
    LEFT JOIN run_manifests m ON m.run_id = s.run_id
    CROSS JOIN current_setup c
    WHERE s.unscored = 0
        AND (c.harness_version IS NULL OR m.harness_version = c.harness_version)
        AND (c.grader_version IS NULL OR m.grader_version = c.grader_version)
        AND (c.prompt_sha256 IS NULL OR m.prompt_sha256 IS NULL OR m.prompt_sha256 = c.prompt_sha256)
)
SELECT * EXCLUDE (recency, current_recency) FROM current_runs WHERE current_recency = 1
ORDER BY suite, pass_rate DESC NULLS LAST, model""",
    ),
    (
        "task_matrix",
        "VIEW",
        """CREATE OR REPLACE VIEW task_matrix AS
SELECT o.* FROM task_outcomes o
JOIN leaderboard s ON s.run_id = o.run_id AND s.suite = o.suite AND s.model = o.model
ORDER BY o.suite, o.task_id, o.model""",
    ),
    TASK_HEALTH,
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
    *AB_SQL,
]

SPEND_SQL = """CREATE OR REPLACE VIEW spend AS
SELECT
    coalesce(p.provider, 'unknown') AS provider,
    r.model,
    strftime(r.started_at AT TIME ZONE 'UTC', '%Y-%m') AS month,
    count(DISTINCT r.run_id) AS runs,
    count(*) AS attempts,
    coalesce(sum(r.cost_usd), 0) AS cost_usd,
    coalesce(sum(r.prompt_tokens), 0) AS prompt_tokens,
    coalesce(sum(r.completion_tokens), 0) AS completion_tokens
FROM results r LEFT JOIN model_providers p ON p.model = r.model
GROUP BY ALL
ORDER BY month DESC, provider, model"""

# Name -> kind, for dropping objects a newer version no longer defines.
OBJECTS: dict[str, str] = (
    {"results": "VIEW", "traces": "VIEW", "run_manifests": "VIEW", "current_setup": "VIEW"}
    | {name: kind for name, kind, _ in ANALYSIS_SQL}
    | {"model_providers": "VIEW", "spend": "VIEW"}
)


def model_providers() -> dict[str, str]:
    """Registry key -> the provider that bills for it, from models.yaml (empty when the file is
    invalid: the numbers do not wait for it to be fixed; spend then shows 'unknown'). Read again
    only when the file changed (every snapshot asks)."""
    path = config.models_file()
    try:
        st = path.stat()
        signature = (st.st_size, st.st_mtime_ns)
    except OSError:
        signature = (-1, -1)
    return dict(_providers_of(path, signature))


@functools.lru_cache(maxsize=8)
def _providers_of(path: Path, signature: tuple[int, int]) -> tuple[tuple[str, str], ...]:
    try:
        registry = load_registry(path)
    except RegistryError:
        return ()
    return tuple((m.key, m.billing_provider) for m in registry.models.values())


def _providers_sql(providers: Mapping[str, str]) -> str:
    rows = ", ".join(f"({_literal(m)}, {_literal(p)})" for m, p in sorted(providers.items()))
    body = (
        f"SELECT * FROM (VALUES {rows}) AS t(model, provider)"
        if rows
        else "SELECT CAST(NULL AS VARCHAR) AS model, CAST(NULL AS VARCHAR) AS provider LIMIT 0"
    )
    return f"CREATE OR REPLACE VIEW model_providers AS\n{body}"


# The aggregates every other object reads. A snapshot (a fixed list of files) computes each of them
# once, as a temporary table, instead of scanning the lake again for every query that reads them: the
# leaderboard asks a dozen questions and more of one snapshot, each a scan of the lake as a view.
SNAPSHOT_TABLES = (
    *("run_manifests", "calls", "task_rollup", "task_outcomes", "run_totals", "run_summary"),
    "leaderboard",  # 40 rows a leaderboard reads three times: its rows, task_matrix, the outdated runs
)

# The statements `run_totals` is made by (and `task_rollup`'s, by its version): a stored copy of its
# rows (the lake index's, lake_index.py) is read only when it was made by this very SQL.
_TOTALS_SQL = [
    sql for name, _, sql in ANALYSIS_SQL[: [n for n, _, _ in ANALYSIS_SQL].index("run_totals") + 1]
]
TOTALS_VERSION = hashlib.sha256("\n;\n".join([ROLLUP_VERSION, *_TOTALS_SQL]).encode()).hexdigest()[:16]


def _as_table(sql: str, name: str) -> str:
    prefix = f"CREATE OR REPLACE VIEW {name} AS"
    assert sql.startswith(prefix), name
    return f"CREATE OR REPLACE TEMP TABLE {name} AS" + sql[len(prefix) :]


def _snapshot_table(sql: str, name: str, snapshot: bool) -> str:
    return _as_table(sql, name) if snapshot and name in SNAPSHOT_TABLES else sql


def _current_setup_sql(current: CurrentSetup | None) -> str:
    """The one-row `current_setup` view; a NULL column (None: every column) selects no runs out."""

    def value(v: str | None) -> str:
        return "CAST(NULL AS VARCHAR)" if v is None else _literal(v)

    c = current or CurrentSetup(None, None, None)
    return (
        f"CREATE OR REPLACE VIEW current_setup AS SELECT {value(c.prompt_sha256)} AS prompt_sha256, "
        f"{value(c.harness_version)} AS harness_version, {value(c.grader_version)} AS grader_version"
    )


def warehouse_sql(
    results_source: Source,
    traces_source: Source,
    manifests_source: Source = (),
    current: CurrentSetup | None = None,
    *,
    snapshot: bool = False,
    providers: Mapping[str, str] | None = None,
    summaries: tuple[Sequence[Path] | Table, Sequence[Path]] | None = None,
    totals: StoredTotals | None = None,
    traces_lack_runs: bool = True,
) -> list[str]:
    """Every statement that defines the warehouse objects, in dependency order.

    A source is a glob (the warehouse file: views follow the lake as it grows), a list of files
    (a snapshot) or a table (rows not in the lake). The analysis statements are the same either way;
    with `snapshot` (sources that do not change while the connection lives) the `SNAPSHOT_TABLES`
    are computed once, as tables, from those same statements.
    `current`: the setup whose runs the leaderboard counts (`manifest.current_setup()`).
    `providers` (model -> billing provider) defaults to models.yaml's.
    `summaries` (stored summaries — files, or the table of the lake index's rows —, results files
    without one; summaries.py, lake_index.py): `task_rollup` reads those summaries and the rows of
    those files only (`results` is still every results file).
    `totals` (a snapshot only): the `run_totals` rows of some runs stored in a table (the lake
    index's); `task_outcomes` is then a view, read only for the runs something asks about.
    `traces_lack_runs`: whether a trace may not name its run (False, or no trace files: `calls`
    looks nothing up in the results, `NO_TRACE_RUNS`).
    """
    rollup: list[str] = []  # the rows `task_rollup` reads: by default every results row
    sql_of = {name: sql for name, _, sql in ANALYSIS_SQL}
    tables = SNAPSHOT_TABLES if snapshot else ()
    if summaries is not None:  # the stored summaries, and the rows of the results files without one
        stored, unsummarized = summaries
        rollup = [
            f"CREATE OR REPLACE VIEW unsummarized_results AS\n{lake_relation(RESULT_COLUMNS, unsummarized)}"
        ]
        some = isinstance(stored, Table) or bool(stored)  # rows None: every results file has a summary
        rows = "unsummarized_results" if unsummarized or not some else None
        sql_of["task_rollup"] = (
            task_rollup_sql(rows, stored_table=stored.name)
            if isinstance(stored, Table)
            else task_rollup_sql(rows, stored)
        )
        if isinstance(stored, Table) and not unsummarized:  # already a table: not copied again
            tables = tuple(t for t in tables if t != "task_rollup")
    no_trace_files = (
        isinstance(traces_source, Sequence) and not isinstance(traces_source, str) and not traces_source
    )
    if no_trace_files or not traces_lack_runs:
        sql_of["calls"] = calls_sql(NO_TRACE_RUNS)
    if totals is not None:
        tables = tuple(t for t in tables if t not in ("task_outcomes", "run_totals"))
        sql_of["run_totals"] = stored_totals_sql(sql_of["run_totals"], totals)
    analysis = [_as_table(sql, name) if name in tables else sql for name, sql in sql_of.items()]
    return [
        f"CREATE OR REPLACE VIEW results AS\n{lake_relation(RESULT_COLUMNS, results_source)}",
        *rollup,
        f"CREATE OR REPLACE VIEW traces AS\n{lake_relation(TRACE_COLUMNS, traces_source)}",
        _snapshot_table(
            f"CREATE OR REPLACE VIEW run_manifests AS\n{lake_relation(MANIFEST_COLUMNS, manifests_source)}",
            "run_manifests",
            snapshot and not isinstance(manifests_source, Table),  # a table (the index's): no copy
        ),
        _current_setup_sql(current),
        *analysis,
        _providers_sql(model_providers() if providers is None else providers),
        SPEND_SQL,
    ]


def lake_globs(paths: config.GoatPaths) -> tuple[str, str, str]:
    """The results, traces and runs lakes' files, as globs."""
    return (
        str(paths.lake_results / "*.parquet"),
        str(paths.lake_traces / "*.parquet"),
        str(paths.lake_runs / "*.parquet"),
    )


def views_version(paths: config.GoatPaths, current: CurrentSetup | None = None) -> str:
    """Content hash of the warehouse SQL (lake paths and the current setup included): the views are
    re-created when it changes."""
    sql = "\n;\n".join(warehouse_sql(*lake_globs(paths), current))
    return hashlib.sha256(sql.encode()).hexdigest()[:16]
