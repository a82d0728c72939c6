"""`model_weights`: a model's weights located or downloaded where its backend serves them from, with
files, bytes, sha256 and GGUF metadata (`ServingBackend.weights`): local models into
`$GOAT_HOME/models`, Modal models into the Modal Volume; cloud and OpenAI-compatible models have no
weights to manage and say so."""

from typing import Any

from dagster import AssetExecutionContext, AssetKey, DataVersion, MaterializeResult, MetadataValue, asset

from goat_dagster.assets.common import OWNERS
from goat_dagster.partitions import models_partitions
from goat_dagster.resources.registry import RegistryResource
from goat_dagster.resources.serving import ServingResource
from goat_dagster.serving.backend import WeightsReport
from goat_dagster.textfmt import markdown_table


def weights_metadata(report: WeightsReport) -> dict[str, Any]:
    meta: dict[str, Any] = dict(report.facts)
    if report.location:
        meta["location"] = MetadataValue.path(report.location)
    if report.files:
        meta["files"] = MetadataValue.md(markdown_table(report.files))
    if report.gguf:
        meta["gguf"] = MetadataValue.md(
            markdown_table([{"field": k, "value": v} for k, v in report.gguf.items()])
        )
    return meta


@asset(
    key="model_weights",
    partitions_def=models_partitions,
    deps=[AssetKey("model_registry")],
    group_name="serving",
    kinds={"gguf", "huggingface"},
    owners=OWNERS,
    code_version="1",
    description="Weights of the model located or downloaded into $GOAT_HOME/models (or a Modal Volume): "
    "source, files, bytes, sha256, GGUF metadata. Cloud/OpenAI-compatible models have none to manage.",
)
def model_weights(
    context: AssetExecutionContext, serving: ServingResource, registry: RegistryResource
) -> MaterializeResult:
    entry = registry.entry(context.partition_key)
    report = serving.backend(entry).weights(entry, context.log)
    return MaterializeResult(data_version=DataVersion(report.data_version), metadata=weights_metadata(report))
