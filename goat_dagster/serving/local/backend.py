"""`LocalBackend`: models served by `goat serve` on this machine (provider `local`).

- weights: a GGUF from a Python package, a path, or the HF hub, located or fetched into
  `$GOAT_HOME/models` (`weights.py`), with bytes, sha256 and the GGUF header;
- endpoint: the control plane running (started detached if not), the model loaded, a real chat
  completion answered;
- probe: a chat completion against the recorded endpoint;
- teardown: the model's worker stopped (the control plane keeps running for the others);
- provenance: the weights as located here (package==version or repo@commit, sha256) and the engine
  the running control plane reports (`GET /engine`), or this interpreter's when none runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from goat_dagster.registry import ModelEntry
from goat_dagster.serving.backend import (
    Health,
    Log,
    Provenance,
    WeightsReport,
    chat_health,
    require_answering,
)
from goat_dagster.serving.endpoint import Endpoint, save_endpoint
from goat_dagster.serving.local.client import (
    ServeClientError,
    engine_of,
    ensure_control_plane,
    load_model,
    running_control_plane,
    unload_model,
)
from goat_dagster.serving.local.engine import engine_info
from goat_dagster.serving.local.settings import ServeSettings
from goat_dagster.serving.local.weights import (
    WeightsError,
    WeightsRecord,
    describe_weights,
    ensure_weights,
    locate_weights,
)
from goat_dagster.serving.probe import probe_chat


@dataclass(frozen=True)
class LocalBackend:
    settings: ServeSettings
    probe_timeout_s: float = 120.0

    kind: ClassVar[str] = "local"
    deploys: ClassVar[bool] = False
    # one goat serve worker answers one call at a time and its KV cache holds one conversation:
    # two tasks alternating evict each other's prompt (README: `--parallel` with a local model)
    default_parallel: ClassVar[int] = 1

    def weights(self, entry: ModelEntry, log: Log) -> WeightsReport:
        rec = ensure_weights(entry, log=log.info)
        report = weights_report(rec)
        log.info(f"{entry.key}: {report.summary}")
        return report

    def endpoint(self, entry: ModelEntry, log: Log) -> Endpoint:
        """Make `entry` answer on the local control plane; the saved record says how it went.

        Raises `ServeClientError` when the control plane cannot be started or the model not
        loaded, `EndpointDown` when it loads but does not answer the probe.
        """
        if entry.provider != "local":
            raise ValueError(f"model {entry.key!r} is provider {entry.provider!r}, not local")
        cp = ensure_control_plane(self.settings, log=log)
        t0 = time.monotonic()
        log.info(f"{entry.key}: loading {entry.served_model} on {cp.base_url}")
        inst = load_model(cp.root_url, entry.served_model)
        probe = probe_chat(cp.base_url, entry.served_model, timeout_s=self.probe_timeout_s)
        cold_start_s = time.monotonic() - t0
        if probe.ok:
            log.info(f"{entry.key}: answered in {probe.latency_s:.2f}s: {probe.reply!r}")
        else:
            log.warning(f"{entry.key}: loaded but the probe failed: {probe.error}")
        ep = Endpoint(
            model_key=entry.key,
            provider="local",
            engine=entry.engine,
            base_url=cp.base_url,
            served_name=entry.served_model,
            healthy=probe.ok,
            cold_start_s=round(cold_start_s, 3),
            load_s=inst.get("load_s"),
            detail={
                "control_plane_pid": cp.pid,
                "control_plane_started": cp.started,
                "control_plane_log": str(cp.log_path),
                "worker_pid": inst.get("pid"),
                "worker_log": inst.get("log"),
                "state": inst.get("state"),
                "n_ctx": inst.get("n_ctx"),
                "rss_mb": inst.get("rss_mb"),
                "estimated_mb": inst.get("estimated_mb"),
                "estimate": inst.get("estimate"),
                "probe": probe.as_metadata(),
            },
        )
        save_endpoint(ep)
        return require_answering(entry, ep)

    def probe(self, entry: ModelEntry, endpoint: Endpoint, *, timeout_s: float | None = None) -> Health:
        return chat_health(endpoint, api_key=None, timeout_s=timeout_s or self.probe_timeout_s)

    def teardown(self, entry: ModelEntry, log: Log) -> bool:
        cp = running_control_plane()
        if cp is None:
            log.info(f"{entry.key}: goat serve is not running; nothing to stop")
            return False
        state = unload_model(cp.root_url, entry.served_model)
        log.info(f"{entry.key}: worker stopped on {cp.base_url} ({state.get('state')})")
        return True

    def provenance(self, entry: ModelEntry) -> Provenance:
        notes = []
        cp = running_control_plane()
        try:
            engine = engine_of(cp.root_url) if cp is not None else engine_info()
        except ServeClientError as exc:  # a control plane of an older goat, without /engine
            engine = engine_info()
            notes.append(f"engine: this interpreter's ({exc})")
        build = {
            k: v for k, v in engine.items() if k not in ("engine", "package", "version") and v is not None
        }
        version = f"{engine['package']} {engine['version']}" if engine.get("version") else None
        try:
            rec = describe_weights(locate_weights(entry))
        except WeightsError as exc:
            notes.append(f"weights not found here: {exc}")
            return Provenance("llama.cpp", version, build, note="; ".join(notes))
        return Provenance("llama.cpp", version, build, rec.revision_label, rec.sha256, "; ".join(notes))


def weights_report(rec: WeightsRecord) -> WeightsReport:
    facts = {
        "source": rec.source,
        "fetched_from": rec.fetched_from,
        "n_files": len(rec.files),
        "total_mb": round(rec.total_bytes / 2**20, 1),
        "content_sha256": rec.data_version,
    }
    if rec.repo:
        facts.update(repo=rec.repo, revision=rec.revision, resolved_commit=rec.resolved_commit)
    if rec.package:
        facts.update(package=rec.package, package_version=rec.package_version)
    if rec.gguf:
        facts.update(
            {k: rec.gguf[k] for k in ("architecture", "parameter_count", "quantization", "context_length")}
        )
    return WeightsReport(
        data_version=rec.data_version,
        summary=f"{len(rec.files)} file(s), {rec.total_bytes / 2**20:.1f} MB "
        f"from {rec.fetched_from} at {rec.location}",
        facts=facts,
        files=[
            {"file": f.name, "MB": round(f.bytes / 2**20, 1), "sha256": f.sha256[:16] + "…"}
            for f in rec.files
        ],
        location=rec.location,
        gguf=rec.gguf,
    )
