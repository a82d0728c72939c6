"""A benchmark run: a suite's tasks x epochs against one model, through one agent, in sandboxes.

`run_benchmark(...)` is the one entry point (used by `goat run` and the `benchmark_results`
asset). For each task x epoch it takes a sandbox from the pool, writes the set-up files, lets the
agent work, stops whatever the agent left running, uploads the hidden tests and runs the check:

- `passed` / `failed`: the check ran and exited 0 / non-zero (or timed out: a hanging solution);
- `error` with `error_kind`: `infra` (gateway or sandbox broke, after `retries` attempts with
  exponential backoff, each attempt with its own trace id), `timeout` (the agent ran past its
  time limit), `agent` (the agent itself broke), `budget` (not started: the budget was spent).

Parallelism is bounded by `parallel` (one sandbox slot per worker thread). Every finished row is
journaled before the next task starts, and `--run-id` resumes a killed run; at the end the rows go
to the results lake as one Parquet file.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from goat_dagster.bench.agents import Agent, AgentContext, AgentLimits, Usage, make_agent
from goat_dagster.bench.errors import AttemptError
from goat_dagster.bench.gateway import (
    CallContext,
    CallLog,
    Gateway,
    GatewayClient,
    check_reachable,
    resolve_gateway,
)
from goat_dagster.bench.journal import GatewayDown, RunError, RunJournal, RunSpec
from goat_dagster.bench.lake import ResultRow, summarize, write_results
from goat_dagster.bench.sandbox import (
    PoolOptions,
    Sandbox,
    SandboxError,
    SandboxFileError,
    SandboxLimits,
    SandboxPathError,
    SandboxPool,
    make_pool,
)
from goat_dagster.bench.suite import Suite, Task, load_suite
from goat_dagster.bench.transcript import Transcript
from goat_dagster.registry import slugify
from goat_dagster.serving.proxy import gateway_lease
from goat_dagster.tracing.masking import secret_values
from goat_dagster.tracing.schema import new_id

log = logging.getLogger(__name__)


class Progress(BaseModel):
    """Where a run stands, handed to `on_task` after every row."""

    done: int
    total: int
    passed: int
    failed: int
    errors: int
    cost_usd: float


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


OnTask = Callable[[ResultRow, Progress], None]


def new_run_id(model: str, suite: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{slugify(model)}-{slugify(suite)}-{secrets.token_hex(3)}"


_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class RetryPolicy:
    """Transient failures: a task attempt ending in an infra error is tried again `retries` times;
    a single model call `call_retries` times; waits grow from `backoff_s` (x2 each time)."""

    retries: int = 2
    call_retries: int = 3
    backoff_s: float = 2.0


@dataclass
class _Budget:
    limit: float | None
    spent: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, usd: float) -> None:
        with self.lock:
            self.spent += usd

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.spent >= self.limit


class _Run:
    """The state of one `run_benchmark` call (threads share it)."""

    def __init__(
        self,
        spec: RunSpec,
        suite: Suite,
        agent: Agent,
        journal: RunJournal,
        pool: SandboxPool,
        gateway: Gateway | None,
        limits: AgentLimits,
        retry: RetryPolicy,
        budget: _Budget,
        on_task: OnTask | None,
        total: int,
        done_rows: dict[tuple[str, int], ResultRow],
    ):
        self.spec, self.suite, self.agent, self.journal, self.pool = spec, suite, agent, journal, pool
        self.gateway, self.limits, self.retry = gateway, limits, retry
        self.budget, self.on_task, self.total = budget, on_task, total
        self.rows = dict(done_rows)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.calls = CallLog(spec.run_id)
        self.client = (
            GatewayClient(
                gateway, self.calls, retries=retry.call_retries, backoff_s=retry.backoff_s, on_cost=budget.add
            )
            if agent.uses_client and gateway is not None
            else None
        )
        self.relays: dict[Path, Any] = {}
        self.secrets = secret_values()  # masked out of every transcript

    # ---- one task x epoch ------------------------------------------------------------------

    def relay_for(self, sb: Sandbox) -> Any:
        relay_dir = getattr(sb, "relay_dir", None)
        if not self.agent.needs_network or relay_dir is None or self.gateway is None:
            return None
        with self.lock:
            if relay_dir not in self.relays:
                from goat_dagster.bench.relay import GatewayRelay

                self.relays[relay_dir] = GatewayRelay(
                    relay_dir / "gateway.sock", self.gateway, self.calls, on_cost=self.budget.add
                )
            return self.relays[relay_dir]

    def attempt(
        self,
        task: Task,
        epoch: int,
        trace_id: str,
        usage: Usage,
        detail: dict[str, Any],
        transcript: Transcript,
    ) -> str:
        """One attempt; returns passed/failed or raises AttemptError / SandboxError."""
        with self.pool.session(image=task.image) as sb:
            sb.write_files(task.files)
            ctx = AgentContext(
                task=task,
                sandbox=sb,
                limits=self.limits,
                usage=usage,
                call=CallContext(
                    run_id=self.spec.run_id,
                    suite=self.suite.name,
                    model=self.spec.model,
                    task_id=task.id,
                    epoch=epoch,
                    trace_id=trace_id,
                ),
                deadline=time.monotonic() + self.limits.max_seconds,
                gateway=self.gateway,
                client=self.client,
                relay=self.relay_for(sb),
                transcript=transcript,
            )
            try:
                self.agent.run(ctx)
            except AttemptError:  # the agent failed or ran out of time: what it left, for the record
                transcript.files(sb, task.files)
                raise
            sb.kill_processes()
            transcript.files(sb, task.files)
            try:
                sb.write_files(task.tests)
            except (SandboxFileError, SandboxPathError) as exc:
                detail["check"] = f"the hidden tests could not be put in place: {exc}"
                transcript.check(task.check, passed=False, note=detail["check"])
                return "failed"  # the agent left something in their way (e.g. a directory)
            res = sb.exec(task.check, timeout_s=task.timeout_s)
            detail["check_exit"] = res.exit_code
            detail["check_killed"] = res.killed
            detail["check_output"] = res.tail(2000)
            passed = res.exit_code == 0 and res.killed is None
            transcript.check(task.check, result=res, passed=passed)
            return "passed" if passed else "failed"

    def run_item(self, task: Task, epoch: int) -> tuple[ResultRow, dict[str, Any]]:
        started = datetime.now(UTC)
        t0 = time.monotonic()
        total = Usage()
        detail: dict[str, Any] = {"attempts": []}
        status, kind, trace_id = "error", "infra", None
        for attempt in range(self.retry.retries + 1):
            trace_id = new_id()
            usage = Usage()
            note: dict[str, Any] = {"trace_id": trace_id}
            transcript = Transcript.for_attempt(self.spec.run_id, task.id, epoch, trace_id, self.secrets)
            transcript.start(
                task=task, epoch=epoch, attempt=attempt + 1, trace_id=trace_id, agent=self.agent.name
            )
            retryable = True
            try:
                status, kind = self.attempt(task, epoch, trace_id, usage, note, transcript), None
            except AttemptError as exc:
                status, kind = "error", exc.kind
                note["error"] = str(exc)
            except SandboxError as exc:
                status, kind = "error", "infra"
                note["error"] = f"sandbox: {exc}"
                retryable = exc.transient  # e.g. no Modal credentials: another attempt would not help
            except Exception as exc:  # a bug of ours is not the model's failure
                status, kind = "error", "infra"
                note["error"] = f"{type(exc).__name__}: {exc}"
                note["traceback"] = traceback.format_exc(limit=8)
                log.exception("task %s epoch %s: unexpected error", task.id, epoch)
            for f in ("steps", "tool_calls", "prompt_tokens", "completion_tokens", "cost_usd"):
                setattr(total, f, getattr(total, f) + getattr(usage, f))
            note.update(stop=usage.stop_reason, notes=usage.notes[-3:])
            detail["attempts"].append(note)
            transcript.end(status=status, error_kind=kind, note=note)
            if kind != "infra" or not retryable or attempt >= self.retry.retries or self.stop.is_set():
                break
            if self.budget.exhausted:  # a retry is new spending: the row stays infra (redone on resume)
                note["retry"] = f"not retried: the budget is spent ({self.budget.spent:.6f} USD)"
                break
            time.sleep(self.retry.backoff_s * (2**attempt))
        finished = datetime.now(UTC)
        row = ResultRow(
            run_id=self.spec.run_id,
            suite=self.suite.name,
            suite_version=self.suite.version,
            model=self.spec.model,
            agent=self.agent.name,
            sandbox=self.spec.sandbox,
            task_id=task.id,
            epoch=epoch,
            status=status,
            error_kind=kind,
            started_at=started,
            finished_at=finished,
            wall_s=round(time.monotonic() - t0, 4),
            steps=total.steps,
            tool_calls=total.tool_calls,
            prompt_tokens=total.prompt_tokens,
            completion_tokens=total.completion_tokens,
            cost_usd=round(total.cost_usd, 8),
            trace_id=trace_id,
        )
        return row, detail

    def budget_row(self, task: Task, epoch: int) -> ResultRow:
        now = datetime.now(UTC)
        return ResultRow(
            run_id=self.spec.run_id,
            suite=self.suite.name,
            suite_version=self.suite.version,
            model=self.spec.model,
            agent=self.agent.name,
            sandbox=self.spec.sandbox,
            task_id=task.id,
            epoch=epoch,
            status="error",
            error_kind="budget",
            started_at=now,
            finished_at=now,
            wall_s=0.0,
        )

    def record(self, row: ResultRow, detail: dict[str, Any]) -> None:
        with self.lock:
            self.journal.append(row, detail)
            self.rows[row.key] = row
            rows = list(self.rows.values())
        if self.on_task is not None:
            progress = Progress(
                done=len(rows),
                total=self.total,
                passed=sum(r.status == "passed" for r in rows),
                failed=sum(r.status == "failed" for r in rows),
                errors=sum(r.status == "error" for r in rows),
                cost_usd=round(self.budget.spent, 6),
            )
            try:
                self.on_task(row, progress)
            except Exception:  # a progress callback must not break the run
                log.exception("on_task callback failed")

    def worker(self, queue: list[tuple[Task, int]]) -> None:
        while not self.stop.is_set():
            with self.lock:
                if not queue:
                    return
                task, epoch = queue.pop(0)
            if self.budget.exhausted:
                self.record(self.budget_row(task, epoch), {"budget": f"spent {self.budget.spent:.6f} USD"})
                continue
            row, detail = self.run_item(task, epoch)
            if not self.stop.is_set():
                self.record(row, detail)


def run_benchmark(
    suite: str | Suite,
    model: str,
    *,
    agent: str = "builtin",
    sandbox: str = "local",
    parallel: int = 2,
    epochs: int = 1,
    run_id: str | None = None,
    budget_usd: float | None = None,
    gateway: Gateway | None = None,
    limits: AgentLimits | None = None,
    sandbox_limits: SandboxLimits | None = None,
    retry: RetryPolicy | None = None,
    task_ids: list[str] | None = None,
    on_task: OnTask | None = None,
    on_start: Callable[[RunSpec, int, int], None] | None = None,
    pool: SandboxPool | None = None,
    registry: Any = None,
) -> RunSummary:
    """Run (or resume, with the same `run_id`) a suite against a registry model.

    `on_task(row, progress)` is called after each task x epoch is journaled; `on_start(spec,
    pending, total)` once before work starts. Pass `gateway` to override `resolve_gateway(model)`,
    `pool` to reuse a sandbox pool across runs, `task_ids` to run a subset of the suite.
    """
    from goat_dagster.registry import load_registry

    if parallel < 1 or epochs < 1:
        raise RunError("--parallel and --epochs must be at least 1")
    if budget_usd is not None and budget_usd < 0:
        raise RunError("--budget-usd must not be negative")
    entry = (registry or load_registry()).get(model)
    the_suite = load_suite(suite) if isinstance(suite, str) else suite
    tasks = the_suite.tasks
    if task_ids is not None:
        tasks = [the_suite.task(t) for t in task_ids]
    the_agent = make_agent(agent)
    if run_id is not None and not _RUN_ID.match(run_id):
        raise RunError(f"run id {run_id!r} may hold only letters, digits, '.', '_', '-' (max 128)")
    spec = RunSpec(
        run_id=run_id or new_run_id(entry.key, the_suite.name),
        suite=the_suite.name,
        suite_version=the_suite.version,
        model=entry.key,
        agent=the_agent.name,
        sandbox=sandbox,
        epochs=epochs,
        task_ids=task_ids,
    )
    journal = RunJournal(spec)
    try:
        done = journal.done()
        items = [(t, e) for e in range(1, epochs + 1) for t in tasks]
        pending = [(t, e) for t, e in items if (t.id, e) not in done]
        if on_start is not None:
            on_start(journal.spec, len(pending), len(items))
        # everything this run has paid for so far, redone rows included
        budget = _Budget(budget_usd, spent=sum(e["row"].cost_usd for e in journal.entries()))
        isolation, warns = "", []
        run: _Run | None = None
        if pending:
            if the_agent.needs_gateway:
                gateway = gateway or resolve_gateway(entry.key, registry)
                if the_agent.needs_network and sandbox != "local" and gateway.on_loopback:
                    raise RunError(  # no use asking whether it answers: the sandbox could not reach it
                        f"a command: agent in a {sandbox} sandbox calls the gateway itself, but "
                        f"{gateway.base_url} is this machine's loopback, out of the sandbox's reach: set "
                        "GOAT_LITELLM_URL to a proxy it can reach (the proxy on Modal, README: Cloud set-up)"
                    )
                try:  # a gateway down from the start is a clear error, not a run of infra rows
                    check_reachable(gateway)
                except ConnectionError as exc:
                    raise GatewayDown(f"{exc} (start the proxy, or set GOAT_LLM_BASE_URL)") from None
            own_pool = pool is None
            if pool is None:
                reach = gateway if the_agent.needs_network else None  # the gateway the sandbox calls
                options = PoolOptions(
                    size=min(parallel, len(pending)),
                    limits=sandbox_limits or SandboxLimits(),
                    network=the_agent.needs_network,
                    gateway_host=urlsplit(reach.base_url).hostname if reach is not None else None,
                    ro_paths=tuple(the_agent.mounts()),
                )
                pool = make_pool(sandbox, options)
            isolation = pool.isolation
            run = _Run(
                journal.spec,
                the_suite,
                the_agent,
                journal,
                pool,
                gateway,
                limits or AgentLimits(),
                retry or RetryPolicy(),
                budget,
                on_task,
                len(items),
                done,
            )
            threads = [
                threading.Thread(target=run.worker, args=(pending,), name=f"goat-task-{i}", daemon=True)
                for i in range(min(parallel, len(pending)))
            ]
            lease = contextlib.ExitStack()
            if the_agent.needs_gateway:  # the managed proxy is not restarted under a running benchmark
                lease.enter_context(gateway_lease())
            try:
                for th in threads:
                    th.start()
                for th in threads:
                    while th.is_alive():
                        th.join(0.5)
            except BaseException:
                run.stop.set()
                raise
            finally:
                lease.close()
                for relay in run.relays.values():
                    relay.close()
                warns = list(pool.warnings)  # with what came up while tasks ran
                if own_pool:
                    pool.close()
        final = journal.rows()
        rows = [final[(t.id, e)] for t, e in items if (t.id, e) in final]
        path = write_results(journal.spec.run_id, rows)
        _ensure_views()
        return _summary(journal, the_suite, rows, budget, len(done), isolation, warns, path)
    finally:
        journal.close()


def _ensure_views() -> None:
    """The DuckDB views over the lake in $GOAT_HOME/warehouse.duckdb, for people who query it: made
    once (they read the lake's files by glob, so later runs show without a rewrite). A warehouse
    someone holds open is left as it is: the run's Parquet file is what counts."""
    import duckdb

    from goat_dagster.analysis.warehouse import ensure_warehouse

    try:
        status = ensure_warehouse(timeout_s=2.0)
    except duckdb.Error as exc:
        log.warning("warehouse views not updated: %s", exc)
        return
    if status.state == "busy":
        log.info("warehouse.duckdb is held open by another process; its views were left as they were")


def _summary(
    journal: RunJournal,
    suite: Suite,
    rows: list[ResultRow],
    budget: _Budget,
    reused: int,
    isolation: str,
    warns: list[str],
    path: Path,
) -> RunSummary:
    totals = summarize(rows)
    started = [r for r in rows if r.error_kind != "budget"]
    spec = journal.spec
    n_total = len(suite.tasks if spec.task_ids is None else spec.task_ids) * spec.epochs
    projected = (totals["cost_usd"] / len(started) * n_total) if started else None
    return RunSummary(
        run_id=spec.run_id,
        model=spec.model,
        suite=spec.suite,
        **{k: totals[k] for k in _TOTALS},
        suite_version=spec.suite_version,
        agent=spec.agent,
        sandbox=spec.sandbox,
        epochs=spec.epochs,
        projected_cost_usd=round(projected, 6) if projected is not None else None,
        budget_usd=budget.limit,
        resumed=journal.resumed,
        reused_rows=reused,
        isolation=isolation,
        warnings=warns,
        results_path=str(path),
        journal_dir=str(journal.dir),
    )


_TOTALS = (
    "n", "passed", "failed", "errors", "pass_rate", "wall_s", "cost_usd", "errors_by_kind",
    "prompt_tokens", "completion_tokens",
)  # fmt: skip


__all__ = ["Progress", "RetryPolicy", "RunError", "RunSummary", "new_run_id", "run_benchmark"]
