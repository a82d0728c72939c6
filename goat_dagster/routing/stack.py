"""What `goat run` brings up for a model outside Dagster: the steps of `serving_endpoint` and
`litellm_config`, through the same calls (`Backends`, `build_config`, `ensure_proxy`).

- the model's endpoint, from its backend: local — `goat serve` running, the model loaded and
  probed; cloud / openai_compatible — registered, probed where possible. A backend whose endpoint
  means deploying paid infrastructure (Modal) is not asked: its record must exist already —
  deploying a GPU app is the `serving_endpoint` asset's job (or `GOAT_MODEL=<key> modal deploy
  ...`), not a side effect of `goat run`;
- the LiteLLM proxy serving the registry (restarted only when its config changed).
"""

from __future__ import annotations

from goat_dagster.registry import ModelEntry, Registry
from goat_dagster.routing.config import build_config
from goat_dagster.routing.proxy import ProxyError, ProxySettings, ensure_proxy
from goat_dagster.serving.backend import Log, PrintLog, ServingError
from goat_dagster.serving.backends import Backends
from goat_dagster.serving.endpoint import load_endpoint, load_endpoints


def ensure_model_stack(
    registry: Registry,
    entry: ModelEntry,
    backends: Backends,
    proxy: ProxySettings | None = None,
    log: Log | None = None,
) -> str:
    """Endpoint + proxy for `entry`; returns the proxy's base URL. `ServingError` or `ProxyError`
    (the message says what to do) when the model cannot be made reachable."""
    log = log or PrintLog()
    backend = backends.for_entry(entry)
    if backend.deploys:
        if load_endpoint(entry.key) is None:
            raise ServingError(
                f"{entry.key} runs on Modal and has no endpoint yet: materialize serving_endpoint "
                f"for partition {entry.slug!r} in Dagster (or `goat demo`), then run again"
            )
    else:
        backend.endpoint(entry, log)
    status = ensure_proxy(build_config(registry, load_endpoints()), proxy, log=log)
    if not status.ready:
        raise ProxyError(f"the external LiteLLM proxy at {status.base_url} is not ready (/health/readiness)")
    log.info(f"LiteLLM proxy: {status.base_url}")
    return status.base_url
