"""`ModalBackend`: models served by vLLM apps on Modal GPUs (provider `modal`).

- weights: the pinned HF revision downloaded into Volume `goat-model-cache` by the `goat-weights`
  function, recorded with commit, files, bytes and etags;
- endpoint: the model's `goat-vllm-<key>` app deployed (or found current), `/health` waited for,
  one chat completion answered (a cold start measured);
- probe: a chat completion with the apps' bearer token (it wakes a scaled-to-zero app);
- teardown: the app stopped (undeployed): containers end, GPU billing stops;
- provenance: the weights record of the last `model_weights` (repo@commit, the files' sha256/etags)
  and the app spec from models.yaml (vLLM version, image, GPUs, engine args, the spec's digest).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

from goat_dagster.registry import ModelEntry
from goat_dagster.serving.backend import (
    Health,
    Log,
    Provenance,
    WeightsReport,
    chat_health,
    endpoint_key,
    require_answering,
)
from goat_dagster.serving.endpoint import Endpoint
from goat_dagster.serving.modal import gpt_oss_app, vllm_app
from goat_dagster.serving.modal.cloud import ModalCloud
from goat_dagster.serving.modal.deploy import ensure_modal_endpoint, ensure_modal_weights, stop_modal_endpoint
from goat_dagster.serving.modal.plan import load_weights_record, spec_for
from goat_dagster.serving.modal.spec import ENGINE_GPT_OSS, VLLM_VERSION


@dataclass(frozen=True)
class ModalBackend:
    cloud: ModalCloud
    probe_timeout_s: float = 300.0  # a probe may wake a scaled-to-zero app

    kind: ClassVar[str] = "modal"
    deploys: ClassVar[bool] = True
    # vLLM batches concurrent requests; the tasks' sandboxes share this machine's cores
    default_parallel: ClassVar[int] = 2

    def weights(self, entry: ModelEntry, log: Log) -> WeightsReport:
        return weights_report(ensure_modal_weights(entry, log, cloud=self.cloud))

    def endpoint(self, entry: ModelEntry, log: Log) -> Endpoint:
        return require_answering(entry, ensure_modal_endpoint(entry, log, cloud=self.cloud))

    def probe(self, entry: ModelEntry, endpoint: Endpoint, *, timeout_s: float | None = None) -> Health:
        return chat_health(endpoint, api_key=endpoint_key(entry), timeout_s=timeout_s or self.probe_timeout_s)

    def teardown(self, entry: ModelEntry, log: Log) -> bool:
        return stop_modal_endpoint(entry, log, cloud=self.cloud)

    def provenance(self, entry: ModelEntry) -> Provenance:
        record = load_weights_record(entry.key)
        spec = spec_for(entry, record)
        app = gpt_oss_app if spec.engine == ENGINE_GPT_OSS else vllm_app
        base = getattr(app, "CUDA_BASE", "debian_slim")
        build = {
            "image": f"{base} (Python {app.PYTHON_VERSION}) + {', '.join(app.IMAGE_PACKAGES)}",
            "app": spec.app_name,
            "spec_digest": spec.digest,
            "gpu": spec.gpu_request,
            "engine_args": spec.engine_args,
        }
        if record is None:
            note = "no weights record yet (materialize model_weights): the revision is models.yaml's"
            return Provenance(
                spec.engine, f"vllm {VLLM_VERSION}", build, f"{spec.repo}@{spec.revision}", None, note
            )
        sha = weights_report(record).data_version
        return Provenance(
            spec.engine, f"vllm {VLLM_VERSION}", build, f"{record['repo']}@{record['commit']}", sha
        )


def weights_report(record: dict[str, Any]) -> WeightsReport:
    """The record of weights on the Modal Volume; its version is repo, commit, and every file's
    etag/sha256 and size (what the Volume holds, not when it was looked at)."""
    h = hashlib.sha256(f"{record.get('repo')}@{record.get('commit')}\n".encode())
    for f in sorted(record.get("files") or [], key=lambda f: str(f.get("path"))):
        h.update(f"{f.get('path')}\0{f.get('sha256') or f.get('etag')}\0{f.get('bytes')}\n".encode())
    files = [
        {
            "file": f.get("path"),
            "MB": round((f.get("bytes") or 0) / 2**20, 1),
            "sha256": (f.get("sha256") or f.get("etag") or "")[:16],
        }
        for f in record.get("files") or []
    ]
    return WeightsReport(
        data_version=h.hexdigest(),
        summary=f"{record.get('repo')}@{record.get('commit')} on Volume {record.get('volume')}",
        facts={
            "source": "hf (Modal Volume)",
            "repo": record.get("repo"),
            "revision": record.get("revision"),
            "resolved_commit": record.get("commit"),
            "volume": record.get("volume"),
            "environment": record.get("environment"),
            "n_files": record.get("n_files", len(files)),
            "total_mb": round((record.get("bytes") or 0) / 2**20, 1),
            "download_s": record.get("download_s"),
        },
        files=files,
        location=record.get("path"),
    )
