"""Bring up what one model needs on this machine, outside Dagster (what `goat run` does before a
run; the asset graph does the same steps as `serving_endpoint` and `litellm_config`).

- local: `goat serve` running (reused or started detached), the model loaded and probed.
- cloud / openai_compatible: an endpoint record (registered, probed where possible).
- modal: an endpoint record must exist already — deploying a GPU app is the `serving_endpoint`
  asset's job (or `GOAT_MODEL=<key> modal deploy ...`), not a side effect of `goat run`.
Then the managed LiteLLM proxy serves the registry (restarted only when its config changed).
"""

from __future__ import annotations

from collections.abc import Callable

from goat_dagster.registry import ModelEntry, Registry, load_registry
from goat_dagster.serving.endpoint import Endpoint, load_endpoint, load_endpoints, save_endpoint

Log = Callable[[str], None]


class StackError(RuntimeError):
    """The model cannot be made reachable; the message says what to do."""


def ensure_endpoint(entry: ModelEntry, log: Log) -> Endpoint:
    if entry.provider == "local":
        from goat_dagster.serving.local.backend import ensure_local_endpoint

        ep = ensure_local_endpoint(entry, log=log)
    elif entry.provider in ("cloud", "openai_compatible"):
        from goat_dagster.serving.external import register_external_endpoint

        ep = register_external_endpoint(entry, log=log)
    else:
        ep = load_endpoint(entry.key)
        if ep is None:
            raise StackError(
                f"{entry.key} runs on Modal and has no endpoint yet: materialize serving_endpoint "
                f"for partition {entry.slug!r} in Dagster (or `goat demo`), then run again"
            )
        return ep
    save_endpoint(ep)
    if not ep.healthy and entry.self_hosted:
        raise StackError(
            f"{entry.key}: the endpoint at {ep.base_url} did not answer: {ep.detail.get('error')}"
        )
    return ep


def ensure_model_stack(entry: ModelEntry, registry: Registry | None = None, log: Log | None = None) -> str:
    """Endpoint + proxy for `entry`; returns the proxy's base URL."""
    from goat_dagster.routing.gateway import GatewayError, ensure_gateway
    from goat_dagster.routing.proxy import ProxyError
    from goat_dagster.serving.local.client import ServeClientError

    say = log or (lambda _m: None)
    registry = registry or load_registry()
    try:
        ensure_endpoint(entry, say)
        url = ensure_gateway(registry, load_endpoints())
    except (ServeClientError, GatewayError, ProxyError) as exc:
        raise StackError(str(exc)) from exc
    say(f"LiteLLM proxy: {url}")
    return url
