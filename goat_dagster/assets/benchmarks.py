"""`benchmark_suite` and `benchmark_results`: the suite as a table, and one benchmark run of it per
model partition through the model's endpoint and the LiteLLM proxy (goat_dagster.bench does the work).

Which suite, agent, prompt set and limits: run config (`BenchmarkConfig`; the suite defaults to
$GOAT_SUITE or `smoke`, the prompt set to $GOAT_PROMPTS or `builtin`), so a backfill launched from
the UI can pick e.g. `humaneval` for every partition.

What determines a result versions `benchmark_results`: its code version holds the harness and
grader versions and the defaults a run takes (agent, limits, sampling: `BENCHMARK_CODE_VERSION`),
its upstream `agent_prompts` the prompt set's hash, `litellm_config` the models' request defaults,
`benchmark_suite` the suite's. A change to any of them shows the partitions stale; each run's
manifest (what produced it, field by field) is in its metadata.
"""

from dataclasses import replace
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Config,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    RetryRequested,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)
from pydantic import Field

from goat_dagster import config
from goat_dagster.analysis.leaderboard import compute_leaderboard
from goat_dagster.analysis.runs import RunSummary, summarize_run
from goat_dagster.analysis.snapshot import open_files
from goat_dagster.analysis.warehouse import update_views
from goat_dagster.assets.common import OWNERS
from goat_dagster.assets.prompts import AGENT_PROMPTS, observed_prompts_version
from goat_dagster.bench.agents import make_agent
from goat_dagster.bench.journal import GatewayDown, RunError
from goat_dagster.bench.lake import ResultRow, read_rows
from goat_dagster.bench.manifest import RunManifest, benchmark_code_version
from goat_dagster.bench.prompts import PromptError, PromptSet, load_prompt_set
from goat_dagster.bench.run_request import Progress, RunOutcome, RunRequest
from goat_dagster.bench.runner import run_benchmark
from goat_dagster.bench.sandbox import SandboxError
from goat_dagster.bench.suite import SuiteError, load_suite
from goat_dagster.bench.tasks import Suite
from goat_dagster.bench.usage import AgentLimits
from goat_dagster.partitions import models_partitions
from goat_dagster.registry import ModelEntry
from goat_dagster.resources.litellm import LiteLLMProxyResource
from goat_dagster.resources.registry import RegistryResource
from goat_dagster.resources.sandbox import SandboxResource
from goat_dagster.textfmt import markdown_table
from goat_dagster.viewer import links

DEFAULT_SUITE = config.settings().suite
DEFAULT_PROMPTS = config.settings().prompts
EVERY_TASK = "every_task_has_a_row"
NO_INFRA = "no_infra_errors"


class SuiteConfig(Config):
    suite: str = Field(default=DEFAULT_SUITE, description="smoke, humaneval, or a path to a suite YAML")


class BenchmarkConfig(Config):
    suite: str = Field(default=DEFAULT_SUITE, description="smoke, humaneval, or a path to a suite YAML")
    agent: str = Field(default="builtin", description="builtin | oracle | command:<cmd>")
    prompts: str = Field(
        default=DEFAULT_PROMPTS,
        description="the builtin agent's prompt set: a name under prompts/ or a directory "
        "(system.md, task.md, tools.yaml)",
    )
    epochs: int = Field(default=1, ge=1)
    parallel: int | None = Field(
        default=None,
        ge=1,
        description="tasks at once; empty: what serves the model serves well (1 for a local model, "
        "whose goat serve worker answers one call at a time; 2 for Modal and cloud models)",
    )
    budget_usd: float | None = Field(default=None, description="stop starting tasks once this much is spent")
    max_steps: int = Field(default=30, ge=1, description="model calls per task attempt")
    max_output_tokens: int = Field(default=1024, ge=16, description="completion tokens per call")
    max_seconds: float = Field(
        default=900.0, gt=0, description="wall clock of one task attempt's agent phase"
    )
    tasks: list[str] | None = Field(default=None, description="only these task ids")
    mounts: list[str] = Field(
        default_factory=list,
        description="host paths a command: agent's local sandbox shows read-only (its package directory, "
        "data); the files its command names are shown anyway; /, homes, $GOAT_HOME are refused",
    )

    def limits(self) -> AgentLimits:
        return AgentLimits(
            max_steps=self.max_steps, max_output_tokens=self.max_output_tokens, max_seconds=self.max_seconds
        )


