"""`goat setup`: the Modal environment, secrets and volumes, from the `.env` in the current directory.

    goat setup --dry-run            # the plan; changes nothing (works without Modal)
    goat setup                      # the plan, then asks before changing anything
    goat setup --yes                # no question (CI)

Secrets (each a set of environment variables Modal injects into the apps that attach it):

- `goat-llm-providers`: provider keys models.yaml names (`api_key_env`, `api_base_env`) and the
  AZURE_ / GROQ_ / OPENAI_ / ANTHROPIC_ keys; attached to goat-services.
- `goat-litellm`: LITELLM_MASTER_KEY (required: the proxy URL is public); goat-services.
- `goat-langfuse`: LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY, LANGFUSE_HOST; goat-services.
- `goat-hf-token`: HF_TOKEN (gated models such as Llama 3.1 need it); every vLLM app, goat-weights.
- `goat-vllm`: VLLM_API_KEY (required: the vLLM URLs are public, vLLM demands it as a bearer token
  on /v1); every vLLM app and goat-services. Keep the same value in your local environment.

With GOAT_LANGFUSE_ON_MODAL=1 (in the environment or the .env) it also runs Langfuse on Modal
(`langfuse_app`): keys the .env lacks are generated (the project's API keys, SALT, ENCRYPTION_KEY,
NEXTAUTH_SECRET, the admin's password) and written to the .env before anything is created; a sixth
secret `goat-langfuse-server` holds the server's; Volume `goat-langfuse-data` its stores' data; then
`goat-langfuse` is deployed and its URL written to LANGFUSE_HOST in the .env and `goat-langfuse`.

Every app attaches its secrets unconditionally (seed 002), so all five are created even when a
value is missing: a placeholder key (`GOAT_<X>_SET=0`) stands in, never an empty value. An existing
secret is updated with the keys the .env has; keys it has that the .env lacks are kept. Values are
never printed: the plan shows key names and whether each is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import TypeAdapter, ValidationError

from goat_dagster.config import GoatSettings, settings
from goat_dagster.registry import VLLM_KEY_ENV, Registry
from goat_dagster.serving.backend import ServingError
from goat_dagster.serving.modal.langfuse_deploy import (
    HOST_KEY,
    PROJECT_KEY_NAMES,
    SERVER_KEY_NAMES,
    ensure_langfuse,
    generate_keys,
    load_record,
    write_env_values,
)
from goat_dagster.serving.modal.langfuse_server import (
    ADMIN_EMAIL,
    CLICKHOUSE_VERSION,
    LANGFUSE_WEB_IMAGE,
    LANGFUSE_WORKER_IMAGE,
    SECRET_LANGFUSE_SERVER,
    VOLUME_LANGFUSE,
)
from goat_dagster.serving.modal.spec import (
    SECRET_HF,
    SECRET_LANGFUSE,
    SECRET_LITELLM,
    SECRET_PROVIDERS,
    SECRET_VLLM,
    VOLUME_FLASHINFER,
    VOLUME_MODELS,
    VOLUME_RESULTS,
    VOLUME_VLLM,
)

PROVIDER_KEYS = (
    "AZURE_API_KEY",
    "AZURE_API_BASE",
    "AZURE_API_VERSION",
    "GROQ_API_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
)
LANGFUSE_KEYS = ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_HOST", "LANGFUSE_BASE_URL")
HF_KEYS = ("HF_TOKEN",)
LITELLM_KEYS = ("LITELLM_MASTER_KEY",)
VLLM_KEYS = (VLLM_KEY_ENV,)

VOLUME_PURPOSE = {
    VOLUME_MODELS: "Hugging Face weights for vLLM",
    VOLUME_VLLM: "vLLM compile cache",
    VOLUME_FLASHINFER: "FlashInfer MoE kernels (gpt-oss)",
    VOLUME_RESULTS: "the proxy's trace sink, run outputs",
    VOLUME_LANGFUSE: "Langfuse's PostgreSQL, ClickHouse, Redis and MinIO data",
}


class SetupError(ServingError):
    """The set-up cannot go ahead (no .env, a required key missing, Modal unusable)."""


@dataclass
class SecretPlan:
    name: str
    purpose: str
    values: dict[str, str] = field(repr=False)  # never rendered
    expected: list[str] = field(default_factory=list)
    required: list[str] = field(default_factory=list)
    placeholder: str | None = None
    action: str = "ensure"  # create | update | ensure (Modal not checked)

    @property
    def present(self) -> list[str]:
        return [k for k in self.values if k != self.placeholder]

    @property
    def missing(self) -> list[str]:
        return [k for k in self.expected if k not in self.values]

    @property
    def missing_required(self) -> list[str]:
        return [k for k in self.required if k not in self.values]


@dataclass
class SetupPlan:
    env_file: str
    environment: str
    environment_action: str
    secrets: list[SecretPlan]
    volumes: list[tuple[str, str]]  # (name, action)
    checked: bool  # whether Modal was asked what exists
    modal_note: str = ""
    warnings: list[str] = field(default_factory=list)
    langfuse: bool = False  # deploy goat-langfuse (GOAT_LANGFUSE_ON_MODAL)
    # keys generated for the .env (Langfuse on Modal); their values are never rendered
    generated: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def problems(self) -> list[str]:
        return [
            f"{s.name}: {k} is required (add it to {self.env_file})"
            for s in self.secrets
            for k in s.missing_required
        ]

    def render(self) -> str:
        lines = [f"Modal set-up from {self.env_file}", ""]
        if not self.checked:
            lines += [f"(Modal not checked: {self.modal_note}; actions show what would be ensured)", ""]
        lines.append(f"environment  {self.environment:<24} {self.environment_action}")
        lines.append("")
        lines.append("secrets (values are never shown)")
        for s in self.secrets:
            lines.append(f"  {s.name:<20} {s.action:<8} {s.purpose}")
            for k in s.present:
                lines.append(f"      {k:<22} {'generated' if k in self.generated else 'set'}")
            for k in s.missing:
                tag = "MISSING (required)" if k in s.required else "not in .env"
                lines.append(f"      {k:<22} {tag}")
            if s.placeholder and s.placeholder in s.values:
                lines.append(f"      {s.placeholder:<22} placeholder (nothing to store yet)")
        lines.append("")
        lines.append("volumes")
        for name, action in self.volumes:
            lines.append(f"  {name:<24} {action:<8} {VOLUME_PURPOSE.get(name, '')}")
        if self.langfuse:
            lines += ["", "Langfuse on Modal (GOAT_LANGFUSE_ON_MODAL)"]
            lines.append(f"  app goat-langfuse    deploy   {LANGFUSE_WEB_IMAGE} + {LANGFUSE_WORKER_IMAGE}")
            lines.append(
                f"                                PostgreSQL, ClickHouse {CLICKHOUSE_VERSION}, Redis, MinIO"
            )
            lines.append(f"                                on Volume {VOLUME_LANGFUSE}")
            if self.generated:
                lines.append(f"  {self.env_file}: write the generated {', '.join(self.generated)}")
            lines.append(f"  then {HOST_KEY}=<its URL> to {self.env_file} and {SECRET_LANGFUSE}")
        for w in self.warnings:
            lines.append(f"warning: {w}")
        for p in self.problems:
            lines.append(f"error: {p}")
        return "\n".join(lines)


def read_env_file(path: str | Path) -> dict[str, str]:
    """KEY=VALUE pairs of a dotenv file; empty values are treated as absent."""
    p = Path(path)
    if not p.is_file():
        raise SetupError(
            f"no env file at {p.resolve()}: create it with the keys you have (see .env.example), "
            "or pass --env-file PATH"
        )
    return {k: v for k, v in dotenv_values(p).items() if v}


def _registry_provider_keys(registry: Registry) -> tuple[list[str], list[str]]:
    """Env names the registry's cloud entries use: all of them, and those of enabled entries."""
    names: list[str] = []
    needed: list[str] = []
    for m in registry.models.values():
        for n in (m.api_key_env, m.api_base_env):
            if n and n not in names:
                names.append(n)
            if n and m.enabled and m.provider == "cloud" and n not in needed:
                needed.append(n)
    return names, needed


