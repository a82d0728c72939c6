"""`model_weights`: a model's weights located or downloaded into the cache, with files, bytes,
sha256 and GGUF metadata. Local models here; Modal models through `serving/modal_deploy.py`
(issue #7); cloud and OpenAI-compatible models have no weights to manage and say so."""

import hashlib
import importlib
import json
from collections.abc import Callable
from typing import Any

from dagster import AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue, asset

from goat_dagster.assets.common import OWNERS, markdown_table
from goat_dagster.partitions import models_partitions
from goat_dagster.registry import ModelEntry, load_registry
from goat_dagster.serving.weights import WeightsRecord, ensure_weights

SERVING_LOCAL_POOL = "serving-local"


def modal_deploy_function(name: str) -> Callable[..., Any]:
    """`ensure_modal_weights` / `ensure_modal_endpoint` from serving/modal_deploy.py, which lands
    with issue #7 (the Modal path); a clear error until then."""
    try:
        modal_deploy = importlib.import_module("goat_dagster.serving.modal_deploy")
    except ModuleNotFoundError as exc:
        if exc.name != "goat_dagster.serving.modal_deploy":
            raise
        raise RuntimeError(
            "the Modal serving path (goat_dagster/serving/modal_deploy.py) is not available yet: it lands "
            "with issue #7. Disable the modal models in models.yaml or materialize local ones."
        ) from None
    return getattr(modal_deploy, name)


def _entry(partition_key: str) -> ModelEntry:
    return load_registry().get(partition_key)


def weights_metadata(rec: WeightsRecord) -> dict[str, Any]:
    files = [
        {"file": f.name, "MB": round(f.bytes / 2**20, 1), "sha256": f.sha256[:16] + "…"} for f in rec.files
    ]
    meta: dict[str, Any] = {
        "source": rec.source,
        "location": MetadataValue.path(rec.location),
        "fetched_from": rec.fetched_from,
        "n_files": len(rec.files),
        "total_mb": round(rec.total_bytes / 2**20, 1),
        "content_sha256": rec.data_version,
        "files": MetadataValue.md(markdown_table(files)),
    }
    if rec.repo:
        meta.update(repo=rec.repo, revision=rec.revision, resolved_commit=rec.resolved_commit)
    if rec.package:
        meta.update(package=rec.package, package_version=rec.package_version)
    g = rec.gguf
    if g:
        meta.update(
            architecture=g["architecture"],
            parameter_count=g["parameter_count"],
            quantization=g["quantization"],
            context_length=g["context_length"],
            gguf=MetadataValue.md(markdown_table([{"field": k, "value": v} for k, v in g.items()])),
        )
    return meta


@asset(
    key="model_weights",
    partitions_def=models_partitions,
    group_name="serving",
    kinds={"gguf", "huggingface"},
    owners=OWNERS,
    code_version="1",
    pool=SERVING_LOCAL_POOL,
    description="Weights of the model located or downloaded into $GOAT_HOME/models (or a Modal Volume): "
    "source, files, bytes, sha256, GGUF metadata. Cloud/OpenAI-compatible models have none to manage.",
)
def model_weights(context: AssetExecutionContext) -> MaterializeResult:
    entry = _entry(context.partition_key)
    if entry.provider == "local":
        rec = ensure_weights(entry, log=context.log.info)
        context.log.info(
            f"{entry.key}: {len(rec.files)} file(s), {rec.total_bytes / 2**20:.1f} MB "
            f"from {rec.fetched_from} at {rec.location}"
        )
        return MaterializeResult(data_version=DataVersion(rec.data_version), metadata=weights_metadata(rec))
    if entry.provider == "modal":
        result = modal_deploy_function("ensure_modal_weights")(entry, context.log.info)
        digest = hashlib.sha256(json.dumps(result, sort_keys=True, default=str).encode()).hexdigest()
        return MaterializeResult(
            data_version=DataVersion(str(result.get("data_version") or digest)),
            metadata={k: v for k, v in result.items() if k != "data_version"},
        )
    what = entry.litellm_model or entry.served_model
    context.log.info(
        f"{entry.key}: provider {entry.provider} serves its own weights ({what}); nothing to fetch"
    )
    return MaterializeResult(
        data_version=DataVersion(f"provider-managed:{entry.provider}:{what}"),
        metadata={
            "source": "provider-managed",
            "weights": f"none to manage: provider {entry.provider!r} ({entry.engine}) serves its own weights",
            "model": what,
            "n_files": 0,
        },
    )
