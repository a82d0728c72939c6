"""`serving_endpoint`: a live OpenAI-compatible endpoint per model, recorded with `save_endpoint`
and in the asset metadata; the `serving_endpoint_answers` check probes it again.

- local: `goat serve` running (started detached if not), model loaded, a real chat completion.
- modal: the model's `goat-vllm-<key>` app deployed and answering (`ModalResource.ensure_endpoint`).
- cloud / openai_compatible: registered; probed when possible, otherwise the record says what was
  not checked (and `healthy` is False).
"""

import hashlib
import json
import os
import warnings
from pathlib import Path
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

from goat_dagster.assets.common import OWNERS, markdown_table
from goat_dagster.assets.weights import model_weights, serving_slot
from goat_dagster.partitions import models_partitions
from goat_dagster.registry import load_registry, slugify
from goat_dagster.resources.modal import ModalResource
from goat_dagster.resources.serving import LocalServingResource
from goat_dagster.serving.endpoint import Endpoint, endpoints_dir, load_endpoint, save_endpoint
from goat_dagster.serving.external import register_external_endpoint
from goat_dagster.serving.local.client import probe_chat


def endpoint_metadata(ep: Endpoint, record: Path | None = None) -> dict[str, Any]:
    detail_rows = [
        {"field": k, "value": v if not isinstance(v, dict | list) else str(v)} for k, v in ep.detail.items()
    ]
    meta: dict[str, Any] = {
        "provider": ep.provider,
        "engine": ep.engine,
        "served_name": ep.served_name,
        "healthy": ep.healthy,
        "checked_at": ep.checked_at.isoformat(timespec="seconds"),
        "record": MetadataValue.path(str(record or endpoints_dir() / f"{slugify(ep.model_key)}.json")),
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
    context: AssetExecutionContext, local_serving: LocalServingResource, modal: ModalResource
) -> MaterializeResult:
    entry = load_registry().get(context.partition_key)
    say = context.log.info
    with serving_slot(context, entry):
        if entry.provider == "local":
            ep = local_serving.ensure_endpoint(entry, log=say)
        elif entry.provider == "modal":
            ep = modal.ensure_endpoint(entry, context.log)
        else:
            ep = register_external_endpoint(entry, log=say)
    path = save_endpoint(ep)
    meta = endpoint_metadata(ep, path)
    say(f"{entry.key}: endpoint recorded in {path} (healthy={ep.healthy})")
    if not ep.healthy and entry.self_hosted:
        why = ep.detail.get("error") or ep.detail.get("probe", {}).get("error") or "see the detail table"
        raise Failure(
            description=f"{entry.key}: the endpoint at {ep.base_url} did not answer a chat completion: {why}",
            metadata=meta,
        )
    return MaterializeResult(metadata=meta, data_version=endpoint_version(ep))


def endpoint_version(ep: Endpoint) -> DataVersion:
    """What downstream assets depend on: where the model is and under which name — not its health
    or timings, so re-checking an unchanged endpoint keeps benchmarks fresh."""
    ident = {
        k: getattr(ep, k) for k in ("model_key", "provider", "engine", "base_url", "served_name", "app_name")
    }
    return DataVersion(hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16])


def _endpoint_answers(context: AssetCheckExecutionContext) -> AssetCheckResult:
    entry = load_registry().get(context.partition_key)
    ep = load_endpoint(entry.key)
    if ep is None:
        return AssetCheckResult(
            passed=False, description=f"no endpoint record for {entry.key} in {endpoints_dir()}"
        )
    if entry.provider in ("cloud", "openai_compatible"):
        fresh = register_external_endpoint(entry, log=context.log.info)
        verified = bool(fresh.detail.get("verified"))
        return AssetCheckResult(
            passed=fresh.healthy,
            severity=AssetCheckSeverity.ERROR if verified else AssetCheckSeverity.WARN,
            description="answered a chat completion"
            if fresh.healthy
            else "; ".join(
                fresh.detail.get("checked", [])
                + [f"not checked: {n}" for n in fresh.detail.get("not_checked", [])]
            ),
            metadata={"probe": MetadataValue.json(fresh.detail.get("probe") or {}), "verified": verified},
        )
    if not ep.base_url:
        return AssetCheckResult(passed=False, description=f"the record of {entry.key} has no base_url")
    api_key = os.environ.get(entry.key_env) if entry.key_env else None
    probe = probe_chat(
        ep.base_url, ep.served_name, api_key=api_key, timeout_s=300 if entry.provider == "modal" else 120
    )
    return AssetCheckResult(
        passed=probe.ok,
        description=(
            f"{ep.base_url} answered in {probe.latency_s:.2f}s"
            if probe.ok
            else f"{ep.base_url} does not answer: {probe.error}"
        ),
        metadata={
            "base_url": MetadataValue.url(ep.base_url),
            "probe": MetadataValue.json(probe.as_metadata()),
        },
    )


with warnings.catch_warnings():  # partitioned asset checks are "preview" in Dagster 1.13; we need them
    warnings.simplefilter("ignore", PreviewWarning)
    serving_endpoint_answers = asset_check(
        asset=serving_endpoint,
        name="serving_endpoint_answers",
        partitions_def=models_partitions,
        description="The recorded endpoint still answers a real chat completion.",
    )(_endpoint_answers)
