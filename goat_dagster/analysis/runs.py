"""What a run's rows add up to: the totals `goat run`, `goat results` and the benchmark asset show.

Every total is the warehouse's `run_summary` view (warehouse_sql.py), computed in memory over the
run's Parquet file (`summarize_run`, right after a run), over the lake (`run_summaries`, `goat
results`) or over the journal of a run not in the lake yet (`journal_summary`: killed, not resumed).
`goat view` shows every column of that view (`run_details`: the interval, calls, latencies, ...),
read the same ways: `lake_run_details`, `details_of_run` (one run's files), `journal_details`.
Errors are counted apart by kind and never scored (pass_rate = passed / (passed + failed)); wall_s
runs from the first task's start to the last task's finish, so a resumed run counts the time it
was down.
"""

from __future__ import annotations

import contextlib
from typing import Any

import duckdb
from pydantic import BaseModel, ConfigDict, Field

from goat_dagster import config
from goat_dagster.analysis.snapshot import open_files, open_rows, open_snapshot, query
from goat_dagster.analysis.summaries import write_summary
from goat_dagster.bench.journal import RunSpec, journal_file, latest_rows, read_entries
from goat_dagster.bench.lake import ERROR_KINDS, ResultRow, RunIdentity, results_file
from goat_dagster.bench.run_request import RunOutcome
from goat_dagster.tracing.sink_store import export_path


class RunSummary(BaseModel):
    """`goat run --json`: DESIGN §8's keys first, then the details."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    model: str
    suite: str
    n: int
    passed: int
    failed: int
    errors: int
    pass_rate: float | None = Field(description="passed / (passed + failed): errors are not scored")
    wall_s: float = Field(description="first task start to last task finish (a resumed run included)")
    cost_usd: float
    unscored: int = Field(default=0, description="answered free-form prompts: never scored")
    suite_version: str
    agent: str
    sandbox: str
    epochs: int
    errors_by_kind: dict[str, int]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    projected_cost_usd: float | None = None
    budget_usd: float | None = None
    resumed: bool = False
    reused_rows: int = 0
    isolation: str = ""
    warnings: list[str] = Field(default_factory=list)
    results_path: str = ""
    journal_dir: str = ""
    manifest: dict[str, Any] | None = Field(default=None, description="what produced the rows (RunManifest)")


# A run's totals, from `run_summary`, rounded as they are shown; `started`: rows of tasks that began
# (a budget row never did), for the projected cost of a budgeted run.
TOTALS_SQL = f"""
SELECT run_id, model, suite, suite_version, agent, sandbox,
    attempts AS n, passed, failed, errors, unscored,
    round(pass_rate, 4) AS pass_rate,
    round(wall_s, 3) AS wall_s,
    round(coalesce(cost_usd, 0), 6) AS cost_usd,
    {", ".join(f"errors_{k}" for k in ERROR_KINDS)},
    coalesce(prompt_tokens, 0) AS prompt_tokens, coalesce(completion_tokens, 0) AS completion_tokens,
    epochs, started_at, finished_at,
    attempts - errors_budget AS started
FROM run_summary"""


def run_totals(
    con: duckdb.DuckDBPyConnection, where: str = "", params: list[Any] | None = None
) -> list[dict[str, Any]]:
    """The totals of each run of a connection's `results` (newest last finish first)."""
    return [_shaped(r) for r in query(con, f"{TOTALS_SQL} {where} ORDER BY finished_at DESC, run_id", params)]


def _shaped(row: dict[str, Any]) -> dict[str, Any]:
    """The per-kind error columns as one `errors_by_kind` mapping, where they stood."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key.startswith("errors_") and key.removeprefix("errors_") in ERROR_KINDS:
            out.setdefault("errors_by_kind", {})[key.removeprefix("errors_")] = int(value)
        else:
            out[key] = int(value) if key in ("prompt_tokens", "completion_tokens") else value
    return out


def summarize_run(outcome: RunOutcome) -> RunSummary:
    """The summary of a run that has just finished (`goat run --json`), from its Parquet file; writes
    the file's summary into the lake (summaries.py), which the leaderboard reads."""
    spec = outcome.spec
    with open_files([outcome.results_path], objects=("run_summary",)) as snap:
        # what the analysis reads of the run; the next snapshot of the lake writes it if this cannot
        with contextlib.suppress(OSError, duckdb.Error):
            write_summary(outcome.results_path, config.paths().lake_summaries, snap.con)
        found = run_totals(snap.con)
    totals = found[0] if found else _no_rows(spec)
    started = totals.pop("started")
    projected = totals["cost_usd"] / started * outcome.planned if started else None
    return RunSummary(
        **{k: totals[k] for k in ("n", "passed", "failed", "errors", "pass_rate", "wall_s", "cost_usd")},
        unscored=totals["unscored"],
        **{k: totals[k] for k in ("errors_by_kind", "prompt_tokens", "completion_tokens")},
        **_identity(spec),
        epochs=spec.epochs,
        projected_cost_usd=round(projected, 6) if projected is not None else None,
        budget_usd=outcome.budget_usd,
        resumed=outcome.resumed,
        reused_rows=outcome.reused_rows,
        isolation=outcome.isolation,
        warnings=outcome.warnings,
        results_path=str(outcome.results_path),
        journal_dir=str(outcome.journal_dir),
        manifest=outcome.manifest.model_dump(mode="json") if outcome.manifest is not None else None,
    )


