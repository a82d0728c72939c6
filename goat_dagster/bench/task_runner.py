"""The work of one benchmark run: its tasks x epochs, each tried in a fresh sandbox.

`TaskRunner.worker` is the body of each of a run's `parallel` threads: it takes the next
task x epoch, tries it (`run_item`: the attempt, retried when the infrastructure failed), and
journals the row before it takes another. An attempt (`attempt`) takes a sandbox from the pool,
writes the set-up files, lets the agent work, stops whatever the agent left running, uploads the
hidden tests and runs the check:

- `passed` / `failed`: the check's program ran to its end and exited 0 / anything else (grader.py:
  an early exit, a timeout, a shadowed module... each `failed` with a note saying which);
- `unscored`: a free-form prompt (a task with no check) that the agent finished: its answer and the
  files it left are journaled, nothing judges them;
- `error` with `error_kind`: `infra` (gateway or sandbox broke, after `retries` attempts with
  exponential backoff, each attempt with its own trace id), `timeout` (the agent ran past its
  time limit), `agent` (the agent itself broke), `budget` (not started: the budget was spent).

Each attempt has a transcript (transcript.py): recorded here are its start, the files the agent
left, the check and how the attempt ended; the agent, its LLM client and the relay add the rest.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, wait_exponential

from goat_dagster.bench.agent import Agent, AgentContext
from goat_dagster.bench.calls import CallContext, CallLog, CallMeter
from goat_dagster.bench.errors import AttemptError
from goat_dagster.bench.grader import grade
from goat_dagster.bench.journal import RunJournal
from goat_dagster.bench.lake import ResultRow, RunIdentity
from goat_dagster.bench.llm_client import LLMClient
from goat_dagster.bench.relay import GatewayRelay
from goat_dagster.bench.run_request import Progress, RunRequest
from goat_dagster.bench.sandbox import Sandbox, SandboxError, SandboxPool
from goat_dagster.bench.tasks import Suite, Task
from goat_dagster.bench.transcript import Transcript
from goat_dagster.bench.usage import Usage
from goat_dagster.routing.gateway import Gateway
from goat_dagster.tracing.masking import secret_values
from goat_dagster.tracing.schema import new_id

log = logging.getLogger(__name__)


@dataclass
class _Tried:
    """How one attempt ended: passed/failed, or an error of some kind (infra: maybe retryable)."""

    note: dict[str, Any]
    status: str = "error"
    kind: str | None = "infra"
    retryable: bool = True


@dataclass
class Budget:
    """What the run has spent (every call's cost, a resumed run's earlier rows included) against
    its limit (`--budget-usd`; None: no limit). Shared by the run's threads."""

    limit: float | None
    spent: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, usd: float) -> None:
        with self.lock:
            self.spent += usd

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.spent >= self.limit


ANSWER_FILES_MAX_BYTES = 256 * 1024  # of a prompt's work dir kept in the journal, in all


def workspace_files(sb: Sandbox, max_bytes: int = ANSWER_FILES_MAX_BYTES) -> dict[str, str]:
    """The text files an agent left in the work dir (what a free-form prompt produced), up to
    `max_bytes` in all; a binary or oversized file is named with its size instead of its content."""
    out: dict[str, str] = {}
    left = max_bytes
    for e in sb.walk(limit=500):
        if e.kind != "file":
            continue
        if e.size > left:
            out[e.path] = f"<{e.size} bytes, not kept>"
            continue
        data = sb.read_file(e.path, limit=left)
        try:
            out[e.path] = data.decode("utf-8")
        except UnicodeDecodeError:
            out[e.path] = f"<{e.size} bytes of binary data>"
            continue
        left -= len(data)
    return out


