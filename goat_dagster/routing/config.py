"""The LiteLLM proxy config (LiteLLM's own `config.yaml` format), built from the registry and the
`Endpoint` records of the serving backends: `build_config` is the one place it is derived. The
`litellm_config` asset and `goat run`'s stack build it and hand it to `proxy.ensure_proxy`, which
writes it (once, validated) and serves it; the proxy on Modal serves the file that was written,
adapted for a public URL (`for_public_proxy`).

- Self-hosted models (provider local or modal) become `<key>-local` deployments of LiteLLM's
  OpenAI-compatible provider, pointing at the Endpoint's `base_url` and `served_name`. They get
  `temperature: 0.3` and `tool_choice: auto` (plus the entry's `request_defaults`) as deployment
  `litellm_params`: the LiteLLM router merges a deployment's params *under* the request's
  (`{**deployment_params, **request_kwargs}`), so they are defaults a request overrides, and LiteLLM
  drops `tool_choice` when a request has no `tools`.
- Cloud models keep their key as model name and their `litellm_model` (`azure/…`, `groq/…`, …);
  keys and bases only ever appear as `os.environ/NAME` references, resolved inside the proxy.
- OpenAI-compatible servers (Ollama, RunPod / Vast.ai vLLM) go by key with their base URL.

Router settings come from `Registry.router`. Callbacks: the local trace sink always; Langfuse's
`langfuse_otel` when LANGFUSE_PUBLIC_KEY / LANGFUSE_SECRET_KEY / LANGFUSE_HOST are set.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from goat_dagster import config
from goat_dagster.atomic import written_aside
from goat_dagster.config import ConfigError
from goat_dagster.registry import ModelEntry, Registry
from goat_dagster.serving.endpoint import Endpoint

SINK_CALLBACK = "goat_dagster.tracing.sink.trace_sink"
CUSTOM_AUTH = "goat_dagster.routing.auth.user_api_key_auth"
MASTER_KEY_ENV = config.GoatSettings.env_name("litellm_master_key")
ENV_REF = "os.environ/"
# Not a secret: OpenAI-compatible servers we run ourselves take any key, LiteLLM's client needs one.
NO_KEY = "no-key"
LOCAL_DEFAULTS: dict[str, Any] = {"temperature": 0.3, "tool_choice": "auto"}
# Config keys whose values are credentials: they may only be `os.environ/NAME` references.
SECRET_FIELDS = (
    "api_key", "master_key", "aws_secret_access_key", "vertex_credentials", "azure_ad_token", "database_url",
)  # fmt: skip


@dataclass
class LiteLLMConfig:
    """A LiteLLM config plus what the builder decided, for asset metadata and logs."""

    config: dict[str, Any]
    routed: list[dict[str, Any]] = field(default_factory=list)  # one row per deployment
    skipped: list[dict[str, str]] = field(default_factory=list)  # model, reason

    @property
    def text(self) -> str:
        return config_yaml(self.config)

    @property
    def sha256(self) -> str:
        return config_hash(self.config)


def env_ref(name: str) -> str:
    return f"{ENV_REF}{name}"


def _costs(m: ModelEntry) -> dict[str, float]:
    """LiteLLM's pricing of a deployment. Per token for APIs; a GPU billed by the hour (Modal) is
    priced per second of each call (`input_cost_per_second`, which LiteLLM applies to the response
    time when a model has no token prices): the GPU time a call held, an upper bound when calls
    overlap on one replica, without the idle minutes before scale-to-zero."""
    if m.pricing.gpu_hour_usd:
        gpus = m.modal.n_gpu if m.provider == "modal" else 1
        return {"input_cost_per_second": float(f"{m.pricing.gpu_hour_usd * gpus / 3600:.10g}")}
    return {  # %.10g: 5e-08, not 5.0000000000000004e-08
        "input_cost_per_token": float(f"{m.pricing.input_per_token:.10g}"),
        "output_cost_per_token": float(f"{m.pricing.output_per_token:.10g}"),
    }


def _model_info(m: ModelEntry, *, with_costs: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "id": m.slug,
        "goat_key": m.key,
        "goat_provider": m.provider,
        "goat_engine": m.engine,
    }
    if with_costs:
        info.update(_costs(m))
    return info


def request_defaults(m: ModelEntry) -> dict[str, Any]:
    """The request parameters the proxy gives every call to `m` unless the call sets its own (the
    deployment's `litellm_params` beyond model, base and key): what a run's manifest records as the
    model's sampling defaults."""
    return {**(LOCAL_DEFAULTS if m.self_hosted else {}), **m.request_defaults}


def _key_param(m: ModelEntry) -> str:
    return env_ref(m.key_env) if m.key_env else NO_KEY


def _self_hosted(m: ModelEntry, ep: Endpoint | None) -> tuple[dict[str, Any] | None, str]:
    if ep is None:
        return None, "no endpoint record (materialize serving_endpoint first)"
    if not ep.base_url:
        return None, f"endpoint record of {m.key} has no base_url"
    params: dict[str, Any] = {
        "model": f"openai/{ep.served_name}",
        "api_base": ep.base_url,
        "api_key": _key_param(m),
        **request_defaults(m),
    }
    return {
        "model_name": m.gateway_name,
        "litellm_params": params,
        "model_info": _model_info(m, with_costs=True),
    }, ""


def _cloud(m: ModelEntry) -> dict[str, Any]:
    params: dict[str, Any] = {"model": m.litellm_model}
    if m.api_key_env:
        params["api_key"] = env_ref(m.api_key_env)
    if m.api_base_env:
        params["api_base"] = env_ref(m.api_base_env)
    elif m.api_base:
        params["api_base"] = m.api_base
    if m.api_version:
        params["api_version"] = m.api_version
    params.update(request_defaults(m))
    priced = bool(m.pricing.input_per_mtok or m.pricing.output_per_mtok)
    return {
        "model_name": m.gateway_name,
        "litellm_params": params,
        "model_info": _model_info(m, with_costs=priced),
    }


def _openai_compatible(m: ModelEntry) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": f"openai/{m.served_model}",
        "api_base": env_ref(m.api_base_env) if m.api_base_env else m.api_base,
        "api_key": _key_param(m),
        **request_defaults(m),
    }
    return {
        "model_name": m.gateway_name,
        "litellm_params": params,
        "model_info": _model_info(m, with_costs=True),
    }


