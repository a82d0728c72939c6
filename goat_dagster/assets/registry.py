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

from goat_dagster import config
from goat_dagster.assets.common import OWNERS, markdown_table
from goat_dagster.registry import load_registry

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
def model_registry(context: AssetExecutionContext) -> MaterializeResult:
    path = config.models_file()
    registry = load_registry(path)
    rows = registry.table()
    context.log.info(f"{path}: {len(rows)} models, {len(registry.enabled())} enabled")
    return MaterializeResult(
        data_version=DataVersion(registry.content_hash),
        metadata={
            "path": MetadataValue.path(str(path)),
            "content_hash": registry.content_hash,
            "n_models": len(rows),
            "n_enabled": len(registry.enabled()),
            "routing_strategy": registry.router.routing_strategy,
            "models": MetadataValue.table(
                records=[TableRecord(r) for r in rows],
                schema=TableSchema(columns=[TableColumn(n, t) for n, t in _COLUMNS]),
            ),
            "preview": MetadataValue.md(
                markdown_table(rows, ["key", "provider", "engine", "gateway_name", "gpu", "enabled"])
            ),
        },
    )
