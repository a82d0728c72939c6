"""Regression gate: a partitioned asset check on `benchmark_results`, one result per model.

`no_significant_regression` compares the partition's newest benchmark run (the `run_id` of its
latest materialization) with the model's previous run of the same suite version and agent, paired
on the tasks both scored (analysis.compare.regression). It fails when the pass rate dropped
significantly — severity WARN by default, ERROR with run config
`{ops: {benchmark_results_no_significant_regression: {config: {severity: ERROR}}}}` — and runs with
every materialization of the partition (and from the asset's Checks tab, per partition).
"""

import warnings
from typing import Literal

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    Config,
    MetadataValue,
    PreviewWarning,
    asset_check,
)
from pydantic import Field

from goat_dagster.analysis.compare import ALPHA, UnknownRunError, regression
from goat_dagster.partitions import models_partitions
from goat_dagster.resources.registry import RegistryResource

BENCHMARK_RESULTS = AssetKey("benchmark_results")
REGRESSION_CHECK = "no_significant_regression"


class RegressionCheckConfig(Config):
    severity: Literal["WARN", "ERROR"] = Field(
        default="WARN", description="severity of a significant drop (ERROR blocks downstream assets)"
    )
    alpha: float = Field(default=ALPHA, gt=0, lt=1, description="significance level of the paired test")


def materialized_run_id(context: AssetCheckExecutionContext, partition: str) -> str | None:
    """The benchmark run id recorded by the partition's latest materialization, if any."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=BENCHMARK_RESULTS, asset_partitions=[partition]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get("run_id")
    return str(value.value) if value is not None else None


def _no_significant_regression(
    context: AssetCheckExecutionContext, config: RegressionCheckConfig, registry: RegistryResource
) -> AssetCheckResult:
    partition = context.partition_key
    model = registry.entry(partition).key
    severity = AssetCheckSeverity.ERROR if config.severity == "ERROR" else AssetCheckSeverity.WARN
    run_id = materialized_run_id(context, partition)
    try:
        r = regression(model, run_id, alpha=config.alpha)
    except UnknownRunError:
        return AssetCheckResult(
            passed=False,
            severity=severity,
            description=f"{run_id}, the run this materialization recorded, is not in the results lake",
            metadata={"run_id": run_id or ""},
        )
    context.log.info(r.description)
    c = r.comparison
    metadata: dict[str, object] = {"run_id": r.run_id or "", "previous_run_id": r.previous_run_id or ""}
    if c is not None:
        metadata.update(
            {
                "difference": MetadataValue.float(c.difference if c.difference is not None else float("nan")),
                "ci_95": f"{c.ci_low:+.3f} to {c.ci_high:+.3f}" if c.ci_low is not None else "n/a",
                "mcnemar_p": MetadataValue.float(c.mcnemar_p),
                "test": c.test,
                "shared_tasks": c.shared_tasks,
                "pass_to_fail": MetadataValue.json(c.pass_to_fail),
                "fail_to_pass": MetadataValue.json(c.fail_to_pass),
            }
        )
    return AssetCheckResult(
        passed=not r.dropped,
        severity=severity,
        description=r.description,
        metadata=metadata,
    )


# Partitioned asset checks are a preview feature of Dagster 1.13 (it says so at every import)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", PreviewWarning)
    no_significant_regression = asset_check(
        asset=BENCHMARK_RESULTS,
        name=REGRESSION_CHECK,
        partitions_def=models_partitions,
        description=(
            "The model's newest run did not drop significantly against its previous run of the same "
            "suite version and agent (paired on shared tasks: exact McNemar with one epoch, the paired "
            "95% interval with several). WARN by default; config severity: ERROR."
        ),
    )(_no_significant_regression)
