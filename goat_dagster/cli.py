"""The `goat` command (DESIGN §8). Every verb has --help; --json prints one JSON object.

Each verb imports what it runs when it runs: `goat models` must not pay for Dagster, Modal,
DuckDB, the harness or the LLM clients (seconds together); only light modules are imported here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from goat_dagster import config
from goat_dagster.bench.interrupt import Stopped, resume_command, stop_on_signals
from goat_dagster.bench.sandbox import SandboxError
from goat_dagster.registry import Registry, RegistryError, load_registry
from goat_dagster.routing.proxy import ProxyError, stop_proxy
from goat_dagster.serving.backend import PrintLog, ServingError
from goat_dagster.textfmt import format_table
from goat_dagster.tracing.langfuse_reader import LangfuseReadError

# Errors a user can act on from their message alone (a bad file or field, a server that is down,
# Modal not set up): shown as one line; GOAT_DEBUG=1 shows the traceback instead.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # RegistryError, SuiteError, RunError, ConfigError: a file, a field, a setting
    FileNotFoundError,
    SandboxError,
    ServingError,  # goat serve, weights, Modal (not logged in / unreachable), goat setup
    ProxyError,
    LangfuseReadError,
)


def emit(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, indent=2, default=str, sort_keys=False))


def fail(message: str, code: int = 1) -> NoReturn:
    click.secho(message, fg="red", err=True)
    sys.exit(code)


def _debug() -> bool:
    try:
        return config.settings().debug
    except config.ConfigError:  # the error being reported may be this very one
        return False


class GoatGroup(click.Group):
    """Turns the errors a user can fix (bad models.yaml, a suite, a missing file, a server that is
    not up) into one clear message instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except Exception as exc:
            if _debug() or not isinstance(exc, USER_ERRORS):
                raise
            verb = ctx.invoked_subcommand or "goat"
            fail(f"goat {verb}: {exc}" if not isinstance(exc, RegistryError) else str(exc))


@click.group(cls=GoatGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="goat-dagster")
def main() -> None:
    """goat: benchmark LLM coding agents across many models, as a Dagster asset graph.

    Data lives in $GOAT_HOME (default ./.goat); the registry is models.yaml.
    """
    config.export_environment()


# ---- models ----------------------------------------------------------------------------------


@main.group(invoke_without_command=True)
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


# ---- demo / ui -------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def demo(as_json: bool) -> None:
    """The main job on the embedded default: instance, partitions, registry."""
    from goat_dagster.demo import run_demo

    result = run_demo(echo=not as_json)
    if as_json:
        emit(result)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=3000, show_default=True, type=int)
def ui(host: str, port: int) -> None:
    """Start `dagster dev` (webserver + daemon) against the goat instance."""
    from goat_dagster.devserver import run_dev

    sys.exit(run_dev(host, port))


# ---- harness ---------------------------------------------------------------------------------


@main.command()
@click.option("--suite", "-s", default=None, help="Suite name (smoke, humaneval) or path to a YAML file.")
@click.option("--prompt", "-p", default=None, help="A free-form prompt instead of a suite (unscored).")
@click.option(
    "--batch", "-b", default=None, type=click.Path(dir_okay=False), help="A JSON file of prompts (unscored)."
)
@click.option("--model", "-m", required=True, help="Model key from models.yaml.")
@click.option("--agent", default="builtin", show_default=True, help="builtin | oracle | command:CMD")
@click.option(
    "--prompts",
    default=None,
    help="The builtin agent's prompt set: a name under $GOAT_PROMPTS_DIR or a directory "
    "(default $GOAT_PROMPTS or builtin).",
)
@click.option("--sandbox", default="local", show_default=True, type=click.Choice(["local", "modal"]))
@click.option(
    "--parallel",
    default=None,
    type=int,
    help="Tasks at once (default: what serves the model serves well: 1 for a local model, whose "
    "goat serve worker answers one call at a time; 2 for Modal, cloud, or an agent calling no model).",
)
@click.option("--epochs", default=1, show_default=True, type=int)
@click.option("--run-id", default=None, help="Resume (or name) a run.")
@click.option("--budget-usd", default=None, type=float, help="Stop starting tasks once spent.")
@click.option("--tasks", default=None, help="Only these task ids: ID[,ID...].")
@click.option(
    "--mount",
    "mounts",
    multiple=True,
    metavar="PATH",
    help="Show a host path read-only in a command: agent's local sandbox (repeatable).",
)
@click.option(
    "--over-budget",
    is_flag=True,
    help="Start even if the projected cost passes the provider's monthly budget.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object.")