def langfuse_on_modal(env: dict[str, str]) -> bool:
    """GOAT_LANGFUSE_ON_MODAL from the .env file, else from this environment (as GoatSettings reads it)."""
    name = GoatSettings.env_name("langfuse_on_modal")
    if name not in env:
        return settings().langfuse_on_modal
    try:
        return TypeAdapter(bool).validate_python(env[name])
    except ValidationError:
        raise SetupError(f"{name}={env[name]!r} in the env file: must be 1/0 or true/false") from None


def build_plan(
    env_file: str | Path, state: dict[str, set[str]] | None, modal_note: str = "", *, registry: Registry
) -> SetupPlan:
    """What `goat setup` would do. `state` is what exists in Modal ({environments, secrets,
    volumes}), or None when Modal was not asked (dry run without Modal)."""
    env = read_env_file(env_file)
    # as ModalCloud resolves it: the .env file's GOAT_MODAL_ENVIRONMENT, else this environment's
    environment = env.get(GoatSettings.env_name("modal_environment")) or settings().modal_environment
    on_modal = langfuse_on_modal(env)
    generated = {k: v for k, v in generate_keys().items() if k not in env} if on_modal else {}
    env = {**env, **generated}
    record = load_record() if on_modal else None
    if on_modal and env.get(HOST_KEY) != (record or {}).get("url"):
        env.pop(HOST_KEY, None)  # another Langfuse's URL (.env.example's): this one's comes after the deploy
    reg_keys, needed = _registry_provider_keys(registry)
    provider_names = list(dict.fromkeys([*PROVIDER_KEYS, *reg_keys]))

    def pick(keys: tuple[str, ...] | list[str]) -> dict[str, str]:
        return {k: env[k] for k in keys if k in env}

    secrets = [
        SecretPlan(
            SECRET_PROVIDERS, "provider API keys for the proxy", pick(provider_names), provider_names, needed
        ),
        SecretPlan(
            SECRET_LITELLM, "LiteLLM master key", pick(LITELLM_KEYS), list(LITELLM_KEYS), list(LITELLM_KEYS)
        ),
        SecretPlan(SECRET_LANGFUSE, "Langfuse tracing", pick(LANGFUSE_KEYS), list(LANGFUSE_KEYS)),
        SecretPlan(SECRET_HF, "Hugging Face token for gated weights", pick(HF_KEYS), list(HF_KEYS)),
        SecretPlan(
            SECRET_VLLM, "key the vLLM apps require", pick(VLLM_KEYS), list(VLLM_KEYS), list(VLLM_KEYS)
        ),
    ]
    if on_modal:
        secrets.append(
            SecretPlan(
                SECRET_LANGFUSE_SERVER,
                "the Langfuse server on Modal",
                pick(SERVER_KEY_NAMES),
                list(SERVER_KEY_NAMES),
                list(SERVER_KEY_NAMES),
            )
        )
        next(s for s in secrets if s.name == SECRET_LANGFUSE).required = list(PROJECT_KEY_NAMES)
    warnings = []
    for s in secrets:
        if not s.values:
            s.placeholder = f"GOAT_{s.name.removeprefix('goat-').replace('-', '_').upper()}_SET"
            s.values = {s.placeholder: "0"}
    if SECRET_HF in {s.name for s in secrets if s.placeholder}:
        warnings.append("no HF_TOKEN: gated models (meta-llama/Llama-3.1-8B-Instruct) will not download")
    langfuse = next(s for s in secrets if s.name == SECRET_LANGFUSE)
    if langfuse.placeholder is None and not {"LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"} <= set(
        langfuse.values
    ):
        warnings.append("Langfuse needs both LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY")

    volumes = [VOLUME_MODELS, VOLUME_VLLM, VOLUME_FLASHINFER, VOLUME_RESULTS]
    volumes += [VOLUME_LANGFUSE] if on_modal else []
    extra = {"langfuse": on_modal, "generated": generated}
    if state is None:
        return SetupPlan(
            str(env_file),
            environment,
            "ensure",
            secrets,
            [(v, "ensure") for v in volumes],
            False,
            modal_note,
            warnings,
            **extra,
        )
    env_action = "exists" if environment in state["environments"] else "create"
    for s in secrets:
        s.action = "update" if s.name in state.get("secrets", set()) else "create"
    vol_actions = [(v, "exists" if v in state.get("volumes", set()) else "create") for v in volumes]
    return SetupPlan(
        str(env_file), environment, env_action, secrets, vol_actions, True, "", warnings, **extra
    )


