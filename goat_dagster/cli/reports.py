"""What runs produced: `goat results`, `goat compare`, `goat view`, `goat traces verify`."""

from __future__ import annotations

import sys

import click

from goat_dagster import config
from goat_dagster.cli.common import emit, fail


@click.command()
@click.argument("run_id", required=False)
@click.option("--full", is_flag=True, help="One row per task and epoch.")
@click.option(
    "--task-health",
    "health",
    is_flag=True,
    help="Tasks to look at: the oracle fails them, flaky across epochs, every model fails or passes "
    "them, infra errors.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def results(run_id: str | None, full: bool, health: bool, as_json: bool) -> None:
    """Show benchmark results (latest runs, or one run), or the health of the suites' tasks."""
    from goat_dagster.analysis.run_reports import results_view
    from goat_dagster.analysis.task_health import health_text, task_health

    if health:
        rows = task_health()
        if as_json:
            emit({"task_health": [r.model_dump(mode="json") for r in rows]})
        else:
            click.echo(health_text(rows))
        return
    try:
        payload, text = results_view(run_id, full)
    except LookupError as exc:
        fail(f"goat results: {exc.args[0]}")
    if as_json:
        emit(payload)
    else:
        click.echo(text)


@click.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--alpha", default=0.05, show_default=True, type=float, help="Significance level.")
@click.option(
    "--allow-mismatch",
    is_flag=True,
    help="Compare even when the runs differ in more than the model (prompt set, sampling, limits, ...).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def compare(run_a: str, run_b: str, alpha: float, allow_mismatch: bool, as_json: bool) -> None:
    """Compare run B with run A on the tasks both scored.

    The difference in pass rate B - A with a paired 95% interval, an exact McNemar test on the
    tasks that flipped, and which ones flipped each way (pass→fail, fail→pass). Refused (exit 1),
    saying which fields differ, when the runs' manifests differ in anything but the model (prompt
    set, harness, grader, sampling, limits, suite version, sandbox, LiteLLM; for two runs of one
    model, its weights and engine too) unless --allow-mismatch.
    """
    from goat_dagster.analysis.compare import UnknownRunError, compare_runs, comparison_text

    try:
        c = compare_runs(run_a, run_b, alpha=alpha)
    except UnknownRunError as exc:
        fail(f"goat compare: {exc}")
    refused = not c.comparable and not allow_mismatch
    if as_json:
        emit({**c.model_dump(mode="json"), "comparable": c.comparable, "refused": refused})
    elif refused:
        lines = [
            f"A: {c.run_a.label}",
            f"B: {c.run_b.label}",
            "the runs differ in more than the model (A vs B):",
        ]
        lines += [f"  {d['field']}: {d['a']} vs {d['b']}" for d in c.differences]
        lines.append(
            "not compared: a difference in these fields may be theirs, not the models' (--allow-mismatch)"
        )
        click.echo("\n".join(lines))
    else:
        click.echo(comparison_text(c))
    if refused:
        sys.exit(1)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8200, show_default=True, type=int)
def view(host: str, port: int) -> None:
    """Results and transcript viewer: a read-only web app over $GOAT_HOME (runs, one run's tasks,
    transcripts, A/B comparisons, the leaderboard). Links from Dagster use GOAT_VIEW_URL."""
    from goat_dagster.viewer.app import serve

    click.echo(f"goat view: http://{host}:{port}/ over {config.paths().home} (Ctrl-C stops it)", err=True)
    serve(host, port)


@click.group()
def traces() -> None:
    """LLM call traces (local sink or Langfuse)."""


@traces.command("verify")
@click.argument("run_id")
@click.option(
    "--source",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "sink", "langfuse"]),
    help="Where traces are read from (auto: Langfuse when LANGFUSE_* is set, else the sink).",
)
@click.option(
    "--wait-s",
    default=5.0,
    show_default=True,
    type=float,
    help="Keep polling this long for traces still being written.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def traces_verify(run_id: str, source: str, wait_s: float, as_json: bool) -> None:
    """Check that every LLM call of a run has a trace; exit 1 if any is missing."""
    from goat_dagster.tracing.export import verify_run

    # auto: a configured Langfuse that does not answer is read around (the sink), saying so
    result = verify_run(run_id, source=source, wait_s=wait_s, fallback=source == "auto")
    if as_json:
        emit(result.as_dict())
    else:
        click.echo(
            f"run {run_id}: {result.n_calls} calls, {len(result.found)} traced, "
            f"{len(result.missing)} missing (source: {result.source})"
        )
        if result.note:
            click.echo(f"  note: {result.note}")
        for m in result.missing:
            click.echo(
                f"  missing  {m['call_id']}  task={m['task_id']} epoch={m['epoch']} step={m['step']}"
                + (f"  (call failed: {m['error']})" if not m["ok"] else "")
            )
    if not result.ok:
        sys.exit(1)
