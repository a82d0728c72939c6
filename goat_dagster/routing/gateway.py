"""`Gateway`: where a call to one model goes — an OpenAI-compatible base URL, the key to send, the
model name to ask for (and the registry's prices, for when the gateway reports no cost).

Every model call goat makes goes through a `Gateway`, and every `Gateway` comes from here:

- `resolve_gateway(entry)`: for code on the host (the builtin agent loop): GOAT_LLM_BASE_URL when
  the user names a gateway of their own, else the LiteLLM proxy (`proxy.ProxySettings`) with its
  master key.
- `sandbox_gateway(entry, ...)`: for code inside a sandbox (`command:` agents): the proxy with a
  scoped key that can call only this model until it expires (`auth.py`); never the master key,
  never a provider key. `sandbox_key` mints every such key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr

from goat_dagster import config
from goat_dagster.registry import ModelEntry
from goat_dagster.routing.auth import mint_scoped_key
from goat_dagster.routing.proxy import ProxySettings

if TYPE_CHECKING:
    import openai

SCOPED_KEY_GRACE_S = 600.0  # a sandbox's key outlives the work it was minted for by this much
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


class Gateway(BaseModel):
    """An OpenAI-compatible endpoint (base URL ending in /v1), its key, and the model name to send."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    api_key: SecretStr
    model: str
    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    agent_key: SecretStr | None = None  # a key a cloud sandbox may hold instead of a minted one

    def registry_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6

    @property
    def on_loopback(self) -> bool:
        """Whether the gateway is on this machine's loopback (out of a cloud sandbox's reach)."""
        return (urlsplit(self.base_url).hostname or "") in LOOPBACK_HOSTS

    def openai(self, **kwargs: Any) -> openai.OpenAI:
        """An OpenAI SDK client on this gateway."""
        # the SDK takes ~0.5 s to import; `goat run --agent oracle` and the proxy never need it
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=self.api_key.get_secret_value(), **kwargs)

    def env(self) -> dict[str, str]:
        """Environment for an OpenAI-compatible agent process (e.g. goat-eval in a sandbox)."""
        return {
            "OPENAI_BASE_URL": self.base_url,
            "OPENAI_API_KEY": self.api_key.get_secret_value(),
            "OPENAI_MODEL": self.model,
        }


def _gateway(entry: ModelEntry, base_url: str, key: str, agent_key: SecretStr | None = None) -> Gateway:
    return Gateway(
        base_url=base_url,
        api_key=SecretStr(key),
        model=entry.gateway_name,
        input_per_mtok=entry.pricing.input_per_mtok,
        output_per_mtok=entry.pricing.output_per_mtok,
        agent_key=agent_key,
    )


def resolve_gateway(entry: ModelEntry, proxy: ProxySettings | None = None) -> Gateway:
    """The gateway host-side code calls `entry` through: the proxy (`proxy`, else the one the
    environment configures) with its master key — or, when no proxy is given and GOAT_LLM_BASE_URL
    is set, that gateway (with GOAT_LLM_API_KEY). GOAT_LLM_AGENT_KEY, when set, is what a cloud
    sandbox gets instead of a scoped key."""
    s = config.settings()
    agent_key = s.llm_agent_key
    if proxy is None and s.llm_base_url:
        key = s.llm_api_key.get_secret_value() if s.llm_api_key else "sk-goat-local"
        return _gateway(entry, s.llm_base_url, key, agent_key)
    proxy = proxy or ProxySettings.from_settings()
    return _gateway(entry, proxy.base_url() + "/v1", proxy.admin_key(), agent_key)


def sandbox_key(
    admin_key: str,
    name: str,
    *,
    run_id: str | None = None,
    work_s: float,
    ids: dict[str, str] | None = None,
) -> str:
    """The key a sandbox gets: scoped to the gateway model `name` (and `run_id`), valid for as long
    as the sandbox's work may take (`work_s`) plus SCOPED_KEY_GRACE_S, signed with the proxy's
    `admin_key`; `ids` name the attempt, so the trace sink files calls made with it there. Every
    scoped key handed to a sandbox is minted here."""
    return mint_scoped_key(
        admin_key, models=[name], run_id=run_id, ttl_s=work_s + SCOPED_KEY_GRACE_S, ids=ids
    )


def sandbox_gateway(
    entry: ModelEntry,
    *,
    run_id: str | None = None,
    work_s: float = 6 * 3600,
    proxy: ProxySettings | None = None,
) -> Gateway:
    """The gateway for code inside a sandbox: a `sandbox_key` for this one model, for `work_s`
    seconds of work. `base_url` is the proxy as the host sees it; a sandbox on another machine
    (Modal) needs the proxy reachable from there (external mode, e.g. the proxy on Modal)."""
    proxy = proxy or ProxySettings.from_settings()
    key = sandbox_key(proxy.admin_key(), entry.gateway_name, run_id=run_id, work_s=work_s)
    return _gateway(entry, proxy.base_url() + "/v1", key)
