"""`leaderboard`: DuckDB analysis across models over the results and traces lake (goat_dagster.analysis),
and the `spend_within_budget` check: this month's spend of every provider with a budget in
models.yaml (warn at its warn_fraction, 80%; fail at 100%)."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from goat_dagster import config as goat_config
from goat_dagster.analysis.chart import image_markdown, render_chart
from goat_dagster.analysis.leaderboard import build_leaderboard
from goat_dagster.analysis.leaderboard_render import (
    comparison_markdown,
    details_markdown,
    leaderboard_markdown,
    matrix_markdown,
    paired_markdown,
    setup_notes,
)
from goat_dagster.analysis.spend import budget_status, spend_rows, this_month
from goat_dagster.analysis.task_health import health_markdown
from goat_dagster.analysis.warehouse import ensure_warehouse
from goat_dagster.assets.common import OWNERS
from goat_dagster.resources.registry import RegistryResource
from goat_dagster.textfmt import markdown_table
from goat_dagster.viewer import links

SPEND_CHECK = "spend_within_budget"


class LeaderboardConfig(Config):
    run_ids: list[str] = Field(
        default_factory=list,
        description="Rank these runs instead of the latest run per (model, suite).",
    )
    compare_a: str | None = Field(default=None, description="A/B: run A (needs compare_b).")
    compare_b: str | None = Field(
        default=None, description="A/B: run B. Default: each ranked run vs its previous."
    )
    allow_mismatch: bool = Field(
        default=False,
        description="Rank runs that differ in more than the model (prompt set, sampling, limits, ...); "
        "otherwise they are listed by model, not ranked, with what differs.",
    )


@asset(
    key="leaderboard",
    deps=[AssetKey("benchmark_results"), AssetKey("trace_export")],
    group_name="analysis",
    kinds={"duckdb", "parquet"},
    owners=OWNERS,
    code_version="2",
    description=(
        "Pass rate with its 95% interval (Wilson; task-clustered with epochs), coverage and the "
        "errors-as-failures bound, pass@k, errors by kind, cost per solved task, latency p50/p95 per "
        "call and per task, and tokens per model (latest run per model and suite made with the current "
        "prompt set and harness), ranked by paired comparisons (only when the runs differ in nothing but "
        "the model) on shared tasks; a per-task matrix; A/B flips and paired statistics against the "
        "previous run; task health. The same SQL is kept as views in $GOAT_HOME/warehouse.duckdb."
    ),
)
def leaderboard(context: AssetExecutionContext, config: LeaderboardConfig) -> MaterializeResult:
    paths = goat_config.paths()
    if (config.compare_a is None) != (config.compare_b is None):
        raise ValueError("leaderboard config: compare_a and compare_b go together (two run ids)")
    compare = (config.compare_a, config.compare_b) if config.compare_a and config.compare_b else None

    warehouse = ensure_warehouse(paths)
    if warehouse.state == "busy":
        context.log.warning(f"{warehouse.path}: views not refreshed ({warehouse.detail})")
    else:
        context.log.info(f"{warehouse.path}: views {warehouse.state} (version {warehouse.version})")

    board = build_leaderboard(
        paths, run_ids=config.run_ids or None, compare=compare, allow_mismatch=config.allow_mismatch
    )
    for note in board.skipped_files:
        context.log.warning(f"skipped lake file: {note}")
    for line in setup_notes(board, full=True):
        context.log.warning(line.replace("**", ""))
    context.log.info(
        f"{len(board.rows)} ranked runs ({board.selection}) from {board.runs_in_lake} runs, "
        f"{board.result_rows} result rows, {board.trace_rows} trace rows"
    )

    chart_path = render_chart(board.rows, paths.lake / "leaderboard" / "leaderboard.png")
    metadata = {
        "leaderboard": MetadataValue.md(leaderboard_markdown(board, links.run_url)),
        "chart": MetadataValue.md(
            image_markdown(chart_path, "pass rate by model") if chart_path else "_No results to chart yet._"
        ),
        "per_task_matrix": MetadataValue.md(matrix_markdown(board, links.task_url)),
        "ab_comparison": MetadataValue.md(comparison_markdown(board.comparisons, board.paired_ab)),
        "paired_comparisons": MetadataValue.md(paired_markdown(board)),
        "task_health": MetadataValue.md(health_markdown(board.health)),
        "n_flagged_tasks": sum(bool(h.flags) for h in board.health),
        "leaderboard_details": MetadataValue.md(details_markdown(board, links.run_url)),
        "viewer": MetadataValue.url(links.leaderboard_url()),
        "selection": board.selection,
        "ranked": board.ranked,
        "mismatches": MetadataValue.json([m.as_dict() for m in board.mismatches]),
        "left_out": MetadataValue.json(board.outdated),
        "current_setup": MetadataValue.json(board.current),
        "dagster/row_count": len(board.rows),
        "n_models": len({r["model"] for r in board.rows}),
        "n_runs_in_lake": board.runs_in_lake,
        "n_result_rows": board.result_rows,
        "n_trace_rows": board.trace_rows,
        "n_skipped_files": len(board.skipped_files),
        "warehouse": MetadataValue.path(str(warehouse.path)),
        "warehouse_views": f"{warehouse.state} (version {warehouse.version})",
    }
    if chart_path:
        metadata["chart_path"] = MetadataValue.path(str(chart_path))
    spend = spend_rows(this_month(), paths)
    metadata["spend_this_month"] = MetadataValue.md(
        markdown_table(spend) if spend else f"_Nothing spent in {this_month()}._"
    )
    return MaterializeResult(metadata=metadata)


@asset_check(
    asset=leaderboard,
    name=SPEND_CHECK,
    description="This month's spend per provider against models.yaml's budgets: warns at 80% (a "
    "budget's warn_fraction), fails at 100%.",
)
def spend_within_budget(registry: RegistryResource) -> AssetCheckResult:
    """ERROR once a provider has spent its month's budget, WARN from its warn_fraction; the table of
    every budget either way."""
    states = budget_status(registry.registry())
    over = [s for s in states if s.state == "over"]
    warn = [s for s in states if s.state == "warn"]
    worst = over or warn
    if not states:
        description = "no budgets in models.yaml"
    elif worst:
        description = "; ".join(
            f"{s.provider} has spent {100 * s.fraction:.0f}% of its ${s.budget_usd:.2f} for {s.month}"
            for s in worst
        )
    else:
        description = f"every provider within its budget for {this_month()}"
    return AssetCheckResult(
        passed=not worst,
        severity=AssetCheckSeverity.ERROR if over else AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "budgets": MetadataValue.md(markdown_table([s.as_row() for s in states]) if states else "none")
        },
    )
