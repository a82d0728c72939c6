"""A benchmark run: a suite's tasks x epochs against one model, through one agent, in sandboxes.

`run_benchmark(RunRequest(...))` is the one entry point (used by `goat run` and the
`benchmark_results` asset). It sets the run up — the suite, the agent, the journal (a killed run
resumes with its `run_id`, without redoing finished tasks), the model gateway (refused at once
when nothing answers), a sandbox pool with one slot per worker thread — lets `parallel` threads
work off the tasks (task_runner.py), and writes the rows to the results lake as one Parquet file.
It returns a `RunOutcome`; what the rows add up to is the warehouse's to say
(`goat_dagster.analysis.runs.summarize_run`).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from goat_dagster.bench.agent import Agent
from goat_dagster.bench.agents import make_agent
from goat_dagster.bench.journal import GatewayDown, RunError, RunJournal, RunSpec
from goat_dagster.bench.lake import write_results
from goat_dagster.bench.llm_client import check_reachable
from goat_dagster.bench.manifest import (
    RunManifest,
    describe_run,
    read_manifest,
    settle_manifest,
    write_manifest,
)
from goat_dagster.bench.prompts import PromptSet, load_prompt_set
from goat_dagster.bench.run_request import RunOutcome, RunRequest
from goat_dagster.bench.sandbox import PoolOptions, SandboxPool
from goat_dagster.bench.sandboxes import make_pool, sandbox_image
from goat_dagster.bench.suite import load_suite
from goat_dagster.bench.task_runner import Budget, TaskRunner
from goat_dagster.bench.tasks import Task
from goat_dagster.registry import ModelEntry, load_registry, slugify
from goat_dagster.routing.gateway import Gateway, resolve_gateway
from goat_dagster.routing.proxy import gateway_lease

if TYPE_CHECKING:  # serving.backends imports modal: only runs that call a model import it (_backends)
    from goat_dagster.serving.backends import Backends


def new_run_id(model: str, suite: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{slugify(model)}-{slugify(suite)}-{secrets.token_hex(3)}"


# tasks at once when nothing calls a model (the oracle): the checks' sandboxes share this machine
SANDBOX_PARALLEL = 2


def parallel_for(request: RunRequest, agent: Agent, entry: ModelEntry) -> int:
    """How many tasks the run works on at once: `request.parallel` when given; else what the
    backend serving the model serves well (`ServingBackend.default_parallel`: 1 for a local
    goat serve worker, which answers one call at a time), or `SANDBOX_PARALLEL` for an agent that
    calls no model."""
    if request.parallel is not None:
        return request.parallel
    if not agent.needs_gateway:
        return SANDBOX_PARALLEL
    return _backends(request).for_entry(entry).default_parallel


def _backends(request: RunRequest) -> Backends:
    """The request's serving backends, else the environment's (asked only by runs that call a model)."""
    # only now: the serving backends import modal (0.15 s an oracle run need not pay)
    from goat_dagster.serving.backends import Backends

    return request.backends or Backends.from_settings()


def run_benchmark(request: RunRequest) -> RunOutcome:
    """Run (or resume, with the same `run_id`) a suite against a registry model."""
    entry = (request.registry or load_registry()).get(request.model)
    suite = load_suite(request.suite) if isinstance(request.suite, str) else request.suite
    tasks = suite.tasks if request.task_ids is None else [suite.task(t) for t in request.task_ids]
    agent = make_agent(request.agent)
    prompts = None
    if agent.uses_prompts:  # refused here, before anything is recorded, when a prompt file is broken
        prompts = (
            request.prompts if isinstance(request.prompts, PromptSet) else load_prompt_set(request.prompts)
        )
        agent = make_agent(request.agent, prompts)
    mounts = request.sandbox_mounts()
    spec = RunSpec(
        run_id=request.run_id or new_run_id(entry.key, suite.name),
        suite=suite.name,
        suite_version=suite.version,
        model=entry.key,
        agent=agent.name,
        sandbox=request.sandbox,
        epochs=request.epochs,
        task_ids=request.task_ids,
    )
    journal = RunJournal(spec)
    try:
        done = journal.done()
        items = [(t, e) for e in range(1, request.epochs + 1) for t in tasks]
        pending = [(t, e) for t, e in items if (t.id, e) not in done]
        if request.on_start is not None:
            request.on_start(journal.spec, len(pending), len(items))
        # everything this run has paid for so far, redone rows included
        budget = Budget(request.budget_usd, spent=sum(e["row"].cost_usd for e in journal.entries()))
        isolation, warnings = "", []
        manifest = read_manifest(journal.spec.run_id)  # a resumed run's, kept when nothing is left to do
        if pending:
            gateway = _gateway(request, agent, entry) if agent.needs_gateway else None
            manifest = settle_manifest(
                journal.dir, _describe(request, journal.spec, agent, entry, prompts, gateway)
            )
            size = min(parallel_for(request, agent, entry), len(pending))
            pool = request.pool or _pool(request, agent, gateway, size, mounts)
            runner = TaskRunner(request, journal, suite, agent, pool, gateway, budget, done, len(items))
            isolation, warnings = _work(runner, pending, size, close_pool=request.pool is None)
        final = journal.rows()
        rows = [final[(t.id, e)] for t, e in items if (t.id, e) in final]
        results_path = write_results(journal.spec.run_id, rows)
        if manifest is not None:
            write_manifest(manifest)
        return RunOutcome(
            spec=journal.spec,
            planned=len(items),
            results_path=results_path,
            journal_dir=journal.dir,
            resumed=journal.resumed,
            reused_rows=len(done),
            budget_usd=request.budget_usd,
            isolation=isolation,
            warnings=warnings,
            manifest=manifest,
        )
    finally:
        journal.close()


def _describe(
    request: RunRequest,
    spec: RunSpec,
    agent: Agent,
    entry: ModelEntry,
    prompts: PromptSet | None,
    gateway: Gateway | None,
) -> RunManifest:
    """The run's manifest: what serves the model is asked only when the agent calls it."""
    backends = _backends(request) if agent.needs_gateway else None
    return describe_run(
        spec,
        agent=agent,
        entry=entry,
        prompts=prompts,
        gateway=gateway,
        provenance=backends.for_entry(entry).provenance(entry) if backends is not None else None,
        limits=request.limits,
        sandbox_limits=request.sandbox_limits,
        sandbox_image=sandbox_image(request.sandbox),
    )


