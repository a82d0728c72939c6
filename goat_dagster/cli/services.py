"""What goat starts and checks: `goat demo`, `goat ui`, `goat serve`, `goat providers`, `goat stop`,
`goat setup`, `goat doctor`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from goat_dagster import config
from goat_dagster.cli.common import emit, fail
from goat_dagster.registry import load_registry
from goat_dagster.routing.proxy import stop_proxy
from goat_dagster.serving.backend import ServingError
from goat_dagster.textfmt import format_table


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def demo(as_json: bool) -> None:
    """The main job on the embedded default: instance, partitions, registry."""
    from goat_dagster.demo import run_demo

    result = run_demo(echo=not as_json)
    if as_json:
        emit(result)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=3000, show_default=True, type=int)
def ui(host: str, port: int) -> None:
    """Start `dagster dev` (webserver + daemon) against the goat instance."""
    from goat_dagster.devserver import run_dev

    sys.exit(run_dev(host, port))


@click.command()
@click.option(
    "--host", default=lambda: config.settings().serve_host, show_default="$GOAT_SERVE_HOST or 127.0.0.1"
)
@click.option(
    "--port",
    default=lambda: config.settings().serve_port,
    show_default="$GOAT_SERVE_PORT or 8100",
    type=int,
    help="0 picks a free port.",
)
@click.option(
    "--budget-mb",
    default=lambda: config.settings().serve_budget_mb,
    type=int,
    help="Memory budget for loaded models (default $GOAT_SERVE_BUDGET_MB or half the RAM).",
)
@click.option(
    "--margin-mb",
    default=lambda: config.settings().serve_margin_mb,
    type=int,
    help="Head-room kept free in the budget (default $GOAT_SERVE_MARGIN_MB or 256).",
)
@click.option(
    "--max-queue", default=16, show_default=True, type=int, help="Waiting requests per model; 429 beyond."
)
@click.option("--timeout-s", default=600.0, show_default=True, type=float, help="Per-request timeout.")
@click.option(
    "--cores",
    type=click.IntRange(min=1),
    help="Cores busy workers may use at once; requests wait beyond (default: the CPUs it may run on).",
)
@click.option(
    "--models-dir",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Also serve every GGUF in this folder (named after its file), without a registry entry.",
)
@click.option("--detach", is_flag=True, help="Start in the background (or reuse the running one) and return.")
@click.option("--stop", is_flag=True, help="Stop the background control plane of this GOAT_HOME.")
def serve(
    host: str,
    port: int,
    budget_mb: int | None,
    margin_mb: int | None,
    max_queue: int,
    timeout_s: float,
    cores: int | None,
    models_dir: str | None,
    detach: bool,
    stop: bool,
) -> None:
    """The local llama.cpp control plane (OpenAI-compatible)."""
    from goat_dagster.serving.local.client import ensure_control_plane, stop_control_plane  # huggingface_hub
    from goat_dagster.serving.local.server import PortInUse, run_serve  # FastAPI, uvicorn, aiohttp
    from goat_dagster.serving.local.settings import ServeSettings

    if stop:
        pid = stop_control_plane()
        click.echo(f"stopped goat serve pid {pid}" if pid else "goat serve is not running")
        return
    settings = ServeSettings(
        host=host,
        port=port,
        budget_mb=budget_mb,
        margin_mb=margin_mb,
        max_queue=max_queue,
        request_timeout_s=timeout_s,
        cores=cores,
        models_dir=str(Path(models_dir).resolve()) if models_dir else None,
    )
    try:
        if detach:
            cp = ensure_control_plane(settings)
            how = "started" if cp.started else "already running"
            click.echo(f"goat serve {how}: {cp.base_url} (pid {cp.pid}, log {cp.log_path})")
            return
        run_serve(settings)
    except (PortInUse, ServingError) as exc:
        fail(f"goat serve: {exc}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--timeout-s", default=60.0, show_default=True, type=float, help="Per deployment.")
def providers(as_json: bool, timeout_s: float) -> None:
    """Each deployment's health and latency (the LiteLLM proxy's health checks, else probes)."""
    from goat_dagster.routing.providers import providers_report
    from goat_dagster.serving.backends import Backends

    report = providers_report(load_registry(), Backends.from_settings(), timeout_s=timeout_s)
    if as_json:
        emit(report.as_dict())
    else:
        rows = [{**r.__dict__, "latency_ms": r.latency_ms or ""} for r in report.deployments]
        cols = ["model_name", "deployment", "provider", "status", "latency_ms", "target", "error"]
        click.echo(format_table(rows, cols))
        click.echo(f"\n{report.healthy} healthy, {report.unhealthy} unhealthy; {report.note}")
    if report.unhealthy:
        sys.exit(1)


@click.command()
def stop() -> None:
    """Stop what goat started in the background for this GOAT_HOME: goat serve and the LiteLLM proxy."""
    from goat_dagster.serving.local.client import stop_control_plane  # huggingface_hub: not at start-up

    pid = stop_control_plane()
    click.echo(f"goat serve: {'stopped (pid ' + str(pid) + ')' if pid else 'not running'}")
    click.echo(f"LiteLLM proxy: {'stopped' if stop_proxy() else 'not running'}")


@click.command()
@click.option("--dry-run", is_flag=True, help="Show what would be created; change nothing.")
@click.option("--env-file", default=".env", show_default=True, type=click.Path(dir_okay=False))
@click.option("--yes", is_flag=True, help="Create without asking.")
def setup(dry_run: bool, env_file: str, yes: bool) -> None:
    """Create the Modal environment, secrets and volumes from ./.env."""
    from goat_dagster.serving.modal.cloud import ModalCloud, ModalUnavailable
    from goat_dagster.serving.modal.setup import apply_plan, build_plan, modal_state, read_env_file

    try:
        cloud = ModalCloud(read_env_file(env_file).get(config.GoatSettings.env_name("modal_environment")))
        try:
            state, note = modal_state(cloud), ""
        except ModalUnavailable as exc:
            if not dry_run:
                fail(f"goat setup: {exc}")
            state, note = None, f"Modal {exc.reason}: {exc.detail}"
        plan = build_plan(env_file, state, note, registry=load_registry())
        click.echo(plan.render())
        if plan.problems:
            sys.exit(1)
        if dry_run:
            return
        if not yes:
            if not sys.stdin.isatty():
                fail("goat setup: no terminal to ask; re-run with --yes to apply this plan")
            click.confirm("Apply this plan?", abort=True)
        apply_plan(plan, cloud, click.echo)
    except ServingError as exc:  # SetupError, ModalUnavailable
        fail(f"goat setup: {exc}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--cloud", is_flag=True, help="Check Modal even when no enabled model runs there.")
def doctor(as_json: bool, cloud: bool) -> None:
    """Phased checks: config, secrets, services, endpoints, traces."""
    from goat_dagster.doctor import render, run_doctor, to_json

    checks = run_doctor(check_cloud=True if cloud else None)
    result = to_json(checks)
    if as_json:
        emit(result)
    else:
        click.echo(render(checks))
    if not result["ok"]:
        sys.exit(1)
