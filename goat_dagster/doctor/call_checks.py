"""Phases 4-6 (`endpoints`, `proxy`, `traces`): every recorded endpoint answers, one chat call
through the LiteLLM proxy, and that call's trace in the local trace sink."""

from __future__ import annotations

import time

from goat_dagster import config
from goat_dagster.doctor.check import Check
from goat_dagster.registry import Registry
from goat_dagster.routing.proxy import ProxyError, ProxySettings
from goat_dagster.serving.backends import Backends
from goat_dagster.serving.endpoint import load_endpoints
from goat_dagster.serving.probe import probe_chat
from goat_dagster.tracing.export import collect_traces, resolve_source
from goat_dagster.tracing.schema import TraceRecord, call_metadata


def proxy_target() -> tuple[str, str]:
    """The proxy goat uses and its admin key, found the way every other part finds them
    (`ProxySettings.from_settings()`: the managed proxy under $GOAT_HOME, or GOAT_LITELLM_URL)."""
    settings = ProxySettings.from_settings()
    try:
        key = settings.admin_key()
    except ProxyError:
        key = ""
    return settings.base_url(), key


# ---- phase 4: endpoints --------------------------------------------------------------------------


def check_endpoints(registry: Registry | None, backends: Backends, timeout_s: float = 10.0) -> list[Check]:
    """Each enabled model's recorded endpoint, probed by its backend (`ServingBackend.probe`)."""
    recorded = load_endpoints()
    entries = [m for m in registry.enabled() if m.key in recorded] if registry else []
    entries = [m for m in entries if recorded[m.key].base_url]  # cloud APIs: no URL of their own
    if not entries:
        return [
            Check(
                "endpoints",
                "records",
                "skip",
                "no endpoint recorded for an enabled model yet",
                "materialize serving_endpoint (or `goat demo`)",
            )
        ]
    out = []
    for entry in entries:
        ep = recorded[entry.key]
        health = backends.for_entry(entry).probe(entry, ep, timeout_s=timeout_s)
        status, detail = ("pass" if health.ok else "fail"), health.description
        if health.waking:
            status, detail = "warn", detail + " (scaled to zero? a cold start takes minutes)"
        fix = ""
        if status != "pass":
            fix = "materialize serving_endpoint for this model"
            if entry.provider == "modal":
                fix = "materialize serving_endpoint (redeploys and waits), or check "
                fix += f"`modal app logs {ep.app_name}`"
        out.append(Check("endpoints", entry.key, status, detail, fix))
    return out


# ---- phases 5 and 6: a call through the proxy, and its trace -----------------------------------------


def pick_model(registry: Registry | None) -> str | None:
    """The model doctor asks: the first enabled one, local before cloud before Modal GPUs."""
    if registry is None:
        return None
    order = {"local": 0, "openai_compatible": 1, "cloud": 2, "modal": 3}
    enabled = sorted(registry.enabled(), key=lambda m: order.get(m.provider, 9))
    return enabled[0].gateway_name if enabled else None


def check_proxy_call(model: str, call_id: str, trace_id: str, timeout_s: float = 120.0) -> Check:
    """One chat completion through the proxy carrying goat's call metadata."""
    url, key = proxy_target()
    meta = call_metadata(
        run_id=doctor_run_id(trace_id),
        suite="doctor",
        model=model,
        task_id="proxy-call",
        epoch=0,
        trace_id=trace_id,
        call_id=call_id,
        step=0,
    )
    probe = probe_chat(f"{url}/v1", model, api_key=key or None, timeout_s=timeout_s, metadata=meta)
    if probe.status is None:
        return Check(
            "proxy",
            model,
            "fail",
            f"no LiteLLM proxy at {url} ({(probe.error or '').split(':')[0]})",
            "start the proxy (goat demo / the litellm resource), or set GOAT_LITELLM_URL "
            "to the goat-services URL",
        )
    # without a database LiteLLM answers any key but the master key with 400 "No connected db."
    if probe.status in (401, 403) or "no_db_connection" in (probe.error or ""):
        return Check(
            "proxy",
            model,
            "fail",
            f"{url} refused the key (HTTP {probe.status})",
            "external proxy: set LITELLM_MASTER_KEY to its master key; managed: the key is in "
            "$GOAT_HOME/litellm/master_key (remove it and restart the proxy if it is stale)",
        )
    if not probe.ok:
        return Check(
            "proxy",
            model,
            "fail",
            str(probe.error)[:200],
            "check the model is in the proxy config (litellm_config) and its endpoint is healthy",
        )
    return Check("proxy", model, "pass", f"{url}: answered (call {call_id[:12]})")


def doctor_run_id(trace_id: str) -> str:
    return f"doctor-{trace_id[:8]}"


def find_trace(call_id: str, run_id: str, wait_s: float = 15.0, poll_s: float = 0.5) -> TraceRecord | None:
    """The trace of call `call_id` of run `run_id`, from wherever traces go (Langfuse when
    configured, else the local sink), polling up to wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        _, records = collect_traces(run_id)
        found = next((r for r in records if r.call_id == call_id), None)
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(poll_s)


def check_trace(call_id: str, run_id: str, wait_s: float) -> Check:
    source = resolve_source()
    where = "Langfuse" if source == "langfuse" else f"the trace sink ({config.paths().traces})"
    try:
        rec = find_trace(call_id, run_id, wait_s=wait_s)
    except Exception as exc:  # Langfuse unreachable, bad credentials: a finding, not a crash
        _, sink = collect_traces(run_id, source="sink")
        fallback = "; the trace is in the local sink, which exports fall back to"
        return Check(
            "traces",
            call_id[:12],
            "fail",
            f"cannot read traces from {where}: {exc}"
            + (fallback if any(r.call_id == call_id for r in sink) else ""),
            "check LANGFUSE_HOST / LANGFUSE_PUBLIC_KEY / LANGFUSE_SECRET_KEY",
        )
    if rec is None:
        return Check(
            "traces",
            call_id[:12],
            "fail",
            f"no trace of call {call_id} (run {run_id}) in {where} after {wait_s:.0f}s",
            "the proxy config must load the trace sink callback (litellm_config); "
            "check the proxy writes to this GOAT_HOME",
        )
    return Check("traces", call_id[:12], "pass", f"found in {where}")
