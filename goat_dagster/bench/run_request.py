"""A benchmark run's API: what it is asked to do (`RunRequest`), what it reports while it works
(`Progress`), and what it hands back (`RunOutcome`).

`run_benchmark(RunRequest(suite="smoke", model="smollm2-135m", agent="oracle"))` runs a suite's
tasks x epochs against one registry model. The request says what to run and how hard to try; its
optional parts say where to reach things (a gateway, a sandbox pool, a registry already loaded) and
whom to tell about progress. The outcome says what the run did and where its rows are; the numbers
of a run (pass rate, errors by kind, cost, ...) are the warehouse's to compute
(`goat_dagster.analysis.runs.summarize_run`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from goat_dagster.bench.agents import make_agent
from goat_dagster.bench.journal import RunError, RunSpec
from goat_dagster.bench.lake import ResultRow
from goat_dagster.bench.manifest import RunManifest
from goat_dagster.bench.mounts import sandbox_mounts
from goat_dagster.bench.prompts import PromptSet
from goat_dagster.bench.sandbox import SandboxLimits, SandboxPool
from goat_dagster.bench.tasks import Suite
from goat_dagster.bench.usage import AgentLimits
from goat_dagster.registry import Registry
from goat_dagster.routing.gateway import Gateway

if TYPE_CHECKING:  # serving.backends imports modal (0.15 s of start-up a run without a model does not use)
    from goat_dagster.serving.backends import Backends

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Progress(BaseModel):
    """Where a run stands, handed to `on_task` after every row."""

    done: int
    total: int
    passed: int
    failed: int
    errors: int
    cost_usd: float
    unscored: int = 0  # answered free-form prompts (never scored)


OnTask = Callable[[ResultRow, Progress], None]
OnStart = Callable[[RunSpec, int, int], None]


@dataclass(frozen=True)
class RetryPolicy:
    """Transient failures: a task attempt ending in an infra error is tried again `retries` times;
    a single model call `call_retries` times; waits grow from `backoff_s` (x2 each time)."""

    retries: int = 2
    call_retries: int = 3
    backoff_s: float = 2.0


@dataclass(frozen=True)
class RunRequest:
    """One benchmark run (or the resumption of one, with the same `run_id`).

    - what: `suite` (a name, a path to a suite YAML, or a `Suite`), `model` (a registry key),
      `agent` (builtin | oracle | command:<cmd>), `prompts` (the builtin agent's prompt set: a
      name, a directory or a `PromptSet`; None: GOAT_PROMPTS), `sandbox` (local | modal),
      `epochs`, `task_ids` (a subset of the suite; None: every task), `mounts` (host paths a
      `command:` agent's local sandbox shows read-only besides the files its command names:
      bench/mounts.py);
    - how hard: `parallel` tasks at once (None: `runner.parallel_for` decides), `budget_usd` (no
      new task starts once it is spent), `limits` per attempt, `sandbox_limits` per command,
      `retry` for transient failures;
    - where (None: as `goat run` finds them): `gateway` (else routing's `resolve_gateway`), `pool`
      (a sandbox pool to reuse across runs; else one is made for the run and closed after it),
      `registry` (else models.yaml), `backends` (what the manifest asks what serves the model;
      else `Backends.from_settings()`);
    - progress: `on_start(spec, pending, total)` once before work starts, `on_task(row, progress)`
      after each task x epoch is journaled.

    A request that cannot be run as given raises `RunError` when it is made.
    """

    suite: str | Suite
    model: str
    agent: str = "builtin"
    prompts: str | PromptSet | None = None
    sandbox: str = "local"
    parallel: int | None = None
    epochs: int = 1
    run_id: str | None = None
    budget_usd: float | None = None
    task_ids: list[str] | None = None
    mounts: tuple[str, ...] = ()
    limits: AgentLimits = field(default_factory=AgentLimits)
    sandbox_limits: SandboxLimits = field(default_factory=SandboxLimits)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    gateway: Gateway | None = None
    pool: SandboxPool | None = None
    registry: Registry | None = None
    backends: Backends | None = None
    on_task: OnTask | None = None
    on_start: OnStart | None = None

    def __post_init__(self) -> None:
        if (self.parallel is not None and self.parallel < 1) or self.epochs < 1:
            raise RunError("--parallel and --epochs must be at least 1")
        if self.budget_usd is not None and self.budget_usd < 0:
            raise RunError("--budget-usd must not be negative")
        if self.run_id is not None and not RUN_ID.match(self.run_id):
            raise RunError(f"run id {self.run_id!r} may hold only letters, digits, '.', '_', '-' (max 128)")
        if self.mounts and self.sandbox != "local":
            raise RunError(
                f"--mount shows host paths to a local sandbox; a {self.sandbox} sandbox runs the task's "
                "image: put the agent in the image instead"
            )
        self.sandbox_mounts()  # a path refused is refused now, before anything is started

    def sandbox_mounts(self) -> tuple[str, ...]:
        """What the run's local sandboxes show of the host, read-only: the files the agent's command
        names and `mounts` (bench/mounts.py); `MountError` names a path refused and why."""
        if self.sandbox != "local":
            return ()
        return sandbox_mounts(make_agent(self.agent).mounts(), self.mounts)


@dataclass(frozen=True)
class RunOutcome:
    """What a finished (or resumed and finished) run did: its rows are in `results_path`."""

    spec: RunSpec
    planned: int  # task x epoch rows the run is made of (its tasks x its epochs)
    results_path: Path
    journal_dir: Path
    resumed: bool = False
    reused_rows: int = 0  # rows a resumed run kept from before
    budget_usd: float | None = None
    isolation: str = ""  # what protected the host (the sandbox pool's isolation)
    warnings: list[str] = field(default_factory=list)
    manifest: RunManifest | None = None  # what produced the rows (None: a run from before manifests)

    @property
    def run_id(self) -> str:
        return self.spec.run_id