# what a run takes when its config says nothing, beside the harness and grader versions
BENCHMARK_CODE_VERSION = benchmark_code_version(
    {
        k: BenchmarkConfig.model_fields[k].default
        for k in ("agent", "epochs", "max_steps", "max_output_tokens", "max_seconds")
    }
)


def load_suite_or_fail(name: str) -> Suite:
    try:
        return load_suite(name)
    except SuiteError as exc:
        raise Failure(description=str(exc)) from None


def goat_run_id(context: AssetExecutionContext, entry: ModelEntry, suite: Suite) -> str:
    """The harness run id of this step. A step retry stays in the same Dagster run, and an automatic
    run retry (dagster.yaml `run_retries`, after a crashed worker) carries the root run's id: both
    resume the harness journal instead of starting over. Any other run, a re-execution launched
    from the UI included, is a new benchmark run."""
    run = context.run
    resumed = run.root_run_id if run.root_run_id and "dagster/retry_number" in run.tags else None
    return f"dg-{(resumed or run.run_id)[:8]}-{entry.slug}-{suite.name}"


@asset(
    key="benchmark_suite",
    group_name="benchmark",
    kinds={"yaml", "pydantic"},
    owners=OWNERS,
    code_version="1",
    description="The tasks of the configured suite as a table; data version = the suite's content hash.",
)
def benchmark_suite(context: AssetExecutionContext, config: SuiteConfig) -> MaterializeResult:
    suite = load_suite_or_fail(config.suite)
    rows = suite.table()
    context.log.info(
        f"suite {suite.name} ({suite.source or 'built in'}): {len(rows)} tasks, version {suite.version}"
    )
    columns = [
        ("suite", "string"), ("task_id", "string"), ("files", "int"), ("tests", "int"), ("check", "string"),
        ("timeout_s", "float"), ("has_reference", "bool"), ("instruction", "string"),
    ]  # fmt: skip
    return MaterializeResult(
        data_version=DataVersion(suite.version),
        metadata={
            "suite": suite.name,
            "suite_version": suite.version,
            "source": suite.source or "built in",
            "n_tasks": len(rows),
            "tasks": MetadataValue.table(
                records=[TableRecord(r) for r in rows],
                schema=TableSchema(columns=[TableColumn(n, t) for n, t in columns]),
            ),
            "preview": MetadataValue.md(
                markdown_table(rows[:50], ["task_id", "check", "timeout_s", "instruction"])
            ),
        },
    )


@asset(
    key="benchmark_results",
    partitions_def=models_partitions,
    # model_weights directly too: each materialization then points at the weights it measured
    # (dagster/input_event_pointer/model_weights: `goat models history`), and new weights make it stale
    deps=[
        AssetKey("model_weights"),
        AssetKey("serving_endpoint"),
        AssetKey("litellm_config"),
        AssetKey("benchmark_suite"),
        AGENT_PROMPTS,
    ],
    group_name="benchmark",
    kinds={"python", "parquet"},
    owners=OWNERS,
    code_version=BENCHMARK_CODE_VERSION,
    check_specs=[
        AssetCheckSpec(
            EVERY_TASK, asset="benchmark_results", description="one row per task x epoch, no duplicate"
        ),
        AssetCheckSpec(
            NO_INFRA,
            asset="benchmark_results",
            description="no row failed for infrastructure reasons (warning)",
        ),
    ],
    description=(
        "One benchmark run of the suite against the partition's model through the LiteLLM proxy: rows in "
        "$GOAT_HOME/lake/results/<run_id>.parquet (pass/fail per task x epoch, errors of the infrastructure "
        "kept apart), with pass rate and its 95% interval, tokens, cost and wall time, and the run's "
        "manifest: prompt set, harness, grader, weights, engine, LiteLLM, sampling, limits, sandbox."
    ),
)
def benchmark_results(
    context: AssetExecutionContext,
    config: BenchmarkConfig,
    litellm: LiteLLMProxyResource,
    sandbox: SandboxResource,
    registry: RegistryResource,
) -> MaterializeResult:
    models = registry.registry()
    entry = models.get(context.partition_key)
    suite = load_suite_or_fail(config.suite)
    prompts = _prompts_or_fail(config)
    run_id = goat_run_id(context, entry, suite)
    try:  # a request that cannot run as configured (say, a refused mount) fails before anything starts
        request = RunRequest(
            suite=suite,
            model=entry.key,
            agent=config.agent,
            prompts=prompts,
            sandbox=sandbox.backend,
            parallel=config.parallel,
            epochs=config.epochs,
            run_id=run_id,
            budget_usd=config.budget_usd,
            task_ids=config.tasks,
            mounts=tuple(config.mounts),
            limits=config.limits(),
            sandbox_limits=sandbox.limits(),
            registry=models,
            on_task=lambda row, progress: _log_task(context, row, progress),
        )
    except RunError as exc:
        raise Failure(description=f"run {run_id}: {exc}") from None
    if make_agent(config.agent).needs_gateway:
        request = replace(request, gateway=litellm.gateway(entry))
    context.log.info(
        f"run {run_id}: {suite.name} ({len(suite.tasks)} tasks) x {config.epochs} on {entry.key}"
        + (f", prompt set {prompts.name} ({prompts.sha256[:12]})" if prompts else "")
    )
    _check_suite_lineage(context, config, suite)
    _check_prompts_lineage(context, prompts)
    outcome = _run(context, request)
    summary = summarize_run(outcome)
    update_views()  # the DuckDB views people query themselves, over the lake this run is now in
    context.log.info(
        f"run {run_id}: {summary.passed}/{summary.passed + summary.failed} scored tasks passed, "
        f"{summary.errors} errors {summary.errors_by_kind or ''}"
    )
    rows = read_rows(run_id)
    return MaterializeResult(
        data_version=DataVersion(run_id),
        metadata={**_metadata(summary, suite, rows), **manifest_metadata(outcome.manifest)},
        check_results=_checks(summary, suite, config.tasks, rows),
    )


