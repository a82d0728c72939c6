"""Weights and endpoints on Modal: what `ModalBackend` does.

- `ensure_modal_weights(entry, log, cloud)`: the weights of a `provider: modal` model in Volume
  `goat-model-cache` at the pinned revision (downloaded by the `goat-weights` function); returns and
  records what is there (commit, files, bytes, etags).
- `ensure_modal_endpoint(entry, log, cloud)`: the model's `goat-vllm-<key>` app deployed and current
  (found by name; redeployed when its spec changed), `/health` waited for, one request answered;
  URL and cold-start seconds recorded with `save_endpoint`.
- `stop_modal_endpoint(entry, log, cloud)`: stop (undeploy) the app; the next ensure redeploys.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from goat_dagster.registry import VLLM_KEY_ENV, HFWeights, ModelEntry
from goat_dagster.serving.backend import Log
from goat_dagster.serving.endpoint import Endpoint, load_endpoint, save_endpoint
from goat_dagster.serving.modal import gpt_oss_app, vllm_app
from goat_dagster.serving.modal.cloud import ModalCloud
from goat_dagster.serving.modal.health import probe_app, vllm_api_key
from goat_dagster.serving.modal.plan import (
    hf_cache_path,
    load_weights_record,
    save_weights_record,
    spec_for,
)
from goat_dagster.serving.modal.spec import SECRET_VLLM, VOLUME_MODELS, ServeSpec, fits_message


def ensure_modal_weights(entry: ModelEntry, log: Log, *, cloud: ModalCloud | None = None) -> dict[str, Any]:
    """Download (or find) the entry's weights in Volume `goat-model-cache` by revision; record them.

    Returns {model_key, repo, revision, commit, pinned, volume, path, files, n_files, bytes,
    extra (the gpt-oss speculator), environment, download_s, checked_at}; saved to
    $GOAT_HOME/models/modal/<slug>.json, where `ensure_modal_endpoint` reads the commit back.
    """
    w = entry.weights
    if entry.provider != "modal" or not isinstance(w, HFWeights):
        raise ValueError(f"{entry.key}: ensure_modal_weights is for provider: modal models with hf weights")
    cloud = cloud or ModalCloud()
    spec = spec_for(entry)
    log.info(
        f"{entry.key}: weights {w.repo}@{w.revision} -> Modal volume {VOLUME_MODELS} ({cloud.environment})"
    )
    t0 = time.monotonic()
    main = cloud.download_weights(w.repo, w.revision, list(w.files))
    if w.pinned and main["commit"] != w.revision:
        raise RuntimeError(f"{entry.key}: asked for {w.repo}@{w.revision}, the volume holds {main['commit']}")
    extra = []
    draft = (spec.engine_args.get("speculative-config") or {}).get("model")
    if draft:
        got = cloud.download_weights(draft, "main", None)
        extra.append({k: got[k] for k in ("repo", "commit", "n_files", "bytes")})
    record = {
        "model_key": entry.key,
        "repo": w.repo,
        "revision": w.revision,
        "commit": main["commit"],
        "pinned": w.pinned,
        "volume": VOLUME_MODELS,
        "path": hf_cache_path(w.repo, main["commit"]),
        "files": main["files"],
        "n_files": main["n_files"],
        "bytes": main["bytes"],
        "extra": extra,
        "environment": cloud.environment,
        "download_s": round(time.monotonic() - t0, 1),
        "checked_at": datetime.now(UTC).isoformat(),
    }
    if not w.pinned:
        log.warning(
            f"{entry.key}: revision {w.revision!r} resolved to {main['commit']}; serving that commit. "
            f"Pin it in models.yaml (weights.revision: {main['commit']}) to make runs reproducible."
        )
    problem = fits_message(spec, record["bytes"])
    if problem:
        log.warning(problem)
    save_weights_record(record)
    log.info(f"{entry.key}: {record['n_files']} files, {record['bytes'] / 1e9:.2f} GB at {record['path']}")
    return record


def ensure_modal_endpoint(
    entry: ModelEntry, log: Log, *, cloud: ModalCloud | None = None, redeploy: bool = False
) -> Endpoint:
    """Deploy (or find, if current) the model's app, wait for it to answer, record the endpoint.

    The app is current when its `goat-spec` tag equals the spec built from models.yaml (and the
    weights record), so a registry change redeploys and nothing else does. The returned endpoint
    (also saved with `save_endpoint`) has `healthy=False` and `detail["error"]` if the server never
    answered; `ModalUnavailable` is raised if Modal itself cannot be used; `ValueError` if the
    recorded weights cannot fit the GPUs (before any GPU is paid for).
    """
    if entry.provider != "modal":
        raise ValueError(f"{entry.key}: ensure_modal_endpoint is for provider: modal models")
    api_key = vllm_api_key()  # before anything is deployed: without it nothing could be asked
    cloud = cloud or ModalCloud()
    weights = load_weights_record(entry.key)
    spec = spec_for(entry, weights)
    if weights:
        problem = fits_message(spec, int(weights.get("bytes") or 0))
        if problem:
            raise ValueError(problem)
    tags = cloud.app_tags(spec.app_name)
    current = not redeploy and tags is not None and tags.get("goat-spec") == spec.digest
    url = cloud.web_url(spec.app_name) if current else None
    deploy_s = None
    if url is None:
        why = (
            "forced"
            if redeploy
            else "not deployed"
            if tags is None
            else "models.yaml changed"
            if tags.get("goat-spec") != spec.digest
            else "stopped"
        )
        log.info(f"{entry.key}: deploying {spec.app_name} to Modal environment {cloud.environment} ({why})")
        app, _ = build_app_for(spec)
        t0 = time.monotonic()
        cloud.deploy(app)
        deploy_s = round(time.monotonic() - t0, 1)
        url = cloud.web_url(spec.app_name)
        if url is None:
            raise RuntimeError(f"{spec.app_name} was deployed but Modal has no URL for its serve function")
    else:
        log.info(f"{entry.key}: {spec.app_name} is deployed and current (spec {spec.digest[:12]})")
    log.info(f"{entry.key}: {url} — waiting up to {spec.startup_timeout_s}s for /health (cold start)")
    probe = probe_app(url, spec.served_model, timeout_s=spec.startup_timeout_s + 60, api_key=api_key, log=log)
    detail = {
        "environment": cloud.environment,
        "url": url,
        "gpu": spec.gpu_request,
        "usd_per_hour": round(spec.n_gpu * entry.pricing.gpu_hour_usd, 2),
        "revision": spec.revision,
        "spec_digest": spec.digest,
        "deployed_now": deploy_s is not None,
        "deploy_s": deploy_s,
        "scaledown_window_s": spec.scaledown_window_s,
        "max_inputs": spec.max_inputs,
        "health_attempts": probe.attempts,
        # /health answered at the first try: the app was up already, so no cold start was measured
        "warm": probe.attempts == 1 and probe.healthy,
        "first_answer_s": probe.first_answer_s,
        "models": probe.models,
        "auth": f"bearer token from ${VLLM_KEY_ENV} (Modal secret {SECRET_VLLM}) on /v1; /health is open",
    }
    if probe.error:
        detail["error"] = probe.error
        log.error(f"{entry.key}: {probe.error}")
    ep = Endpoint(
        model_key=entry.key,
        provider="modal",
        engine=entry.engine,
        base_url=f"{url.rstrip('/')}/v1",
        served_name=spec.served_model,
        healthy=probe.healthy,
        cold_start_s=None if detail["warm"] else probe.first_answer_s,
        load_s=probe.health_s,
        app_name=spec.app_name,
        detail=detail,
    )
    save_endpoint(ep)
    if probe.healthy:
        log.info(f"{entry.key}: healthy after {probe.health_s}s, first answer after {probe.first_answer_s}s")
    return ep


def build_app_for(spec: ServeSpec) -> tuple[Any, Any]:
    """The Modal app of a spec, as its engine's module builds it (the container rebuilds the same)."""
    if spec.engine == gpt_oss_app.ENGINE:
        return gpt_oss_app.build_gpt_oss_app(spec)
    return vllm_app.build_vllm_app(spec)


def stop_modal_endpoint(entry: ModelEntry, log: Log, *, cloud: ModalCloud | None = None) -> bool:
    """Stop (undeploy) the model's app: containers end, the URL stops answering, GPU billing stops.
    The saved endpoint is marked unhealthy. Returns False if no such app was deployed."""
    cloud = cloud or ModalCloud()
    spec = spec_for(entry, load_weights_record(entry.key))
    stopped = cloud.stop(spec.app_name)
    log.info(
        f"{entry.key}: {spec.app_name} {'stopped' if stopped else 'was not deployed'} ({cloud.environment})"
    )
    ep = load_endpoint(entry.key)
    if ep is not None and ep.provider == "modal":
        ep.healthy = False
        ep.checked_at = datetime.now(UTC)
        ep.detail = {**ep.detail, "stopped_at": ep.checked_at.isoformat()}
        save_endpoint(ep)
    return stopped
