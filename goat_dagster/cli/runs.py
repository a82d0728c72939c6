"""`goat run` and `goat ask`: benchmark runs and single prompts outside Dagster."""

from __future__ import annotations

import sys
import threading
from typing import Any, NoReturn

import click

from goat_dagster import config
from goat_dagster.bench.interrupt import Stopped, resume_command, stop_on_signals
from goat_dagster.bench.sandbox import SandboxError
from goat_dagster.bench.usage import AgentLimits
from goat_dagster.cli.common import emit, fail
from goat_dagster.registry import Registry, load_registry
from goat_dagster.routing.proxy import ProxyError
from goat_dagster.serving.backend import PrintLog, ServingError


@click.command()
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
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    help=f"Model calls per task attempt (default {AgentLimits.max_steps}).",
)
@click.option(
    "--max-output-tokens",
    type=click.IntRange(min=16),
    help=f"Completion tokens per call (default {AgentLimits.max_output_tokens}).",
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0, min_open=True),
    help=f"Wall clock of one task attempt's agent phase (default {AgentLimits.max_seconds:g} s).",
)
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
    max_steps: int | None,
    max_output_tokens: int | None,
    max_seconds: float | None,
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

    registry = load_registry()
    bar = ProgressBar()
    started: list[str] = [run_id] if run_id else []

    def on_start(spec: Any, pending: int, total: int) -> None:
        started[:] = [spec.run_id]
        bar.start(spec, pending, total)

    given = {"max_steps": max_steps, "max_output_tokens": max_output_tokens, "max_seconds": max_seconds}
    limits = AgentLimits(**{k: v for k, v in given.items() if v is not None})  # else AgentLimits' defaults
    # the DuckDB views people query themselves read the lake by glob, so they need not wait for this
    # run's file: made or brought up to date beside the run (a CPU is often idle), done before we end
    views = threading.Thread(target=update_views, name="goat-warehouse-views")
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
                limits=limits,
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
                limits=limits,
                on_start=on_start,
                on_task=bar.task,
                registry=registry,
            )
            prepare_gateway(registry, model, agent, quiet=as_json)
            views.start()
            outcome = run_benchmark(request)
    except Stopped as stop:
        bar.close()
        stopped(stop, started[0] if started else None, as_json)
    except (SuiteError, RunError, SandboxError, ServingError, ProxyError, KeyError, ValueError) as exc:
        fail(f"goat run: {exc.args[0] if isinstance(exc, KeyError) else exc}")
    finally:
        bar.close()
        if views.is_alive():
            views.join()
    summary = summarize_run(outcome).model_dump(mode="json")
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


@click.command()
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