def _prompts_or_fail(config: BenchmarkConfig) -> PromptSet | None:
    """The builtin agent's prompt set; a broken file fails the step, naming it and the problem."""
    if not make_agent(config.agent).uses_prompts:
        return None
    try:
        return load_prompt_set(config.prompts)
    except PromptError as exc:
        raise Failure(description=f"prompt set {config.prompts!r}: {exc}") from None


def _log_task(context: AssetExecutionContext, row: ResultRow, progress: Progress) -> None:
    kind = f" ({row.error_kind})" if row.error_kind else ""
    context.log.info(
        f"[{progress.done}/{progress.total}] {row.task_id} epoch {row.epoch}: {row.status}{kind} "
        f"in {row.wall_s:.1f}s, {row.steps} steps, {row.prompt_tokens + row.completion_tokens} tokens"
    )


def _check_suite_lineage(context: AssetExecutionContext, config: BenchmarkConfig, suite: Suite) -> None:
    """Warn when `benchmark_suite` was last materialized for another suite version than this run's."""
    upstream = context.instance.get_latest_materialization_event(AssetKey("benchmark_suite"))
    upstream_version = upstream.asset_materialization.tags.get("dagster/data_version") if upstream else None
    if upstream_version != suite.version:
        context.log.warning(
            f"benchmark_suite was last materialized for another suite version ({upstream_version}); "
            f"this run benchmarks {suite.name} {suite.version}: materialize benchmark_suite with "
            f"suite={config.suite!r} so the lineage shows the suite these results come from"
        )


def _check_prompts_lineage(context: AssetExecutionContext, prompts: PromptSet | None) -> None:
    """Warn when this run's prompts are not those `agent_prompts` was last observed at (another
    prompt set in the config, or files edited since the sensor last looked)."""
    observed = observed_prompts_version(context.instance)
    if prompts is not None and observed != prompts.sha256:
        context.log.warning(
            f"this run uses prompt set {prompts.name} ({prompts.sha256[:12]}), agent_prompts was last "
            f"observed at {(observed or 'never')[:12]}: the lineage shows the observed one, the run's "
            "manifest the one it used (agent_prompts_sensor observes the files within a minute)"
        )


def manifest_metadata(manifest: RunManifest | None) -> dict[str, Any]:
    """The run's manifest as metadata: the fields a person compares runs by, and all of it as JSON."""
    if manifest is None:
        return {"manifest": "none (a run from before manifests)"}
    m = manifest.model_dump(mode="json")
    shown = (
        "prompt_set", "prompt_sha256", "harness_version", "grader_version", "weights_revision",
        "weights_sha256", "engine", "engine_version", "litellm_version", "sandbox_image", "goat_commit",
    )  # fmt: skip
    return {
        **{k: m[k] if m[k] is not None else "-" for k in shown},
        "sampling": MetadataValue.json(m["sampling"]),
        "limits": MetadataValue.json(m["limits"]),
        "engine_build": MetadataValue.json(m["engine_build"]),
        "manifest_fingerprint": m["fingerprint"],
        "manifest": MetadataValue.json(m),
    }