def modal_state(cloud: Any) -> dict[str, set[str]]:
    """What already exists in Modal for this workspace / environment."""
    cloud.check()
    environments = cloud.environments()
    if cloud.environment not in environments:
        return {"environments": environments, "secrets": set(), "volumes": set()}
    return {"environments": environments, "secrets": cloud.secrets(), "volumes": cloud.volumes()}


def apply_plan(plan: SetupPlan, cloud: Any, echo: Callable[[str], None]) -> None:
    """Create / update what the plan says. Prints names only."""
    if plan.problems:
        raise SetupError("; ".join(plan.problems))
    if plan.generated:  # first, so a key stored in a secret is never one the .env lacks
        write_env_values(plan.env_file, plan.generated)
        echo(f"wrote {', '.join(plan.generated)} to {plan.env_file}")
    if plan.environment_action == "create":
        cloud.create_environment()
        echo(f"created environment {plan.environment}")
    for s in plan.secrets:
        cloud.put_secret(s.name, dict(s.values), exists=s.action == "update")
        echo(f"{'updated' if s.action == 'update' else 'created'} secret {s.name} ({len(s.values)} keys)")
    for name, action in plan.volumes:
        if action != "exists":
            cloud.create_volume(name)
            echo(f"created volume {name}")
    if plan.langfuse:
        url = ensure_langfuse(cloud, echo)
        cloud.put_secret(SECRET_LANGFUSE, {HOST_KEY: url}, exists=True)
        write_env_values(plan.env_file, {HOST_KEY: url})
        echo(f"Langfuse on Modal: {url} ({HOST_KEY} written to {plan.env_file} and secret {SECRET_LANGFUSE})")
        echo(f"  sign in as {ADMIN_EMAIL} with LANGFUSE_INIT_USER_PASSWORD from {plan.env_file}")
        echo(f"  load it here: set -a; . {plan.env_file}; set +a   (then `goat doctor`)")
    echo("done. Next: modal deploy -m goat_dagster.routing.modal_proxy --env " + plan.environment)