def _gateway(request: RunRequest, agent: Agent, entry: ModelEntry) -> Gateway:
    """The model gateway of the run, refused up front when the agent could not use it."""
    gateway = request.gateway or resolve_gateway(entry)
    if agent.needs_network and request.sandbox != "local" and gateway.on_loopback:
        raise RunError(  # no use asking whether it answers: the sandbox could not reach it
            f"a command: agent in a {request.sandbox} sandbox calls the gateway itself, but "
            f"{gateway.base_url} is this machine's loopback, out of the sandbox's reach: set "
            "GOAT_LITELLM_URL to a proxy it can reach (the proxy on Modal, README: Cloud set-up)"
        )
    try:  # a gateway down from the start is a clear error, not a run of infra rows
        check_reachable(gateway)
    except ConnectionError as exc:
        raise GatewayDown(f"{exc} (start the proxy, or set GOAT_LLM_BASE_URL)") from None
    return gateway


def _pool(
    request: RunRequest, agent: Agent, gateway: Gateway | None, size: int, mounts: tuple[str, ...]
) -> SandboxPool:
    reach = gateway if agent.needs_network else None  # the gateway the sandbox calls
    options = PoolOptions(
        size=size,
        limits=request.sandbox_limits,
        network=agent.needs_network,
        gateway_host=urlsplit(reach.base_url).hostname if reach is not None else None,
        ro_paths=mounts,
    )
    return make_pool(request.sandbox, options)


def _work(
    runner: TaskRunner, pending: list[tuple[Task, int]], size: int, *, close_pool: bool
) -> tuple[str, list[str]]:
    """Work off the pending tasks x epochs on `size` threads; (the pool's isolation, its warnings)."""
    threads = [
        threading.Thread(target=runner.worker, args=(pending,), name=f"goat-task-{i}", daemon=True)
        for i in range(size)
    ]
    lease = contextlib.ExitStack()
    if runner.agent.needs_gateway:  # the managed proxy is not restarted under a running benchmark
        lease.enter_context(gateway_lease())
    try:
        for th in threads:
            th.start()
        for th in threads:
            while th.is_alive():
                th.join(0.5)
    except BaseException:
        runner.stop.set()
        raise
    finally:
        lease.close()
        warnings = list(runner.pool.warnings)  # with what came up while tasks ran
        if close_pool:  # first: a stopped run's agents go, and with them their calls to the relays
            runner.pool.close()
        runner.close_relays()
    return runner.pool.isolation, warnings


__all__ = ["RunError", "new_run_id", "run_benchmark"]