def _run(context: AssetExecutionContext, request: RunRequest) -> RunOutcome:
    """The run; an infrastructure failure (gateway down, sandbox unavailable) retries the step,
    which resumes the journal; a run that cannot start as configured fails it."""
    try:
        return run_benchmark(request)
    except (GatewayDown, SandboxError) as exc:
        if isinstance(exc, SandboxError) and not exc.transient:  # e.g. no bubblewrap: fix, then rerun
            raise Failure(description=f"run {request.run_id}: {exc}") from None
        context.log.error(f"run {request.run_id}: {exc}")
        raise RetryRequested(max_retries=2, seconds_to_wait=30) from exc
    except (RunError, PromptError) as exc:  # no retry will change that
        raise Failure(description=f"run {request.run_id}: {exc}") from None


def _metadata(summary: RunSummary, suite: Suite, rows: list[dict[str, Any]]) -> dict[str, Any]:
    # the run's own file, not the whole lake: a run's fixed cost does not grow with the lake
    with open_files([Path(summary.results_path)]) as snap:
        board = compute_leaderboard(snap, run_ids=[summary.run_id])
    stats = board.rows[0] if board.rows else {}
    ci = (
        f"{100 * stats['ci_low']:.1f}-{100 * stats['ci_high']:.1f}% ({stats.get('ci_method')})"
        if stats.get("ci_low") is not None
        else "n/a (nothing scored)"
    )
    floor = stats.get("strict_ci_low")
    table_rows = [
        {k: r.get(k) for k in ("task_id", "epoch", "status", "error_kind", "wall_s", "steps", "tool_calls")}
        | {
            "tokens": (r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0),
            "task_id": f"[{r['task_id']}]({links.task_url(summary.run_id, r['task_id'], r['epoch'])})",
        }
        for r in rows
    ]
    # pass_rate is a float whenever there is one (a metadata key keeps one type, so its plot over
    # time works); with no scored task it is left out and pass_rate_95ci says so
    scored = {"pass_rate": MetadataValue.float(summary.pass_rate)} if summary.pass_rate is not None else {}
    return {
        "run_id": summary.run_id,
        "model": summary.model,
        "suite": suite.name,
        "suite_version": suite.version,
        "agent": summary.agent,
        "sandbox": f"{summary.sandbox} ({summary.isolation})" if summary.isolation else summary.sandbox,
        "n": summary.n,
        "passed": summary.passed,
        "failed": summary.failed,
        "errors": summary.errors,
        "errors_by_kind": MetadataValue.json(summary.errors_by_kind),
        **scored,
        "pass_rate_95ci": ci,
        "scored_of_planned": f"{summary.passed + summary.failed}/{stats.get('planned') or summary.n}",
        "errors_as_failures_95ci_low": f"{100 * floor:.1f}%" if floor is not None else "n/a",
        "prompt_tokens": summary.prompt_tokens,
        "completion_tokens": summary.completion_tokens,
        "cost_usd": MetadataValue.float(summary.cost_usd),
        "wall_s": MetadataValue.float(summary.wall_s),
        "resumed_rows": summary.reused_rows,
        "results": MetadataValue.path(summary.results_path),
        "viewer": MetadataValue.url(links.run_url(summary.run_id)),
        "tasks": MetadataValue.md(markdown_table(table_rows)),
    }


def _checks(
    summary: RunSummary, suite: Suite, tasks: list[str] | None, rows: list[dict[str, Any]]
) -> list[AssetCheckResult]:
    """Every task x epoch has exactly one row; no row hit an infrastructure error (a warning)."""
    expected = {(t, e) for t in (tasks or [t.id for t in suite.tasks]) for e in range(1, summary.epochs + 1)}
    keys = [(r["task_id"], int(r["epoch"])) for r in rows]
    missing = sorted(expected - set(keys))
    duplicates = len(keys) - len(set(keys))
    infra = summary.errors_by_kind.get("infra", 0)
    return [
        AssetCheckResult(
            check_name=EVERY_TASK,
            passed=not missing and not duplicates,
            description=(
                f"{len(expected)} rows as expected"
                if not missing and not duplicates
                else f"missing {missing[:10]}{' ...' * (len(missing) > 10)}; {duplicates} duplicated"
            ),
            metadata={"expected": len(expected), "rows": len(rows), "duplicates": duplicates},
        ),
        AssetCheckResult(
            check_name=NO_INFRA,
            passed=infra == 0,
            severity=AssetCheckSeverity.WARN,
            description=f"{infra} rows hit infrastructure errors" if infra else "no infrastructure errors",
            metadata={"infra_errors": infra},
        ),
    ]
