"""`goat doctor`: phased checks of the whole path, each with a pass/fail and the fix to try.

The phases follow seed 000's `test_modal_infra.sh`:

1. config    models.yaml valid, weights pinned, .env present, Modal credentials present
   engine    the CPU features the installed llama.cpp engine was built with against /proc/cpuinfo,
             and one short real generation of the first enabled local model with its own
             n_threads (in a subprocess: an engine that traps says so instead of killing doctor)
2. secrets   Modal reachable; environment, the five secrets and the volumes exist
3. services  `goat-services` and the enabled Modal models' `goat-vllm-<key>` apps deployed
             (and `goat-langfuse` with GOAT_LANGFUSE_ON_MODAL); a configured Langfuse's health
4. endpoints every recorded endpoint of an enabled model answers its backend's probe
5. proxy     one chat call through the LiteLLM proxy (GOAT_LITELLM_URL, LITELLM_MASTER_KEY)
6. traces    that call's trace is in the local trace sink (matched by its `goat_call_id`)

Modal being unreachable (or not logged in) fails phases 2-3 with that reason instead of a
traceback; the local phases still run. Phases 5 and 6 are small functions (`check_proxy_call`,
`find_trace`) so tests can point them at a proxy and a sink of their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from goat_dagster import config
from goat_dagster.registry import VLLM_KEY_ENV, HFWeights, Registry, RegistryError, load_registry
from goat_dagster.routing.modal_proxy import APP_NAME as SERVICES_APP
from goat_dagster.routing.proxy import ProxyError, ProxySettings
from goat_dagster.serving.backends import Backends
from goat_dagster.serving.endpoint import load_endpoints
from goat_dagster.serving.local.engine_build import (
    REBUILD,
    EngineProbe,
    cpu_flags,
    describe_build,
    missing_features,
    probe_engine,
)
from goat_dagster.serving.modal.cloud import ModalCloud, ModalUnavailable
from goat_dagster.serving.modal.langfuse_server import APP_NAME as LANGFUSE_APP
from goat_dagster.serving.modal.langfuse_server import SECRET_LANGFUSE_SERVER, VOLUME_LANGFUSE
from goat_dagster.serving.modal.spec import SECRET_VLLM, SECRETS, VOLUMES, app_name_for
from goat_dagster.serving.probe import probe_chat
from goat_dagster.tracing.export import collect_traces, resolve_source
from goat_dagster.tracing.langfuse_reader import langfuse_health
from goat_dagster.tracing.schema import TraceRecord, call_metadata, new_id

PHASES = ("config", "engine", "secrets", "services", "endpoints", "proxy", "traces")


@dataclass
class Check:
    phase: str
    name: str
    status: str  # pass | fail | warn | skip
    detail: str
    fix: str = ""


def proxy_target() -> tuple[str, str]:
    """The proxy goat uses and its admin key, found the way every other part finds them
    (`ProxySettings.from_settings()`: the managed proxy under $GOAT_HOME, or GOAT_LITELLM_URL)."""
    settings = ProxySettings.from_settings()
    try:
        key = settings.admin_key()
    except ProxyError:
        key = ""
    return settings.base_url(), key


# ---- phase 1: config -----------------------------------------------------------------------------


def check_config(cloud: Any, env_file: Path) -> tuple[list[Check], Registry | None]:
    out: list[Check] = []
    registry = None
    try:
        registry = load_registry()
        out.append(
            Check(
                "config",
                "models.yaml",
                "pass",
                f"{len(registry.models)} models, {len(registry.enabled())} enabled ({registry.source})",
            )
        )
        loose = [
            m.key
            for m in registry.models.values()
            if m.provider == "modal" and isinstance(m.weights, HFWeights) and not m.weights.pinned
        ]
        on_modal = [m.key for m in registry.enabled() if m.provider == "modal"]
        if on_modal and not config.settings().vllm_api_key:
            out.append(
                Check(
                    "config",
                    VLLM_KEY_ENV,
                    "fail",
                    f"not set, and {', '.join(on_modal)} run on Modal: their /v1 answers only with it",
                    f"export the value of the {SECRET_VLLM} secret (from .env; `goat setup` stores it)",
                )
            )
        elif on_modal:
            out.append(Check("config", VLLM_KEY_ENV, "pass", "set (sent to the goat-vllm-* apps)"))
        if loose:
            out.append(
                Check(
                    "config",
                    "pinned weights",
                    "warn",
                    f"not pinned to a commit: {', '.join(loose)}",
                    "set weights.revision to the commit recorded by model_weights",
                )
            )
    except RegistryError as exc:
        out.append(
            Check(
                "config",
                "models.yaml",
                "fail",
                str(exc).replace("\n", " "),
                "fix the entry and field named above (file:line)",
            )
        )
    if env_file.is_file():
        out.append(Check("config", ".env", "pass", f"{env_file} present"))
    else:
        out.append(
            Check(
                "config", ".env", "warn", f"no {env_file}", "create it (see .env.example), then `goat setup`"
            )
        )
    if cloud.credentials_present():
        out.append(Check("config", "Modal credentials", "pass", "token configured"))
    else:
        out.append(
            Check(
                "config",
                "Modal credentials",
                "fail",
                "Modal not logged in (no token)",
                "run `modal setup`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET",
            )
        )
    return out, registry


# ---- phase 1b: the engine -------------------------------------------------------------------------


def check_engine(
    registry: Registry | None, probe: Callable[[str], EngineProbe] = probe_engine
) -> list[Check]:
    """What the installed engine was built for, and one short real generation by it."""
    local = [m for m in registry.enabled() if m.provider == "local"] if registry else []
    if not local:
        return [Check("engine", "llama.cpp", "skip", "no enabled local model")]
    key = local[0].key
    p = probe(key)
    out = []
    if p.features is not None:
        flags = cpu_flags()
        missing = missing_features(p.features, flags) if flags is not None else []
        detail = f"llama-cpp-python {p.version}, built with {describe_build(p.features)}"
        detail += f"; this CPU lacks {', '.join(missing)}" if missing else "; this CPU lists all of them"
        out.append(
            Check("engine", "build", "fail" if missing else "pass", detail, REBUILD if missing else "")
        )
    if p.ok:
        g = p.generation or {}
        rate = (g.get("completion_tokens") or 0) / max(g.get("generate_s") or 0.0, 1e-6)
        detail = (
            f"{g.get('prompt_tokens')} prompt + {g.get('completion_tokens')} generated tokens in "
            f"{g.get('generate_s')}s with n_threads {g.get('n_threads')} ({rate:.0f} tokens/s)"
        )
        out.append(Check("engine", key, "pass", detail))
    else:
        fix = REBUILD if p.cause else "materialize model_weights (or `goat demo`); check engine_args"
        out.append(Check("engine", key, "fail", p.cause or p.error or "no generation", fix))
    return out


# ---- phases 2 and 3: Modal ---------------------------------------------------------------------


def check_modal(cloud: Any, registry: Registry | None) -> list[Check]:
    try:
        cloud.check()
    except ModalUnavailable as exc:
        return [
            Check(phase, "Modal", "fail", f"Modal {exc.reason}: {exc.detail}", exc.fix)
            for phase in ("secrets", "services")
        ]
    out: list[Check] = []
    try:
        if cloud.environment not in cloud.environments():
            return [
                Check(
                    "secrets",
                    "environment",
                    "fail",
                    f"Modal environment {cloud.environment!r} does not exist",
                    "run `goat setup`",
                ),
                Check("services", "Modal", "skip", "no environment yet"),
            ]
        out.append(Check("secrets", "environment", "pass", cloud.environment))
        on = config.settings().langfuse_on_modal  # Langfuse on Modal: its secret and Volume too
        have = cloud.secrets()
        for name in SECRETS + ((SECRET_LANGFUSE_SERVER,) if on else ()):
            ok = name in have
            out.append(
                Check(
                    "secrets",
                    name,
                    "pass" if ok else "fail",
                    "exists" if ok else "Secret not found",
                    "" if ok else "run `goat setup`",
                )
            )
        vols = cloud.volumes()
        missing = [v for v in VOLUMES + ((VOLUME_LANGFUSE,) if on else ()) if v not in vols]
        out.append(
            Check(
                "secrets",
                "volumes",
                "warn" if missing else "pass",
                f"missing: {', '.join(missing)}" if missing else ", ".join(VOLUMES),
                "run `goat setup` (apps also create them on first deploy)" if missing else "",
            )
        )
        tags = cloud.app_tags(SERVICES_APP)
        out.append(
            Check(
                "services",
                SERVICES_APP,
                "pass" if tags is not None else "fail",
                "deployed" if tags is not None else "not deployed",
                ""
                if tags is not None
                else f"modal deploy -m goat_dagster.routing.modal_proxy --env {cloud.environment}",
            )
        )
        if on:
            deployed = cloud.app_tags(LANGFUSE_APP) is not None
            fix = "goat setup (with GOAT_LANGFUSE_ON_MODAL=1 it deploys Langfuse)"
            out.append(
                Check(
                    "services",
                    LANGFUSE_APP,
                    "pass" if deployed else "fail",
                    "deployed" if deployed else "not deployed",
                    "" if deployed else fix,
                )
            )
        for m in registry.enabled() if registry else []:
            if m.provider != "modal":
                continue
            name = app_name_for(m.key)
            deployed = cloud.app_tags(name) is not None
            module = "goat_dagster.serving." + (
                "modal_gpt_oss" if m.engine == "vllm-gpt-oss" else "modal_vllm"
            )
            out.append(
                Check(
                    "services",
                    name,
                    "pass" if deployed else "fail",
                    "deployed" if deployed else "not deployed",
                    ""
                    if deployed
                    else f"GOAT_MODEL={m.key} modal deploy -m {module} --env {cloud.environment}",
                )
            )
    except ModalUnavailable as exc:
        out.append(Check("services", "Modal", "fail", f"Modal {exc.reason}: {exc.detail}", exc.fix))
    return out


def check_langfuse(timeout_s: float = 10.0) -> list[Check]:
    """The Langfuse goat sends traces to (LANGFUSE_HOST: on Modal, Langfuse Cloud, your own), asked
    on its health endpoint; nothing when Langfuse is not in use."""
    s = config.settings()
    if not s.langfuse_host:
        if not s.langfuse_on_modal:
            return []
        fix = "`goat setup` writes LANGFUSE_HOST to .env; load it (set -a; . ./.env; set +a)"
        return [Check("services", "Langfuse", "fail", "on Modal, but LANGFUSE_HOST is unset", fix)]
    health = langfuse_health(s.langfuse_host, timeout_s)
    if not health.ok:
        fix = f"`modal app logs {LANGFUSE_APP}`" if s.langfuse_on_modal else "check LANGFUSE_HOST"
        return [Check("services", "Langfuse", "fail", health.detail, fix)]
    if not s.langfuse_configured:
        keys = "set LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY (goat setup wrote them to .env)"
        return [Check("services", "Langfuse", "warn", health.detail + "; no keys: no traces sent", keys)]
    return [Check("services", "Langfuse", "pass", health.detail)]


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


# ---- all phases --------------------------------------------------------------------------------


def modal_in_use(cloud: Any, registry: Registry | None) -> str | None:
    """Why Modal matters here (None when it does not): an enabled model on Modal, a proxy outside
    this machine, or Modal credentials someone configured."""
    if registry is not None and any(m.provider == "modal" for m in registry.enabled()):
        return "an enabled model runs on Modal"
    if config.settings().litellm_url:
        return "the LiteLLM proxy is external (GOAT_LITELLM_URL)"
    if cloud.credentials_present():
        return "Modal credentials are configured"
    return None


def run_doctor(
    cloud: Any = None,
    env_file: str | Path = ".env",
    trace_wait_s: float | None = None,
    check_cloud: bool | None = None,
) -> list[Check]:
    """All phases. Modal's (credentials, secrets, services) run when Modal is in use or
    `check_cloud` is True; a machine that only benchmarks local models skips them, saying why."""
    cloud = cloud or ModalCloud()
    checks, registry = check_config(cloud, Path(env_file))
    checks += check_engine(registry)
    reason = modal_in_use(cloud, registry)
    if check_cloud or (check_cloud is None and reason):
        checks += check_modal(cloud, registry)
    else:
        why = "no enabled model runs on Modal, no Modal credentials set (`goat doctor --cloud` checks anyway)"
        checks = [c for c in checks if c.name != "Modal credentials"]
        checks += [Check(phase, "Modal", "skip", why) for phase in ("secrets", "services")]
    checks += check_langfuse()
    checks += check_endpoints(registry, Backends.from_settings())
    model = pick_model(registry)
    if model is None:
        checks.append(Check("proxy", "model", "skip", "no enabled model in models.yaml", "enable one"))
        checks.append(Check("traces", "trace", "skip", "no call made"))
        return checks
    call_id, trace_id = new_id(), new_id()
    proxy = check_proxy_call(model, call_id, trace_id)
    checks.append(proxy)
    if proxy.status != "pass":
        checks.append(
            Check("traces", "trace", "skip", "no call went through the proxy", "fix the proxy phase first")
        )
    else:
        wait = trace_wait_s if trace_wait_s is not None else config.settings().doctor_trace_wait_s
        checks.append(check_trace(call_id, doctor_run_id(trace_id), wait))
    return checks


def render(checks: list[Check]) -> str:
    marks = {"pass": "ok  ", "fail": "FAIL", "warn": "warn", "skip": "skip"}
    lines = []
    for phase in PHASES:
        rows = [c for c in checks if c.phase == phase]
        if not rows:
            continue
        if any(c.status == "fail" for c in rows):
            head = "FAILED"
        elif all(c.status == "skip" for c in rows):
            head = "skipped"
        else:
            head = "ok"
        lines.append(f"[{phase}] {head}")
        for c in rows:
            lines.append(f"  {marks[c.status]}  {c.name}: {c.detail}")
            if c.fix and c.status in ("fail", "warn"):
                lines.append(f"        fix: {c.fix}")
    failed = sum(c.status == "fail" for c in checks)
    lines.append("")
    lines.append(f"{failed} check(s) failed" if failed else "all checks passed")
    return "\n".join(lines)


def to_json(checks: list[Check]) -> dict[str, Any]:
    return {"ok": not any(c.status == "fail" for c in checks), "checks": [asdict(c) for c in checks]}