class TaskRunner:
    """The tasks x epochs of one run, worked off by `parallel` threads that share this state."""

    def __init__(
        self,
        request: RunRequest,
        journal: RunJournal,
        suite: Suite,
        agent: Agent,
        pool: SandboxPool,
        gateway: Gateway | None,
        budget: Budget,
        done_rows: dict[tuple[str, int], ResultRow],
        total: int,
    ):
        self.spec, self.journal, self.suite, self.agent, self.pool = journal.spec, journal, suite, agent, pool
        self.gateway, self.limits, self.retry = gateway, request.limits, request.retry
        self.budget, self.on_task, self.total = budget, request.on_task, total
        self.rows = dict(done_rows)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        # every LLM call of the run, the builtin agent's and those through a relay: priced, counted
        # against the budget and logged in the run's calls.jsonl
        self.meter = CallMeter(CallLog(self.spec.run_id), gateway, on_cost=budget.add) if gateway else None
        self.client = (
            LLMClient(gateway, self.meter, retries=self.retry.call_retries, backoff_s=self.retry.backoff_s)
            if agent.uses_client and gateway is not None and self.meter is not None
            else None
        )
        self.relays: dict[Path, GatewayRelay] = {}
        self.secrets = secret_values()  # masked out of every transcript

    def close_relays(self) -> None:
        for relay in self.relays.values():
            relay.close()

    # ---- one task x epoch ------------------------------------------------------------------

    def relay_for(self, sb: Sandbox) -> GatewayRelay | None:
        relay_dir = getattr(sb, "relay_dir", None)
        if not self.agent.needs_network or relay_dir is None or self.gateway is None or self.meter is None:
            return None
        with self.lock:
            if relay_dir not in self.relays:
                self.relays[relay_dir] = GatewayRelay(relay_dir / "gateway.sock", self.gateway, self.meter)
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
        """One attempt; returns passed/failed (unscored for a prompt) or raises AttemptError /
        SandboxError."""
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
            if not task.scored:  # a free-form prompt: what the agent said and made, unjudged
                detail["answer"] = usage.answer
                detail["files"] = workspace_files(sb)
                return "unscored"
            status, info, result = grade(task, sb)  # passed only when the tests ran to their end
            detail.update(info)
            note = info.get("check_note")
            transcript.check(task.check, result=result, passed=status == "passed", note=note)
            return status

    def run_item(self, task: Task, epoch: int) -> tuple[ResultRow, dict[str, Any]]:
        """A task x epoch: attempts until one is not an infrastructure failure (or the retries,
        the run or the budget are over), every attempt noted in the detail, their usage summed."""
        started = datetime.now(UTC)
        t0 = time.monotonic()
        total = Usage()
        detail: dict[str, Any] = {"attempts": []}
        retrying = Retrying(
            retry=retry_if_result(lambda tried: tried.kind == "infra" and tried.retryable),
            stop=stop_after_attempt(self.retry.retries + 1) | self._stopping | self._budget_spent,
            wait=wait_exponential(multiplier=self.retry.backoff_s),  # backoff_s, x2 each time
            retry_error_callback=lambda state: state.outcome.result(),  # the last attempt's outcome
        )
        tried: _Tried = retrying(self._try, task, epoch, total, detail)
        return self._row(
            task,
            epoch,
            status=tried.status,
            error_kind=tried.kind,
            started_at=started,
            finished_at=datetime.now(UTC),
            wall_s=round(time.monotonic() - t0, 4),
            steps=total.steps,
            tool_calls=total.tool_calls,
            prompt_tokens=total.prompt_tokens,
            completion_tokens=total.completion_tokens,
            cost_usd=round(total.cost_usd, 8),
            trace_id=tried.note["trace_id"],
        ), detail

    def _try(self, task: Task, epoch: int, total: Usage, detail: dict[str, Any]) -> _Tried:
        """One attempt, with its own trace id; how it ended goes into `detail`, its usage into `total`."""
        usage = Usage()
        trace_id = new_id()
        tried = _Tried(note={"trace_id": trace_id})
        transcript = Transcript.for_attempt(self.spec.run_id, task.id, epoch, trace_id, self.secrets)
        transcript.start(
            task=task,
            epoch=epoch,
            attempt=len(detail["attempts"]) + 1,
            trace_id=trace_id,
            agent=self.agent.name,
        )
        try:
            tried.status, tried.kind = (
                self.attempt(task, epoch, trace_id, usage, tried.note, transcript),
                None,
            )
        except AttemptError as exc:
            tried.kind = exc.kind
            tried.note["error"] = str(exc)
        except SandboxError as exc:
            tried.note["error"] = f"sandbox: {exc}"
            tried.retryable = exc.transient  # e.g. no Modal credentials: another attempt would not help
        except Exception as exc:  # a bug of ours is not the model's failure
            tried.note["error"] = f"{type(exc).__name__}: {exc}"
            tried.note["traceback"] = traceback.format_exc(limit=8)
            if not self.stop.is_set():  # a stopped run closes its sandboxes under it: no bug, no row
                log.exception("task %s epoch %s: unexpected error", task.id, epoch)
        for f in ("steps", "tool_calls", "prompt_tokens", "completion_tokens", "cost_usd"):
            setattr(total, f, getattr(total, f) + getattr(usage, f))
        tried.note.update(stop=usage.stop_reason, notes=usage.notes[-3:])
        detail["attempts"].append(tried.note)
        transcript.end(status=tried.status, error_kind=tried.kind, note=tried.note)
        return tried

    def _stopping(self, state: RetryCallState) -> bool:
        return self.stop.is_set()

    def _budget_spent(self, state: RetryCallState) -> bool:
        """A retry is new spending: once the budget is spent the row stays infra (redone on resume)."""
        if not self.budget.exhausted:
            return False
        state.outcome.result().note["retry"] = (
            f"not retried: the budget is spent ({self.budget.spent:.6f} USD)"
        )
        return True

    def budget_row(self, task: Task, epoch: int) -> ResultRow:
        """A task x epoch not started because the budget is spent."""
        now = datetime.now(UTC)
        return self._row(
            task, epoch, status="error", error_kind="budget", started_at=now, finished_at=now, wall_s=0.0
        )

    def _row(self, task: Task, epoch: int, **outcome: Any) -> ResultRow:
        identity = self.spec.model_dump(include=set(RunIdentity.model_fields))
        return ResultRow(**identity, task_id=task.id, epoch=epoch, **outcome)

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
                unscored=sum(r.status == "unscored" for r in rows),
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
