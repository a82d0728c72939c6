"""`trace_export`: the LLM call traces of the latest benchmark run of a model (Langfuse if configured,
else the local trace sink; the sink too when Langfuse does not answer, with a warning in the log,
the metadata and the check) as Parquet in the lake, with a check that every call has a trace."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from goat_dagster.assets.common import OWNERS
from goat_dagster.partitions import models_partitions
from goat_dagster.registry import ModelEntry
from goat_dagster.resources.langfuse import LangfuseResource
from goat_dagster.resources.registry import RegistryResource
from goat_dagster.textfmt import markdown_table
from goat_dagster.tracing.export import ExportResult, VerifyResult, export_run, find_latest_run

BENCHMARK_RESULTS = AssetKey("benchmark_results")
CHECK_NAME = "every_call_has_trace"


def latest_benchmark_run(instance: DagsterInstance, entry: ModelEntry) -> str | None:
    """The run id of the latest `benchmark_results` materialization of this partition (its
    `run_id` metadata), else the newest run journal of that model under $GOAT_HOME/runs."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=BENCHMARK_RESULTS, asset_partitions=[entry.slug]), limit=1
    ).records
    if records:
        mat = records[0].asset_materialization
        value = mat.metadata.get("run_id") if mat else None
        if value is not None:
            return str(getattr(value, "value", value))
    return find_latest_run({entry.key, entry.slug, entry.gateway_name})


@asset(
    key="trace_export",
    partitions_def=models_partitions,
    group_name="traces",
    kinds={"parquet", "langfuse"},
    owners=OWNERS,
    code_version="1",
    deps=[BENCHMARK_RESULTS],
    check_specs=[
        AssetCheckSpec(
            CHECK_NAME,
            asset="trace_export",
            description="Every LLM call the harness made in the run has a trace (matched by call_id).",
        )
    ],
    description=(
        "LLM call traces of the latest benchmark run of this model, from Langfuse when LANGFUSE_* is "
        "set, else from the local trace sink (also when Langfuse does not answer: the metadata and "
        "the check then say so), in one schema (TraceRecord) as $GOAT_HOME/lake/traces/<run_id>.parquet."
    ),
)
def trace_export(
    context: AssetExecutionContext, langfuse: LangfuseResource, registry: RegistryResource
) -> MaterializeResult:
    partition = context.partition_key
    run_id = latest_benchmark_run(context.instance, registry.entry(partition))
    if run_id is None:
        raise Failure(f"no benchmark run found for model {partition!r}: materialize benchmark_results first")
    settings = langfuse.settings()
    # Langfuse configured but not answering: exported from the sink all the same, and said so
    result, verified = export_run(run_id, source="langfuse" if settings else "sink", langfuse=settings)
    context.log.info(f"run {run_id}: {result.rows} traces from {result.source} -> {result.path}")
    if result.note:
        context.log.warning(f"run {run_id}: {result.note}")
    missing = verified.missing if verified else []
    summary = result.summary()
    preview = [
        {
            k: getattr(r, k)
            for k in ("task_id", "epoch", "step", "status", "latency_s", "total_tokens", "cost_usd")
        }
        for r in result.records[:20]
    ]
    return MaterializeResult(
        metadata={
            "run_id": run_id,
            "source": result.source,
            **({"source_note": result.note} if result.note else {}),
            "path": MetadataValue.path(str(result.path)),
            "rows": result.rows,
            "errors": summary["errors"],
            "prompt_tokens": summary["prompt_tokens"],
            "completion_tokens": summary["completion_tokens"],
            "cost_usd": summary["cost_usd"],
            "calls_without_trace": len(missing),
            "preview": MetadataValue.md(markdown_table(preview)),
        },
        check_results=[_check(run_id, result, verified)],
    )


def _check(run_id: str, result: ExportResult, verified: VerifyResult | None) -> AssetCheckResult:
    """Every call of the run's journal has a trace; all traced, but read from the sink because
    Langfuse did not answer, is a warning that says why."""
    missing = verified.missing if verified else []
    complete = verified is not None and not missing
    where = "Langfuse" if result.source == "langfuse" else "the local trace sink"
    description = (
        f"every call has a trace in {where}"
        if complete
        else f"{len(missing)} call(s) without a trace in {where}"
    )
    return AssetCheckResult(
        check_name=CHECK_NAME,
        passed=complete and not result.note,
        severity=AssetCheckSeverity.WARN if complete else AssetCheckSeverity.ERROR,
        description=description + (f"; {result.note}" if result.note else ""),
        metadata={
            "run_id": run_id,
            "calls": verified.n_calls if verified else 0,
            "found": len(verified.found) if verified else 0,
            "missing": len(missing),
            "journal": "found" if verified else "missing ($GOAT_HOME/runs/<run_id>/calls.jsonl)",
            "source": result.source,
            **({"warning": result.note} if result.note else {}),
            "missing_calls": MetadataValue.md(
                markdown_table(missing[:50], ["call_id", "task_id", "epoch", "step", "ok", "error"])
            ),
        },
    )
