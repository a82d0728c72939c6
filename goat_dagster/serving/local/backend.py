"""A live endpoint for a local model: `goat serve` running (started detached if needed), the model
loaded, a real chat completion answered. What `serving_endpoint` does for provider `local`."""

from __future__ import annotations

import time
from collections.abc import Callable

from goat_dagster.registry import ModelEntry
from goat_dagster.serving.endpoint import Endpoint
from goat_dagster.serving.local.client import ServeClientError, ensure_control_plane, load_model, probe_chat
from goat_dagster.serving.local.settings import ServeSettings

Log = Callable[[str], None]


def ensure_local_endpoint(
    entry: ModelEntry, settings: ServeSettings | None = None, log: Log | None = None
) -> Endpoint:
    """Make `entry` answer on the local control plane; the Endpoint says how it went.

    Raises `ServeClientError` when the control plane cannot be started or the model not loaded;
    a model that loads but fails the probe comes back with `healthy=False` and the error in `detail`.
    """
    if entry.provider != "local":
        raise ValueError(f"model {entry.key!r} is provider {entry.provider!r}, not local")
    say = log or (lambda _m: None)
    cp = ensure_control_plane(settings, log=say)
    t0 = time.monotonic()
    say(f"{entry.key}: loading {entry.served_model} on {cp.base_url}")
    inst = load_model(cp.root_url, entry.served_model)
    probe = probe_chat(cp.base_url, entry.served_model)
    cold_start_s = time.monotonic() - t0
    if probe.ok:
        say(f"{entry.key}: answered in {probe.latency_s:.2f}s: {probe.reply!r}")
    else:
        say(f"{entry.key}: loaded but the probe failed: {probe.error}")
    return Endpoint(
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


__all__ = ["ServeClientError", "ensure_local_endpoint"]
