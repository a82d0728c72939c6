"""`ExternalBackend`: endpoints goat does not run — cloud APIs (Azure, Groq, OpenAI, Anthropic
through LiteLLM) and any OpenAI-compatible base URL (Ollama, a RunPod/Vast.ai vLLM). They have no
weights to manage and nothing to tear down; `endpoint` registers them.

Health is a real probe when one is possible: a chat completion against the base URL
(openai_compatible), or through LiteLLM with the provider key when that key is in this process's
environment (cloud). Otherwise `healthy` is False and `detail` says exactly what was and was not
checked — never a "healthy" nobody verified. Keys are read by name from the environment and never
recorded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from goat_dagster.registry import ModelEntry
from goat_dagster.serving.backend import Health, Log, Provenance, WeightsReport, endpoint_key
from goat_dagster.serving.endpoint import Endpoint, save_endpoint
from goat_dagster.serving.probe import PROMPT, probe_chat


@dataclass(frozen=True)
class ExternalBackend:
    probe_timeout_s: float = 60.0

    kind: ClassVar[str] = "cloud"
    deploys: ClassVar[bool] = False
    # the provider serves concurrent requests; the tasks' sandboxes share this machine's cores
    default_parallel: ClassVar[int] = 2

    def weights(self, entry: ModelEntry, log: Log) -> WeightsReport:
        what = entry.litellm_model or entry.served_model
        log.info(f"{entry.key}: provider {entry.provider} serves its own weights ({what}); nothing to fetch")
        return WeightsReport(
            data_version=f"provider-managed:{entry.provider}:{what}",
            summary=f"provider-managed ({what})",
            facts={
                "source": "provider-managed",
                "weights": f"none to manage: provider {entry.provider!r} ({entry.engine}) serves its "
                "own weights",
                "model": what,
                "n_files": 0,
            },
        )

    def endpoint(self, entry: ModelEntry, log: Log) -> Endpoint:
        ep = register_external_endpoint(entry, log, timeout_s=self.probe_timeout_s)
        save_endpoint(ep)
        return ep

    def probe(self, entry: ModelEntry, endpoint: Endpoint, *, timeout_s: float | None = None) -> Health:
        """Probed afresh, as when it was registered (the record holds no key to reuse)."""
        fresh = register_external_endpoint(entry, None, timeout_s=timeout_s or self.probe_timeout_s)
        verified = bool(fresh.detail.get("verified"))
        said = fresh.detail.get("checked", []) + [
            f"not checked: {n}" for n in fresh.detail.get("not_checked", [])
        ]
        return Health(
            ok=fresh.healthy,
            verified=verified,
            description="answered a chat completion" if fresh.healthy else "; ".join(said),
            detail=fresh.detail.get("probe") or {},
        )

    def teardown(self, entry: ModelEntry, log: Log) -> bool:
        log.info(f"{entry.key}: provider {entry.provider} is not run by goat; nothing to stop")
        return False

    def provenance(self, entry: ModelEntry) -> Provenance:
        """A provider's own weights and engine: only the names it goes by are known here."""
        what = entry.litellm_model or entry.served_model
        build = {"provider": entry.provider, "model": what}
        if entry.api_version:
            build["api_version"] = entry.api_version
        return Provenance(
            entry.engine, None, build, f"provider-managed: {what}", None, "served by the provider"
        )


def external_base_url(entry: ModelEntry) -> tuple[str | None, str]:
    """(base URL, where it came from) of a cloud/openai_compatible entry."""
    if entry.api_base:
        return entry.api_base.rstrip("/"), "api_base"
    if entry.api_base_env:
        value = os.environ.get(entry.api_base_env)
        if value:
            return value.rstrip("/"), f"${entry.api_base_env}"
        return None, f"${entry.api_base_env} (not set)"
    return None, "none"


