"""`serving_endpoint`: a live OpenAI-compatible endpoint per model (`ServingBackend.endpoint`: the
record is saved for routing and put in the asset metadata); the `serving_endpoint_answers` check
probes it again (`ServingBackend.probe`).

- local: `goat serve` running (started detached if not), model loaded, a real chat completion.
- modal: the model's `goat-vllm-<key>` app deployed and answering.
- cloud / openai_compatible: registered; probed when possible, otherwise the record says what was
  not checked (`healthy` is False, and the check only warns).
"""

import hashlib
import json
import warnings
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    PreviewWarning,
    asset,
    asset_check,
)

from goat_dagster.assets.common import OWNERS
from goat_dagster.assets.weights import model_weights
from goat_dagster.partitions import models_partitions
from goat_dagster.resources.registry import RegistryResource
from goat_dagster.resources.serving import ServingResource
from goat_dagster.serving.backend import EndpointDown
from goat_dagster.serving.endpoint import Endpoint, endpoint_path, load_endpoint
from goat_dagster.textfmt import markdown_table


def endpoint_metadata(ep: Endpoint) -> dict[str, Any]:
    detail_rows = [
        {"field": k, "value": v if not isinstance(v, dict | list) else str(v)} for k, v in ep.detail.items()
    ]
    meta: dict[str, Any] = {
        "provider": ep.provider,
        "engine": ep.engine,
        "served_name": ep.served_name,
        "healthy": ep.healthy,
        "checked_at": ep.checked_at.isoformat(timespec="seconds"),
        "record": MetadataValue.path(str(endpoint_path(ep.model_key))),
        "detail": MetadataValue.md(markdown_table(detail_rows)),
    }
    if ep.base_url:
        meta["base_url"] = MetadataValue.url(ep.base_url)
    if ep.load_s is not None:
        meta["load_s"] = ep.load_s
    if ep.cold_start_s is not None:
        meta["cold_start_s"] = ep.cold_start_s
    if ep.app_name:
        meta["app_name"] = ep.app_name
    return meta


def endpoint_version(ep: Endpoint) -> DataVersion:
    """What downstream assets depend on: where the model is and under which name — not its health
    or timings, so re-checking an unchanged endpoint keeps benchmarks fresh."""
    ident = {
        k: getattr(ep, k) for k in ("model_key", "provider", "engine", "base_url", "served_name", "app_name")
    }
    return DataVersion(hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16])


@asset(
    key="serving_endpoint",
    partitions_def=models_partitions,
    deps=[model_weights],
    group_name="serving",
    kinds={"llama.cpp", "openai"},
    owners=OWNERS,
    code_version="1",
    description="A live OpenAI-compatible endpoint for the model (local control plane, Modal vLLM app, or "
    "a registered external/cloud endpoint): base_url, served name, engine, health, load/cold-start seconds.",
)
def serving_endpoint(
    context: AssetExecutionContext, serving: ServingResource, registry: RegistryResource
) -> MaterializeResult:
    entry = registry.entry(context.partition_key)
    try:
        ep = serving.backend(entry).endpoint(entry, context.log)
    except EndpointDown as down:
        raise Failure(description=str(down), metadata=endpoint_metadata(down.endpoint)) from None
    context.log.info(f"{entry.key}: endpoint recorded in {endpoint_path(entry.key)} (healthy={ep.healthy})")
    return MaterializeResult(metadata=endpoint_metadata(ep), data_version=endpoint_version(ep))


def _endpoint_answers(
    context: AssetCheckExecutionContext, serving: ServingResource, registry: RegistryResource
) -> AssetCheckResult:
    entry = registry.entry(context.partition_key)
    ep = load_endpoint(entry.key)
    if ep is None:
        return AssetCheckResult(
            passed=False, description=f"no endpoint record for {entry.key} at {endpoint_path(entry.key)}"
        )
    health = serving.backend(entry).probe(entry, ep)
    metadata: dict[str, Any] = {"probe": MetadataValue.json(health.detail), "verified": health.verified}
    if ep.base_url:
        metadata["base_url"] = MetadataValue.url(ep.base_url)
    return AssetCheckResult(
        passed=health.ok,
        severity=AssetCheckSeverity.ERROR if health.verified else AssetCheckSeverity.WARN,
        description=health.description,
        metadata=metadata,
    )


with warnings.catch_warnings():  # partitioned asset checks are "preview" in Dagster 1.13; we need them
    warnings.simplefilter("ignore", PreviewWarning)
    serving_endpoint_answers = asset_check(
        asset=serving_endpoint,
        name="serving_endpoint_answers",
        partitions_def=models_partitions,
        description="The recorded endpoint still answers a real chat completion.",
    )(_endpoint_answers)