def _group_deployments(
    registry: Registry, model_list: list[dict[str, Any]], out: LiteLLMConfig
) -> list[dict[str, Any]]:
    """`router.groups`: each routable member's deployment once more under the group's name, so the
    router has several deployments of one model name to choose from (the strategy then matters).
    Disabled members are left out; enabled ones not routable yet too, listed in `out.skipped`."""
    by_key = {d["model_info"]["goat_key"]: d for d in model_list}
    extra: list[dict[str, Any]] = []
    for name, group in registry.router.groups.items():
        members = []
        for key in group.models:
            dep = by_key.get(key)
            if dep is None:
                if registry.models[key].enabled:
                    out.skipped.append({"model": name, "reason": f"member {key} is not routable yet"})
                continue
            params = dict(dep["litellm_params"])
            if group.weights:
                params["weight"] = group.weights.get(key, 1.0)
            members.append(
                {
                    "model_name": name,
                    "litellm_params": params,
                    "model_info": {**dep["model_info"], "id": f"{name}/{dep['model_info']['id']}"},
                }
            )
        if not members:
            continue
        extra += members
        out.routed.append(
            {
                "model_name": name,
                "provider": "group",
                "litellm_model": ", ".join(m["litellm_params"]["model"] for m in members),
                "api_base": "",
                "defaults": ", ".join(f"weight={m['litellm_params']['weight']:g}" for m in members)
                if group.weights
                else "",
            }
        )
    return extra


def _router_settings(registry: Registry, names: set[str]) -> dict[str, Any]:
    r = registry.router
    by_name = {m.key: m.gateway_name for m in registry.models.values()}
    fallbacks = []
    for fb in r.fallbacks:
        src = by_name.get(fb.model, fb.model)
        to = [by_name.get(t, t) for t in fb.to]
        to = [t for t in to if t in names]
        if src in names and to:
            fallbacks.append({src: to})
    settings: dict[str, Any] = {
        "routing_strategy": r.routing_strategy,
        "num_retries": r.num_retries,
        "timeout": r.timeout_s,
        "allowed_fails": r.allowed_fails,
        "cooldown_time": r.cooldown_time_s,
        "retry_after": r.retry_after_s,
    }
    if r.stream_timeout_s is not None:
        settings["stream_timeout"] = r.stream_timeout_s
    if fallbacks:
        settings["fallbacks"] = fallbacks
    return settings


