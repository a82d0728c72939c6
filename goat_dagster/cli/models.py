"""`goat models`: the registry, and a model's weights revision (history, promote, rollback)."""

from __future__ import annotations

import click

from goat_dagster.cli.common import emit
from goat_dagster.registry import load_registry
from goat_dagster.textfmt import format_table


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--enabled", "enabled_only", is_flag=True, help="Only enabled models.")
@click.pass_context
def models(ctx: click.Context, as_json: bool, enabled_only: bool) -> None:
    """Show the model registry (models.yaml), validated; `history`, `promote` and `rollback` a
    model's pinned weights revision."""
    if ctx.invoked_subcommand is not None:
        return
    registry = load_registry()
    rows = [r for r in registry.table() if r["enabled"] or not enabled_only]
    if as_json:
        emit(
            {
                "source": registry.source,
                "content_hash": registry.content_hash,
                "router": registry.router.model_dump(mode="json"),
                "budgets": {k: b.model_dump(mode="json") for k, b in registry.budgets.items()},
                "models": rows,
            }
        )
        return
    click.echo(format_table(rows, ["key", "provider", "engine", "gateway_name", "gpu", "weights", "enabled"]))
    click.echo(f"\n{len(rows)} models from {registry.source} (content {registry.content_hash[:12]})")


@models.command("history")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def models_history(key: str, as_json: bool) -> None:
    """The revisions of KEY's weights that model_weights fetched, and the pass rates of their runs."""
    from goat_dagster.model_revisions import history_view

    payload, text = history_view(key)
    emit(payload) if as_json else click.echo(text)


@models.command("promote")
@click.argument("key")
@click.option("--revision", "-r", required=True, help="Commit (or a unique prefix of 7+) to pin.")
@click.option("--force", is_flag=True, help="Pin it even if it was never fetched or benchmarked.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def models_promote(key: str, revision: str, force: bool, as_json: bool) -> None:
    """Pin KEY's weights at REVISION in models.yaml (comments and layout kept); the registry sensor
    then re-materializes the model's chain."""
    from goat_dagster.model_revisions import promote

    payload, text = promote(key, revision, force=force)
    emit(payload) if as_json else click.echo(text)


@models.command("rollback")
@click.argument("key")
@click.option("--force", is_flag=True, help="Allow a revision that was fetched but never benchmarked.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def models_rollback(key: str, force: bool, as_json: bool) -> None:
    """Pin KEY's weights back at the previous benchmarked revision (models.yaml edited in place)."""
    from goat_dagster.model_revisions import rollback

    payload, text = rollback(key, force=force)
    emit(payload) if as_json else click.echo(text)
