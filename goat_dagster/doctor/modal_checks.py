"""Phases 2 and 3 (`secrets`, `services`): Modal's environment, secrets, volumes and apps, and a
configured Langfuse's health; and whether Modal matters on this machine at all."""

from __future__ import annotations

from typing import Any

from goat_dagster import config
from goat_dagster.doctor.check import Check
from goat_dagster.registry import Registry
from goat_dagster.routing.modal_proxy import APP_NAME as SERVICES_APP
from goat_dagster.serving.modal.cloud import ModalUnavailable
from goat_dagster.serving.modal.langfuse_server import APP_NAME as LANGFUSE_APP
from goat_dagster.serving.modal.langfuse_server import SECRET_LANGFUSE_SERVER, VOLUME_LANGFUSE
from goat_dagster.serving.modal.spec import SECRETS, VOLUMES, app_name_for
from goat_dagster.tracing.langfuse_reader import langfuse_health

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