def run_summaries(
    run_id: str | None = None,
    model: str | None = None,
    suite: str | None = None,
    limit: int | None = None,
    paths: config.GoatPaths | None = None,
) -> list[dict[str, Any]]:
    """One summary per run in the results lake (what the run was, then its totals), newest first."""
    conds, params = [], []
    for col, val in (("run_id", run_id), ("model", model), ("suite", suite)):
        if val is not None:
            conds.append(f"{col} = ?")
            params.append(val)
    where = ("WHERE " + " AND ".join(conds)) if conds else ""
    with open_snapshot(paths, traces=False) as snap:
        runs = run_totals(snap.con, where, params)
    for r in runs:
        r.pop("started")
    return runs[:limit] if limit else runs


def latest_run(model: str, suite: str | None = None) -> dict[str, Any] | None:
    """The most recent run of `model` (registry key) in the lake, optionally for one suite."""
    runs = run_summaries(model=model, suite=suite, limit=1)
    return runs[0] if runs else None


def _journal_rows(spec: RunSpec) -> list[ResultRow]:
    return list(latest_rows(read_entries(journal_file(spec.run_id))).values())


def journal_summary(spec: RunSpec) -> dict[str, Any]:
    """A run not yet in the lake (killed, or still going), summarized from its journal."""
    rows = _journal_rows(spec)
    with open_rows(rows) as snap:
        found = run_totals(snap.con)
    totals = found[0] if found else _no_rows(spec)
    totals.pop("started")
    return {
        **totals,
        **_identity(spec),
        "epochs": spec.epochs,
        "complete": False,
        "rows": [r.model_dump(mode="json") for r in rows],
    }


# Every column of `run_summary`, cost and tokens 0 rather than NULL (as in TOTALS_SQL), and the
# tokens' sum.
DETAILS_SQL = """
SELECT * EXCLUDE (recency) REPLACE (
        coalesce(cost_usd, 0) AS cost_usd,
        coalesce(prompt_tokens, 0) AS prompt_tokens,
        coalesce(completion_tokens, 0) AS completion_tokens),
    coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0) AS tokens
FROM run_summary"""


# the counts of a run, 0 before it has a row
_COUNTS = [
    *("tasks", "attempts", "scored", "errors_other", "invalid_rows"),
    *("steps", "tool_calls", "tokens", "calls", "call_errors"),
]


def run_details(
    con: duckdb.DuckDBPyConnection, where: str = "", params: list[Any] | None = None
) -> list[dict[str, Any]]:
    """Every `run_summary` column of each run of a connection's `results` (newest last finish
    first), the per-kind error counts as one `errors_by_kind` mapping."""
    return [
        _shaped(r) for r in query(con, f"{DETAILS_SQL} {where} ORDER BY finished_at DESC, run_id", params)
    ]


def lake_run_details(paths: config.GoatPaths | None = None) -> list[dict[str, Any]]:
    """`run_details` of every run in the results lake, its traces included (calls, latencies)."""
    with open_snapshot(paths) as snap:
        return run_details(snap.con)


def details_of_run(run_id: str) -> dict[str, Any] | None:
    """`run_details` of one run in the lake, read from its own results file and exported traces
    only (None: not in the lake)."""
    results = results_file(run_id)
    if not results.exists():
        return None
    traces = export_path(run_id)
    with open_files([results], [traces] if traces.exists() else []) as snap:
        found = run_details(snap.con, "WHERE run_id = ?", [run_id])
    return found[0] if found else None


def journal_details(spec: RunSpec) -> dict[str, Any]:
    """`run_details` of a run not in the lake yet, from its journal; `rows`: its results rows."""
    rows = _journal_rows(spec)
    with open_rows(rows) as snap:
        found = run_details(snap.con)
        if found:
            details = found[0]
        else:  # no row yet: every column, counts 0, the rest unknown
            columns = [d[0] for d in snap.con.execute(f"{DETAILS_SQL} LIMIT 0").description]
            details = {c: None for c in columns if not c.startswith("errors_")} | _no_rows(spec)
            details |= dict.fromkeys(_COUNTS, 0)
            details.pop("started")
    return {
        **details,
        **_identity(spec),
        "complete": False,
        "rows": [r.model_dump(mode="json") for r in rows],
    }


def _identity(spec: RunSpec) -> dict[str, Any]:
    return spec.model_dump(include=set(RunIdentity.model_fields))


def _no_rows(spec: RunSpec) -> dict[str, Any]:
    """The totals of a run without a row yet."""
    return {
        **_identity(spec),
        "n": 0,
        "passed": 0,
        "failed": 0,
        "errors": 0,
        "unscored": 0,
        "pass_rate": None,
        "wall_s": 0.0,
        "cost_usd": 0.0,
        "errors_by_kind": dict.fromkeys(ERROR_KINDS, 0),
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "epochs": 0,
        "started_at": None,
        "finished_at": None,
        "started": 0,
    }