def run(
    suite: str | None,
    prompt: str | None,
    batch: str | None,
    model: str,
    agent: str,
    prompts: str | None,
    sandbox: str,
    parallel: int | None,
    epochs: int,
    run_id: str | None,
    budget_usd: float | None,
    tasks: str | None,
    mounts: tuple[str, ...],
    over_budget: bool,
    as_json: bool,
) -> None:
    """Run a suite against a model outside Dagster, or free-form prompts (--prompt, --batch).

    Results go to $GOAT_HOME/lake/results/<run_id>.parquet; a killed run resumes with --run-id.
    A prompt's attempts are `unscored` (no check judges them): their answers are printed.
    """
    from goat_dagster.analysis.run_reports import answers_text, prompt_answers, summary_text
    from goat_dagster.analysis.runs import summarize_run
    from goat_dagster.analysis.spend import refuse_over_budget, run_budget
    from goat_dagster.analysis.warehouse import update_views
    from goat_dagster.bench.agents import make_agent
    from goat_dagster.bench.freeform import tasks_to_run
    from goat_dagster.bench.journal import RunError
    from goat_dagster.bench.progress import ProgressBar
    from goat_dagster.bench.run_request import RunRequest
    from goat_dagster.bench.runner import run_benchmark
    from goat_dagster.bench.suite import SuiteError
    from goat_dagster.bench.usage import AgentLimits

    registry = load_registry()
    bar = ProgressBar()
    started: list[str] = [run_id] if run_id else []

    def on_start(spec: Any, pending: int, total: int) -> None:
        started[:] = [spec.run_id]
        bar.start(spec, pending, total)

    try:
        with stop_on_signals():  # SIGTERM/SIGINT: the run ends cleanly, resumable (bench/interrupt.py)
            work = tasks_to_run(suite, prompt, batch)
            if not work.tasks[0].scored and make_agent(agent).name == "oracle":
                raise RunError("--agent oracle writes a task's reference; a free-form prompt has none")
            entry = registry.get(model)
            budget = run_budget(
                registry,
                entry,
                work,
                epochs=epochs,
                run_id=run_id,
                limits=AgentLimits(),
                budget_usd=budget_usd,
            )
            if not over_budget:
                refuse_over_budget(budget, entry)
            request = RunRequest(
                suite=work,
                model=model,
                agent=agent,
                prompts=prompts,
                sandbox=sandbox,
                parallel=parallel,
                epochs=epochs,
                run_id=run_id,
                budget_usd=budget_usd,
                task_ids=[t.strip() for t in tasks.split(",") if t.strip()] if tasks else None,
                mounts=mounts,
                on_start=on_start,
                on_task=bar.task,
                registry=registry,
            )
            prepare_gateway(registry, model, agent, quiet=as_json)
            outcome = run_benchmark(request)
    except Stopped as stop:
        bar.close()
        stopped(stop, started[0] if started else None, as_json)
    except (SuiteError, RunError, SandboxError, ServingError, ProxyError, KeyError, ValueError) as exc:
        fail(f"goat run: {exc.args[0] if isinstance(exc, KeyError) else exc}")
    finally:
        bar.close()
    summary = summarize_run(outcome).model_dump(mode="json")
    update_views()  # the DuckDB views people query themselves, over the lake this run is now in
    answers = prompt_answers(outcome.run_id) if summary["unscored"] or not work.tasks[0].scored else None
    if as_json:
        emit({**summary, **({"answers": answers} if answers is not None else {})})
    else:
        click.echo(summary_text(summary) + (f"\n\n{answers_text(answers)}" if answers else ""))


