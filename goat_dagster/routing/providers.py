"""`goat providers`: the health and latency of every deployment the LiteLLM proxy routes to (seed
004's provider status page: `{"runpod": {"status": "healthy", "latency_ms": 120}, ...}`).

With the proxy up it is asked, in its own terms: its model list (`GET /v1/model/info`) names each
deployment — the members of a `router.groups` name included, as `group/model` — and its health
check (`GET /health?model_id=ID`) makes one small completion through that deployment alone. The
latency shown is that check's round trip through the proxy. Checks run one after the other: a
local CPU server answering two at once would show neither's real latency.

Without a proxy (not started yet, or unreachable), each enabled model's recorded endpoint is probed
by its serving backend (`ServingBackend.probe`: a chat completion, `serving/probe.py`) and the rows
say `probe`; a model without an endpoint record is listed as not checked.

Errors are cut to their first line and masked (`tracing.masking`): a provider's error may echo a
key or a URL with one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from goat_dagster.registry import Registry
from goat_dagster.routing.proxy import ProxyError, ProxySettings, is_ready
from goat_dagster.serving.backends import Backends
from goat_dagster.serving.endpoint import load_endpoints
from goat_dagster.serving.probe import bearer
from goat_dagster.tracing.masking import mask_text


@dataclass
class DeploymentHealth:
    """One deployment: a model name clients ask for, and where the proxy sends it."""

    model_name: str
    deployment: str  # the proxy's model_info.id (a group member: `group/model`)
    provider: str
    target: str  # base URL, or the provider's model string for cloud APIs
    status: str  # healthy | unhealthy | not checked
    latency_ms: float | None = None
    error: str | None = None


@dataclass
class ProvidersReport:
    source: str  # proxy | probes
    proxy_url: str
    note: str = ""
    deployments: list[DeploymentHealth] = field(default_factory=list)

    @property
    def healthy(self) -> int:
        return sum(d.status == "healthy" for d in self.deployments)

    @property
    def unhealthy(self) -> int:
        return sum(d.status == "unhealthy" for d in self.deployments)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "proxy_url": self.proxy_url,
            "note": self.note,
            "healthy": self.healthy,
            "unhealthy": self.unhealthy,
            "deployments": [asdict(d) for d in self.deployments],
        }


def first_line(error: Any) -> str:
    text = str(error).strip().split("\nstack trace:")[0]
    return mask_text(text.splitlines()[0] if text else "")[:300]


# ---- through the proxy ---------------------------------------------------------------------------


def proxy_deployments(base_url: str, key: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The proxy's model list: one dict per deployment (model_name, litellm_params, model_info)."""
    r = httpx.get(f"{base_url}/v1/model/info", headers=bearer(key), timeout=timeout_s)
    if r.status_code != 200:
        raise ProxyError(f"{base_url}/v1/model/info answered HTTP {r.status_code}: {r.text[:200]}")
    return list(r.json().get("data") or [])


def check_deployment(
    base_url: str, key: str, deployment: dict[str, Any], timeout_s: float
) -> DeploymentHealth:
    """The proxy's own health check of one deployment, timed."""
    info = deployment.get("model_info") or {}
    params = deployment.get("litellm_params") or {}
    row = DeploymentHealth(
        model_name=str(deployment.get("model_name")),
        deployment=str(info.get("id")),
        provider=str(info.get("goat_provider") or params.get("custom_llm_provider") or ""),
        target=str(params.get("api_base") or params.get("model") or ""),
        status="unhealthy",
    )
    t0 = time.monotonic()
    try:
        r = httpx.get(
            f"{base_url}/health", params={"model_id": row.deployment}, headers=bearer(key), timeout=timeout_s
        )
        data = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        row.error = first_line(f"{type(exc).__name__}: {exc}")
        return row
    row.latency_ms = round((time.monotonic() - t0) * 1000, 1)
    if data.get("healthy_count"):
        row.status = "healthy"
    else:
        bad = data.get("unhealthy_endpoints") or [{}]
        row.error = first_line(bad[0].get("error") or data.get("error") or f"HTTP {r.status_code}")
    return row


def check_via_proxy(settings: ProxySettings, timeout_s: float) -> ProvidersReport:
    url, key = settings.base_url(), settings.admin_key()
    report = ProvidersReport("proxy", url, f"health checks by the proxy at {url} (/health?model_id=)")
    for dep in proxy_deployments(url, key):
        report.deployments.append(check_deployment(url, key, dep, timeout_s))
    return report


# ---- without a proxy ------------------------------------------------------------------------------


def check_via_probes(registry: Registry, backends: Backends, timeout_s: float, note: str) -> ProvidersReport:
    recorded = load_endpoints()
    report = ProvidersReport("probes", "", note)
    for entry in registry.enabled():
        ep = recorded.get(entry.key)
        row = DeploymentHealth(
            model_name=entry.gateway_name,
            deployment=entry.slug,
            provider=entry.provider,
            target=(ep.base_url if ep else None) or entry.litellm_model or "",
            status="not checked",
        )
        if ep is None:
            row.error = "no endpoint record (materialize serving_endpoint)"
        else:
            health = backends.for_entry(entry).probe(entry, ep, timeout_s=timeout_s)
            row.status = "healthy" if health.ok else ("unhealthy" if health.verified else "not checked")
            latency = health.detail.get("latency_s")
            row.latency_ms = round(latency * 1000, 1) if isinstance(latency, int | float) else None
            row.error = None if health.ok else first_line(health.description)
        report.deployments.append(row)
    return report


def providers_report(
    registry: Registry,
    backends: Backends,
    proxy: ProxySettings | None = None,
    *,
    timeout_s: float = 60.0,
) -> ProvidersReport:
    """Every deployment's health and latency: from the proxy when it answers, else by probes."""
    proxy = proxy or ProxySettings.from_settings()
    try:
        url = proxy.base_url()
    except ProxyError as exc:
        return check_via_probes(registry, backends, timeout_s, f"no proxy ({exc}); probed each endpoint")
    if not is_ready(url):
        note = f"no LiteLLM proxy answers at {url}; probed each enabled model's endpoint instead"
        return check_via_probes(registry, backends, timeout_s, note)
    return check_via_proxy(proxy, timeout_s)
