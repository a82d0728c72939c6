"""`model_weights`: a model's weights located or downloaded into the cache, with files, bytes,
sha256 and GGUF metadata. Local models into `$GOAT_HOME/models` (`serving/weights.py`); Modal models
into the Modal Volume (`ModalResource.ensure_weights`); cloud and OpenAI-compatible models have no
weights to manage and say so."""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import AssetExecutionContext, AssetKey, DataVersion, MaterializeResult, MetadataValue, asset

from goat_dagster.assets.common import OWNERS, markdown_table
from goat_dagster.partitions import models_partitions
from goat_dagster.pools import backend_slot, pool_for
from goat_dagster.registry import ModelEntry, load_registry
from goat_dagster.resources.modal import ModalResource
from goat_dagster.serving.local.weights import WeightsRecord, ensure_weights


@contextmanager
def serving_slot(context: AssetExecutionContext, entry: ModelEntry) -> Iterator[None]:
    """Hold a slot of the partition's serving-backend pool (`pools.pool_for`: serving-local has one,
    so one local CPU server is never asked to load two models at once; Modal and cloud have more)
    for this step. A static asset `pool=` cannot do this: the backend depends on the partition.
    An instance without concurrency storage (the in-memory one of `materialize()`) runs unbounded."""
    instance = context.instance
    if not instance.event_log_storage.supports_global_concurrency_limits:
        yield
        return
    step_key = context.get_step_execution_context().step.key
    with backend_slot(instance, pool_for(entry), context.run_id, step_key, log=context.log.info):
        yield


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


def modal_weights_version(record: dict[str, Any]) -> str:
    """Content identity of weights on the Modal Volume: repo, commit, and every file's etag/size."""
    h = hashlib.sha256(f"{record.get('repo')}@{record.get('commit')}\n".encode())
    for f in sorted(record.get("files") or [], key=lambda f: str(f.get("path"))):
        h.update(f"{f.get('path')}\0{f.get('sha256') or f.get('etag')}\0{f.get('bytes')}\n".encode())
    return h.hexdigest()


def modal_weights_metadata(record: dict[str, Any]) -> dict[str, Any]:
    files = [
        {
            "file": f.get("path"),
            "MB": round((f.get("bytes") or 0) / 2**20, 1),
            "sha256": (f.get("sha256") or f.get("etag") or "")[:16],
        }
        for f in record.get("files") or []
    ]
    return {
        "source": "hf (Modal Volume)",
        "repo": record.get("repo"),
        "revision": record.get("revision"),
        "resolved_commit": record.get("commit"),
        "volume": record.get("volume"),
        "location": record.get("path"),
        "environment": record.get("environment"),
        "n_files": record.get("n_files", len(files)),
        "total_mb": round((record.get("bytes") or 0) / 2**20, 1),
        "download_s": record.get("download_s"),
        "files": MetadataValue.md(markdown_table(files)),
    }


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
def model_weights(context: AssetExecutionContext, modal: ModalResource) -> MaterializeResult:
    entry = _entry(context.partition_key)
    with serving_slot(context, entry):
        return _materialize_weights(context, modal, entry)


def _materialize_weights(
    context: AssetExecutionContext, modal: ModalResource, entry: ModelEntry
) -> MaterializeResult:
    if entry.provider == "local":
        rec = ensure_weights(entry, log=context.log.info)
        context.log.info(
            f"{entry.key}: {len(rec.files)} file(s), {rec.total_bytes / 2**20:.1f} MB "
            f"from {rec.fetched_from} at {rec.location}"
        )
        return MaterializeResult(data_version=DataVersion(rec.data_version), metadata=weights_metadata(rec))
    if entry.provider == "modal":
        record = modal.ensure_weights(entry, context.log)
        return MaterializeResult(
            data_version=DataVersion(modal_weights_version(record)), metadata=modal_weights_metadata(record)
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
