"""`model_registry`: the validated models.yaml as a table; data version = content hash."""

from dagster import (
    AssetExecutionContext,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from goat_dagster.assets.common import OWNERS
from goat_dagster.resources.registry import RegistryResource
from goat_dagster.textfmt import markdown_table

_COLUMNS = [
    ("key", "string"),
    ("partition", "string"),
    ("provider", "string"),
    ("engine", "string"),
    ("gateway_name", "string"),
    ("weights", "string"),
    ("gpu", "string"),
    ("enabled", "bool"),
    ("input_per_mtok", "float"),
    ("output_per_mtok", "float"),
    ("gpu_hour_usd", "float"),
]


@asset(
    key="model_registry",
    group_name="registry",
    kinds={"yaml", "pydantic"},
    owners=OWNERS,
    code_version="1",
    description="models.yaml validated against the registry schema: one row per model.",
)
def model_registry(context: AssetExecutionContext, registry: RegistryResource) -> MaterializeResult:
    path = registry.file
    models = registry.registry()
    rows = models.table()
    context.log.info(f"{path}: {len(rows)} models, {len(models.enabled())} enabled")
    return MaterializeResult(
        data_version=DataVersion(models.content_hash),
        metadata={
            "path": MetadataValue.path(str(path)),
            "content_hash": models.content_hash,
            "n_models": len(rows),
            "n_enabled": len(models.enabled()),
            "routing_strategy": models.router.routing_strategy,
            "models": MetadataValue.table(
                records=[TableRecord(r) for r in rows],
                schema=TableSchema(columns=[TableColumn(n, t) for n, t in _COLUMNS]),
            ),
            "preview": MetadataValue.md(
                markdown_table(rows, ["key", "provider", "engine", "gateway_name", "gpu", "enabled"])
            ),
        },
    )