def build_config(
    registry: Registry,
    endpoints: dict[str, Endpoint],
    *,
    include_disabled: bool = False,
    langfuse: bool | None = None,
) -> LiteLLMConfig:
    """The proxy config for the registry's (enabled) models and the endpoints that serve them, with
    what was routed and what was skipped (for asset metadata).

    `endpoints` maps model key -> Endpoint (as `load_endpoints()` returns). A self-hosted model
    without a healthy-or-not endpoint record is skipped (it is not routable yet) and listed in
    `skipped`. `langfuse=None` decides from the environment (LANGFUSE_* all set).
    """
    out = LiteLLMConfig(config={})
    model_list: list[dict[str, Any]] = []
    for m in registry.models.values():
        if not (m.enabled or include_disabled):
            continue
        if m.self_hosted:
            entry, reason = _self_hosted(m, endpoints.get(m.key))
            if entry is None:
                out.skipped.append({"model": m.gateway_name, "reason": reason})
                continue
        elif m.provider == "cloud":
            entry = _cloud(m)
        else:
            entry = _openai_compatible(m)
        model_list.append(entry)
        p = entry["litellm_params"]
        out.routed.append(
            {
                "model_name": entry["model_name"],
                "provider": m.provider,
                "litellm_model": p["model"],
                "api_base": p.get("api_base", ""),
                "defaults": ", ".join(f"{k}={p[k]}" for k in ("temperature", "tool_choice") if k in p),
            }
        )
    model_list += _group_deployments(registry, model_list, out)
    names = {e["model_name"] for e in model_list}
    use_langfuse = config.settings().langfuse_configured if langfuse is None else langfuse
    callbacks = [SINK_CALLBACK] + (["langfuse_otel"] if use_langfuse else [])
    out.config = {
        "model_list": model_list,
        "router_settings": _router_settings(registry, names),
        "litellm_settings": {
            "callbacks": callbacks,
            "drop_params": True,
            # with custom_auth_run_common_checks: LiteLLM enforces a scoped key's `models`
            "enable_post_custom_auth_checks": True,
            "request_timeout": registry.router.timeout_s,
        },
        "general_settings": {
            "master_key": env_ref(MASTER_KEY_ENV),
            # Stateless scoped keys for sandboxes (no database here): see serving/proxy_auth.py.
            "custom_auth": CUSTOM_AUTH,
            "custom_auth_run_common_checks": True,
        },
    }
    validate_config(out.config)
    return out


# ---- validation ------------------------------------------------------------------------------


def validate_config(cfg: dict[str, Any]) -> None:
    """Structural checks on a generated config; raises `ConfigError` naming the model and field.

    No literal secret may be in it: key-like params must be `os.environ/NAME` references (or the
    `no-key` placeholder for servers we run ourselves), and so must the master key.
    """
    problems: list[str] = []
    model_list = cfg.get("model_list")
    if not isinstance(model_list, list):
        raise ConfigError("model_list: expected a list of deployments")
    ids: set[str] = set()
    for i, dep in enumerate(model_list):
        name = dep.get("model_name") if isinstance(dep, dict) else None
        where = f"model_list[{i}]" + (f" ({name})" if name else "")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}.model_name: missing")
            continue
        params = dep.get("litellm_params")
        if (
            not isinstance(params, dict)
            or not isinstance(params.get("model"), str)
            or "/" not in params["model"]
        ):
            problems.append(f"{where}.litellm_params.model: expected '<provider>/<model>'")
            continue
        for key in SECRET_FIELDS:
            v = params.get(key)
            if v is not None and not (isinstance(v, str) and (v.startswith(ENV_REF) or v == NO_KEY)):
                problems.append(f"{where}.litellm_params.{key}: must be an os.environ/NAME reference")
        base = params.get("api_base")
        if base is not None and not (
            isinstance(base, str) and (base.startswith(("http://", "https://", ENV_REF)))
        ):
            problems.append(f"{where}.litellm_params.api_base: expected an http(s) URL, got {base!r}")
        mid = (dep.get("model_info") or {}).get("id")
        if mid is not None:
            if mid in ids:
                problems.append(f"{where}.model_info.id: duplicate id {mid!r}")
            ids.add(mid)
    names = {d.get("model_name") for d in model_list if isinstance(d, dict)}
    for fb in (cfg.get("router_settings") or {}).get("fallbacks", []):
        for src, dst in fb.items():
            for n in [src, *dst]:
                if n not in names:
                    problems.append(f"router_settings.fallbacks: {n!r} is not a model_name in model_list")
    mk = (cfg.get("general_settings") or {}).get("master_key")
    if mk is not None and not str(mk).startswith(ENV_REF):
        problems.append("general_settings.master_key: must be an os.environ/NAME reference")
    if problems:
        raise ConfigError("invalid LiteLLM config:\n" + "\n".join(f"  {p}" for p in problems))


