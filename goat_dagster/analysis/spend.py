"""Spend against models.yaml's monthly `budgets` (seed 004's cost management).

- `spend_rows`: the warehouse's `spend` view (cost by provider, model and month) over the lake.
- `budget_status`: each budgeted provider's spend this month against its limit — `ok`, `warn` from
  its `warn_fraction` (80%), `over` from 100% (the `spend_within_budget` check on `leaderboard`).
  Runs not in the lake yet (in progress, or killed and not resumed) count too, from their journals.
- `run_budget`: what `goat run` asks before it starts a run of a model whose provider has a budget:
  the run's projected cost, and whether the month's spend plus that would pass the budget.

A run's projected cost is its pending attempts times a cost per attempt, taken from the best
evidence there is: this model's earlier runs of the suite (their mean cost per started attempt);
else the suite's runs on other models (mean tokens, or mean task time for GPU-hour pricing, at this
model's prices); else the upper bound its limits allow (every attempt using all its tokens at the
dearer price, or all its seconds of GPU). A `--budget-usd` caps it: the run stops starting tasks
once that much is spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from goat_dagster import config
from goat_dagster.analysis.run_reports import incomplete_runs
from goat_dagster.analysis.snapshot import open_snapshot, query
from goat_dagster.bench.journal import RETRY_ON_RESUME, journal_file, latest_rows, read_entries
from goat_dagster.bench.lake import results_dir
from goat_dagster.bench.tasks import Suite
from goat_dagster.bench.usage import AgentLimits
from goat_dagster.registry import ModelEntry, MonthlyBudget, Registry


class OverBudget(ValueError):
    """Starting the run would take its provider past this month's budget (the message says by how
    much and what to do)."""


def this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def spend_rows(month: str | None = None, paths: config.GoatPaths | None = None) -> list[dict[str, Any]]:
    """The `spend` view: one row per (provider, model, month), newest month first."""
    with open_snapshot(paths, traces=False) as snap:
        sql = "SELECT * FROM spend" + (" WHERE month = ?" if month else "")
        return query(snap.con, sql, [month] if month else [])


@dataclass(frozen=True)
class BudgetState:
    provider: str
    month: str
    spent_usd: float
    budget_usd: float
    warn_fraction: float

    @property
    def fraction(self) -> float:
        return self.spent_usd / self.budget_usd

    @property
    def state(self) -> Literal["ok", "warn", "over"]:
        if self.fraction >= 1:
            return "over"
        return "warn" if self.fraction >= self.warn_fraction else "ok"

    def as_row(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "month": self.month,
            "spent_usd": round(self.spent_usd, 6),
            "budget_usd": self.budget_usd,
            "used": f"{100 * self.fraction:.1f}%",
            "state": self.state,
        }


def provider_spend(registry: Registry, month: str, paths: config.GoatPaths | None = None) -> dict[str, float]:
    """USD spent in `month` per provider: the lake's `spend` plus journaled rows of runs not in the
    lake yet, each model counted under the provider that bills for it now."""
    out: dict[str, float] = {}
    for row in spend_rows(month, paths):
        out[row["provider"]] = out.get(row["provider"], 0.0) + float(row["cost_usd"] or 0)
    known = {m.key: m.billing_provider for m in registry.models.values()}
    in_lake = {p.stem for p in results_dir().glob("*.parquet")}  # a lake file is named for its run
    for run in incomplete_runs(in_lake):
        started = run.get("started_at")
        if started is not None and started.astimezone(UTC).strftime("%Y-%m") == month:
            provider = known.get(run["model"], "unknown")
            out[provider] = out.get(provider, 0.0) + float(run.get("cost_usd") or 0)
    return out


def budget_status(registry: Registry, month: str | None = None) -> list[BudgetState]:
    """Each provider with a budget in models.yaml: its spend in `month` (default: this one)."""
    month = month or this_month()
    if not registry.budgets:
        return []
    spent = provider_spend(registry, month)
    return [
        BudgetState(name, month, spent.get(name, 0.0), b.monthly_usd, b.warn_fraction)
        for name, b in sorted(registry.budgets.items())
    ]


# ---- a run's projected cost ---------------------------------------------------------------------

PER_ATTEMPT_SQL = """
SELECT
    count(*) AS attempts,
    avg(cost_usd) AS cost_usd,
    avg(prompt_tokens) AS prompt_tokens,
    avg(completion_tokens) AS completion_tokens,
    avg(wall_s) AS wall_s