def stopped(stop: Stopped, run_id: str | None, as_json: bool) -> NoReturn:
    """A run ended by a signal: say how to resume it (its journal keeps every finished row)."""
    from goat_dagster.bench.journal import journal_file, latest_rows, read_entries

    if run_id is None:
        fail(f"goat run: stopped by {stop.name} before the run started; nothing was recorded", stop.exit_code)
    resume = resume_command(sys.argv[1:], run_id)
    done = len(latest_rows(read_entries(journal_file(run_id))))
    if as_json:
        emit({"run_id": run_id, "stopped": stop.name, "journaled_rows": done, "resume": resume})
    fail(
        f"goat run: stopped by {stop.name}; run {run_id} has {done} finished task(s) in its journal. "
        f"Resume it with:\n  {resume}",
        stop.exit_code,
    )


def prepare_gateway(registry: Registry, model: str, agent: str, quiet: bool) -> None:
    """Agents that call the model need its endpoint and the proxy up; the oracle needs neither, and
    GOAT_LLM_BASE_URL names a gateway the user runs themselves."""
    from goat_dagster.bench.agents import make_agent

    if not make_agent(agent).needs_gateway or config.settings().llm_base_url:
        return
    # only now: the serving backends import modal (0.2 s an oracle run need not pay)
    from goat_dagster.routing.stack import ensure_model_stack
    from goat_dagster.serving.backends import Backends

    log = PrintLog(None if quiet else lambda m: click.echo(m, err=True))
    ensure_model_stack(registry, registry.get(model), Backends.from_settings(), log=log)


@main.command()
@click.argument("prompt")
@click.option("--model", "-m", required=True, help="Model key from models.yaml.")
@click.option("--system", default=None, help="A system message to send first.")
@click.option("--max-tokens", default=512, show_default=True, type=int, help="Completion tokens at most.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (after the answer is complete).")
def ask(prompt: str, model: str, system: str | None, max_tokens: int, as_json: bool) -> None:
    """Stream one answer to PROMPT ('-': read it from stdin) from MODEL through the LiteLLM proxy,
    with its trace recorded (`goat traces verify SESSION` finds it)."""
    from goat_dagster.bench.ask import AskError
    from goat_dagster.bench.ask import ask as ask_model
    from goat_dagster.routing.gateway import resolve_gateway

    text = sys.stdin.read() if prompt == "-" else prompt
    if not text.strip():
        fail("goat ask: the prompt is empty")
    registry = load_registry()
    try:
        entry = registry.get(model)
        prepare_gateway(registry, model, "builtin", quiet=as_json)
        answer = ask_model(
            entry,
            resolve_gateway(entry),
            text,
            system=system,
            max_tokens=max_tokens,
            on_text=None if as_json else lambda piece: click.echo(piece, nl=False),
        )
    except (KeyError, AskError) as exc:
        fail(f"goat ask: {exc.args[0]}")
    if as_json:
        emit(answer.as_dict())
        return
    click.echo(f"\n\n[{answer.footer()}]", err=True)


@main.command()
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


@main.command()
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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8200, show_default=True, type=int)
def view(host: str, port: int) -> None:
    """Results and transcript viewer: a read-only web app over $GOAT_HOME (runs, one run's tasks,
    transcripts, A/B comparisons, the leaderboard). Links from Dagster use GOAT_VIEW_URL."""
    from goat_dagster.viewer.app import serve

    click.echo(f"goat view: http://{host}:{port}/ over {config.paths().home} (Ctrl-C stops it)", err=True)
    serve(host, port)


# ---- serving / traces / cloud ----------------------------------------------------------------


@main.command()
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


@main.command()
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


@main.command()
def stop() -> None:
    """Stop what goat started in the background for this GOAT_HOME: goat serve and the LiteLLM proxy."""
    from goat_dagster.serving.local.client import stop_control_plane  # huggingface_hub: not at start-up

    pid = stop_control_plane()
    click.echo(f"goat serve: {'stopped (pid ' + str(pid) + ')' if pid else 'not running'}")
    click.echo(f"LiteLLM proxy: {'stopped' if stop_proxy() else 'not running'}")


@main.group()
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


@main.command()
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


@main.command()
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


if __name__ == "__main__":
    main()