def validate_with_litellm(path: Path, timeout_s: float = 120) -> None:
    """LiteLLM's own check (`litellm --config PATH --validate_config`); raises `ConfigError`."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", MASTER_KEY_ENV: "sk-validate-only"}
    proc = subprocess.run(
        [litellm_executable(), "--config", str(path), "--validate_config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ConfigError(f"litellm --validate_config rejected {path}:\n{tail}")


def litellm_executable() -> str:
    """The `litellm` CLI of this interpreter's environment."""
    exe = Path(sys.executable).parent / "litellm"
    return str(exe) if exe.exists() else "litellm"


# ---- serialisation ---------------------------------------------------------------------------


def config_path() -> Path:
    """Where the generated config is written: what the managed proxy serves and Modal's deploys."""
    return config.paths().litellm / "config.yaml"


def config_yaml(cfg: dict[str, Any]) -> str:
    header = "# Generated by goat-dagster (litellm_config) from models.yaml and $GOAT_HOME/endpoints.\n"
    header += "# Do not edit: rematerialize litellm_config instead. No secrets: keys are os.environ/ refs.\n"
    return header + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)


def config_hash(cfg: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_config(cfg: dict[str, Any], path: Path, *, litellm_check: bool = True) -> bool:
    """Write the config to `path` atomically when its content changed (LiteLLM's own check on the new
    file first, unless `litellm_check` is False); return whether it changed."""
    text = config_yaml(cfg)
    if path.exists() and path.read_text() == text:
        return False
    _replace_text(path, text, validate_with_litellm if litellm_check else None)
    return True


def restore_config(path: Path, previous: str | None) -> None:
    """Put back the config file as it was before a `write_config` (`previous`: its text, None: there
    was none), atomically as it was written."""
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        _replace_text(path, previous)


def _replace_text(path: Path, text: str, check: Callable[[Path], None] | None = None) -> None:
    """`text` as the file `path`: written aside, checked there (`check`), then renamed over it."""
    with written_aside(path, suffix=path.suffix) as tmp:  # the check reads it as YAML
        tmp.write_text(text)
        if check is not None:
            check(tmp)


def read_config(path: Path) -> dict[str, Any]:
    """A LiteLLM config file (YAML or JSON) as a dict."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no LiteLLM config there") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a LiteLLM config mapping")
    return data


# ---- a proxy on a public URL ------------------------------------------------------------------


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host in ("localhost", "0.0.0.0"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _literal_secrets(obj: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            where = f"{path}.{k}" if path else str(k)
            if k in SECRET_FIELDS and isinstance(v, str) and v and v != NO_KEY and not v.startswith(ENV_REF):
                found.append(where)
            else:
                found += _literal_secrets(v, where)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += _literal_secrets(v, f"{path}[{i}]")
    return found


def for_public_proxy(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The config adapted for a proxy on a public URL (the one on Modal), and the model names dropped
    from it: deployments on this machine's loopback (unreachable from there), fallbacks naming them.
    A literal credential is refused (it would be baked into an image; the `no-key` placeholder of a
    server that takes no key is none); the master key is required."""
    bad = _literal_secrets(config)
    if bad:
        raise ConfigError(
            "the LiteLLM config holds literal credentials at "
            + ", ".join(bad)
            + "; use os.environ/NAME references (values go in the Modal secrets via `goat setup`)"
        )
    cfg = json.loads(json.dumps(config))  # deep copy, and proof it is JSON-serialisable
    kept, dropped = [], []
    for m in cfg.get("model_list", []):
        base = (m.get("litellm_params") or {}).get("api_base") or ""
        if base and not base.startswith(ENV_REF) and _is_loopback(base):
            dropped.append(m.get("model_name", "?"))
        else:
            kept.append(m)
    if not kept:
        raise ConfigError(
            "no model in the LiteLLM config is reachable from Modal (all point at this machine's "
            "loopback); enable a cloud or modal model in models.yaml"
        )
    cfg["model_list"] = kept
    names = {m.get("model_name") for m in kept}
    router = cfg.get("router_settings") or {}
    if isinstance(router.get("fallbacks"), list):  # fallbacks naming dropped models would not load
        router["fallbacks"] = [
            {k: [t for t in v if t in names]}
            for fb in router["fallbacks"]
            for k, v in fb.items()
            if k in names and any(t in names for t in v)
        ]
    general = cfg.get("general_settings") or {}
    if not general.get("master_key"):
        general["master_key"] = env_ref(MASTER_KEY_ENV)  # a public URL must never be an open proxy
    cfg["general_settings"] = general
    return cfg, sorted(dropped)