FROM results
WHERE suite = ? AND (error_kind IS NULL OR error_kind <> 'budget')"""


@dataclass(frozen=True)
class Projection:
    usd: float
    attempts: int
    per_attempt_usd: float
    basis: str


def project_cost(
    entry: ModelEntry, suite: Suite, attempts: int, limits: AgentLimits, budget_usd: float | None = None
) -> Projection:
    """The cost of `attempts` attempts of `suite` on `entry` (see the module for the evidence used)."""
    price = entry.pricing
    gpu_per_s = price.gpu_hour_usd * entry.modal.n_gpu / 3600
    with open_snapshot(traces=False) as snap:
        own = query(snap.con, PER_ATTEMPT_SQL + " AND model = ?", [suite.name, entry.key])[0]
        others = query(snap.con, PER_ATTEMPT_SQL + " AND model <> ?", [suite.name, entry.key])[0]
    if own["attempts"]:
        per = float(own["cost_usd"] or 0)
        basis = f"{own['attempts']} earlier attempts of {entry.key} on {suite.name}"
    elif others["attempts"]:
        per = (
            float(others["prompt_tokens"] or 0) * price.input_per_token
            + float(others["completion_tokens"] or 0) * price.output_per_token
            + float(others["wall_s"] or 0) * gpu_per_s
        )
        basis = (
            f"the tokens and time of {others['attempts']} attempts of other models on {suite.name}, "
            f"at {entry.key}'s prices"
        )
    else:
        per = (
            limits.max_tokens * max(price.input_per_token, price.output_per_token)
            + limits.max_seconds * gpu_per_s
        )
        basis = (
            f"no run of {suite.name} yet: every attempt at its limits "
            f"({limits.max_tokens} tokens, {limits.max_seconds:.0f} s)"
        )
    usd = per * attempts
    if budget_usd is not None and usd > budget_usd:
        usd, basis = budget_usd, f"{basis}; capped by --budget-usd"
    return Projection(usd, attempts, per, basis)


def pending_attempts(suite: Suite, epochs: int, run_id: str | None) -> int:
    """Attempts a run will make: all of them, or what a resumed run has left."""
    total = len(suite.tasks) * epochs
    if run_id is None:
        return total
    rows = latest_rows(read_entries(journal_file(run_id))).values()
    return max(0, total - sum(r.error_kind not in RETRY_ON_RESUME for r in rows))


@dataclass(frozen=True)
class RunBudget:
    provider: str
    budget: MonthlyBudget
    spent_usd: float
    projection: Projection

    @property
    def after_usd(self) -> float:
        return self.spent_usd + self.projection.usd

    @property
    def over(self) -> bool:
        return self.after_usd > self.budget.monthly_usd


def run_budget(
    registry: Registry,
    entry: ModelEntry,
    suite: Suite,
    *,
    epochs: int,
    run_id: str | None,
    limits: AgentLimits,
    budget_usd: float | None,
) -> RunBudget | None:
    """The budget a run of `entry` is held against (None: its provider has none)."""
    budget = registry.budget_for(entry)
    if budget is None:
        return None
    attempts = pending_attempts(suite, epochs, run_id)
    projection = project_cost(entry, suite, attempts, limits, budget_usd)
    spent = provider_spend(registry, this_month()).get(entry.billing_provider, 0.0)
    return RunBudget(entry.billing_provider, budget, spent, projection)


def refuse_over_budget(check: RunBudget | None, entry: ModelEntry) -> None:
    """Raise `OverBudget` when the run would take its provider past this month's budget."""
    if check is None or not check.over:
        return
    p = check.projection
    left = max(0.0, check.budget.monthly_usd - check.spent_usd)
    raise OverBudget(
        f"{entry.key} is billed by {check.provider}, whose budget is ${check.budget.monthly_usd:.2f} a "
        f"month (models.yaml budgets.{check.provider}); spent in {this_month()}: ${check.spent_usd:.4f}; "
        f"this run's projected cost ${p.usd:.4f} ({p.attempts} attempts x ${p.per_attempt_usd:.4f}, "
        f"from {p.basis}) would take it to ${check.after_usd:.4f}. Pass --over-budget to start it "
        f"anyway, or cap it with --budget-usd {left:.4f}"
    )