def _api_key(entry: ModelEntry) -> tuple[str | None, str]:
    if not entry.api_key_env:
        return None, "no api_key_env"
    value = endpoint_key(entry)
    return (value, f"${entry.api_key_env} set") if value else (None, f"${entry.api_key_env} not set")


def _probe_litellm(
    entry: ModelEntry, base_url: str | None, api_key: str | None, timeout_s: float
) -> dict[str, Any]:
    # litellm takes seconds to import: only a cloud probe, in the process that makes one, pays for it
    import litellm

    kwargs: dict[str, Any] = {"timeout": timeout_s, "max_tokens": 16, "num_retries": 0}
    if base_url:
        kwargs["api_base"] = base_url
    if api_key:
        kwargs["api_key"] = api_key
    if entry.api_version:
        kwargs["api_version"] = entry.api_version
    t0 = time.monotonic()
    try:
        resp = litellm.completion(
            model=entry.litellm_model,
            messages=[{"role": "user", "content": PROMPT}],
            **kwargs,
        )
    except Exception as exc:  # provider errors come in many classes; the message is what matters
        msg = str(exc).replace(api_key or "\0", "***")[:300]
        return {
            "ok": False,
            "error": f"{type(exc).__name__}: {msg}",
            "latency_s": round(time.monotonic() - t0, 3),
        }
    content = (resp.choices[0].message.content or "").strip() if resp.choices else ""
    return {"ok": True, "latency_s": round(time.monotonic() - t0, 3), "reply": content[:200]}


def register_external_endpoint(entry: ModelEntry, log: Log | None, *, timeout_s: float) -> Endpoint:
    """The Endpoint record of a cloud or openai_compatible model, probed where possible."""
    if entry.provider not in ("cloud", "openai_compatible"):
        raise ValueError(f"model {entry.key!r} is provider {entry.provider!r}; not an external endpoint")
    say = log.info if log is not None else (lambda _m: None)
    base_url, base_from = external_base_url(entry)
    api_key, key_state = _api_key(entry)
    checked: list[str] = []
    not_checked: list[str] = []
    probe: dict[str, Any] = {}
    if entry.provider == "openai_compatible":
        if base_url is None:
            not_checked.append(f"chat completion: no base URL ({base_from})")
        elif entry.api_key_env and api_key is None:
            not_checked.append(f"chat completion at {base_url}: {key_state}")
        else:
            result = probe_chat(base_url, entry.served_model, api_key=api_key, timeout_s=timeout_s)
            probe = result.as_metadata()
            checked.append(f"chat completion at {base_url}: {'answered' if result.ok else 'failed'}")
    else:
        if entry.api_key_env and api_key is None:
            not_checked.append(
                f"chat completion via LiteLLM ({entry.litellm_model}): {key_state} in this process"
            )
        elif entry.api_base_env and base_url is None:
            not_checked.append(f"chat completion via LiteLLM ({entry.litellm_model}): {base_from}")
        else:
            probe = _probe_litellm(entry, base_url, api_key, timeout_s)
            outcome = "answered" if probe["ok"] else "failed"
            checked.append(f"chat completion via LiteLLM ({entry.litellm_model}): {outcome}")
    healthy = bool(probe.get("ok")) and not not_checked
    for line in checked + [f"NOT checked: {n}" for n in not_checked]:
        say(f"{entry.key}: {line}")
    if probe.get("error"):
        say(f"{entry.key}: probe error: {probe['error']}")
    return Endpoint(
        model_key=entry.key,
        provider=entry.provider,
        engine=entry.engine,
        # cloud APIs are reached through LiteLLM with their own base; openai_compatible ones directly
        base_url=base_url if entry.provider == "openai_compatible" else None,
        served_name=entry.served_model,
        healthy=healthy,
        cold_start_s=None,
        load_s=None,
        detail={
            "verified": bool(probe),
            "checked": checked,
            "not_checked": not_checked,
            "base_url_from": base_from,
            "api_key": key_state,
            "litellm_model": entry.litellm_model,
            "probe": probe,
        },
    )
