"""Where goat-dagster keeps things and how it is configured: `GoatSettings`, every environment
variable goat reads, in one place.

Everything is resolved from environment variables so that the CLI, `dagster dev`, run workers and
the detached servers all agree. `settings()` reads them afresh (a test or a CLI flag may change the
environment at any time); `export_environment()` pins the resolved absolute paths into `os.environ`
so child processes started from any working directory see the same ones. The README's table of
environment variables is generated from `GoatSettings` (`settings_table`); a test keeps it in step.

Variables that goat *sets* for others and never reads as settings — what a `command:` agent finds
in its sandbox (`GOAT_INSTRUCTION`, ...), the spec baked into a Modal image (`GOAT_MODAL_SPEC`) —
are not settings and are documented where they are set.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
ENV_PREFIX = "GOAT_"


class ConfigError(ValueError):
    """A setting or a generated configuration is invalid; the message names the variable or field."""


def _group(name: str) -> dict[str, Any]:
    return {"group": name}


class GoatSettings(BaseSettings):
    """Every environment variable goat reads. A field is the variable `GOAT_` + its name
    (`serve_port`: `GOAT_SERVE_PORT`) unless it names another tool's variable (`DAGSTER_PG_URL`,
    `LITELLM_MASTER_KEY`, `LANGFUSE_*`). Empty values count as unset. Read through `settings()`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore", frozen=True, populate_by_name=True
    )

    # -- where things are ----------------------------------------------------------------------
    home: Path = Field(
        default=Path("./.goat"),
        description="all data: `pg/` (embedded PostgreSQL), `dagster/` (DAGSTER_HOME), `lake/results`, "
        "`lake/runs`, `lake/summaries`, `lake/traces`, `warehouse.duckdb`, `models/`, `logs/` (goat serve, "
        "its workers, the proxy), `runs/` (harness journals), `traces/` (trace sink), `endpoints/`",
        json_schema_extra={**_group("core"), "shown_default": "`./.goat`"},
    )
    project_dir: Path | None = Field(
        default=None,
        description="where `dagster.yaml`, `workspace.yaml`, `models.yaml` live",
        json_schema_extra={**_group("core"), "shown_default": "this checkout"},
    )
    models_file: Path | None = Field(
        default=None,
        description="the model registry",
        json_schema_extra={**_group("core"), "shown_default": "`./models.yaml`"},
    )
    suites_dir: Path | None = Field(
        default=None,
        description="benchmark suites",
        json_schema_extra={**_group("core"), "shown_default": "`./suites`"},
    )
    prompts_dir: Path | None = Field(
        default=None,
        description="prompt sets of the builtin agent (one directory each: `system.md`, `task.md`, "
        "`tools.yaml`)",
        json_schema_extra={**_group("core"), "shown_default": "`./prompts`"},
    )
    dagster_pg_url: str | None = Field(
        default=None,
        alias="DAGSTER_PG_URL",
        description="use an external PostgreSQL for the Dagster instance instead "
        "(`postgresql+psycopg2://user:pass@host:5432/db`; a bare `postgresql://` is rewritten to name "
        "psycopg2)",
        json_schema_extra={**_group("core"), "shown_default": "embedded"},
    )
    debug: bool = Field(
        default=False,
        description="`1`: `goat` shows the traceback of an error instead of one line",
        json_schema_extra=_group("core"),
    )

    # -- goat serve ----------------------------------------------------------------------------
    serve_host: str = Field(
        default="127.0.0.1",
        description="where `goat serve` listens (the CLI, the `serving` resource and `goat run` all read it)",
        json_schema_extra=_group("core"),
    )
    serve_port: int = Field(
        default=8100,
        ge=0,
        le=65535,
        description="its port; 0 = any free port",
        json_schema_extra=_group("core"),
    )
    serve_budget_mb: int | None = Field(
        default=None,
        ge=1,
        description="memory `goat serve` may give loaded models",
        json_schema_extra={**_group("core"), "shown_default": "half the RAM"},
    )
    serve_margin_mb: int | None = Field(
        default=None,
        ge=0,
        description="head-room kept free within the budget",
        json_schema_extra={**_group("core"), "shown_default": "256 (at most a quarter of the budget)"},
    )
    serve_draft_tokens: int = Field(
        default=32,
        ge=0,
        le=64,
        description="tokens a local worker drafts from the context and verifies in one pass "
        "(prompt-lookup speculative decoding: the same tokens, fewer passes); 0 = off",
        json_schema_extra=_group("core"),
    )

    # -- the LiteLLM proxy ----------------------------------------------------------------------
    litellm_mode: Literal["managed", "external"] | None = Field(
        default=None,
        description="`managed`: goat runs the proxy on this machine; `external`: the proxy at "
        "`GOAT_LITELLM_URL` (see [Routing and traces](#routing-and-traces-litellm))",
        json_schema_extra={
            **_group("core"),
            "shown_default": "`external` when `GOAT_LITELLM_URL` is set, else `managed`",
        },
    )
    litellm_host: str = Field(
        default="127.0.0.1", description="interface the managed proxy binds", json_schema_extra=_group("core")
    )
    litellm_port: int = Field(
        default=4000,
        ge=1,
        le=65535,
        description="port of the managed proxy",
        json_schema_extra=_group("core"),
    )
    litellm_url: str | None = Field(
        default=None,
        description="an external proxy, e.g. the one on Modal (`goat doctor` calls it; the Modal "
        "proxy's URL to check that one); setting it makes the proxy external",
        json_schema_extra={**_group("core"), "shown_default": "unset: the managed proxy"},
    )
    litellm_master_key: SecretStr | None = Field(
        default=None,
        alias="LITELLM_MASTER_KEY",
        description="the proxy's master key (managed: generated into `$GOAT_HOME/litellm/master_key` "
        "when unset); host-side only, never given to a sandbox",
        json_schema_extra={**_group("core"), "shown_default": "generated"},
    )
    proxy_restart_wait_s: float = Field(
        default=3600.0,
        gt=0,
        description="how long a proxy restart for a new config waits for running benchmarks to finish "
        "their calls",
        json_schema_extra=_group("core"),
    )
    litellm_config_file: Path | None = Field(
        default=None,
        description="the LiteLLM config `modal_proxy` deploys",
        json_schema_extra={**_group("modal"), "shown_default": "`$GOAT_HOME/litellm/config.yaml`"},
    )

    # -- the benchmark harness ----------------------------------------------------------------
    suite: str = Field(
        default="smoke",
        description="the suite the benchmark assets run and `benchmark_suite_sensor` watches",
        json_schema_extra=_group("core"),
    )
    prompts: str = Field(
        default="builtin",
        description="the prompt set the builtin agent uses and `agent_prompts_sensor` watches: a name "
        "under `GOAT_PROMPTS_DIR` or a path to a directory",
        json_schema_extra=_group("core"),
    )
    llm_base_url: str | None = Field(
        default=None,
        description="an explicit OpenAI-compatible gateway for `goat run` (otherwise the managed or "
        "external proxy and its master key, host-side only)",
        json_schema_extra={**_group("core"), "shown_default": "the LiteLLM proxy"},
    )
    llm_api_key: SecretStr | None = Field(
        default=None,
        description="the key for `GOAT_LLM_BASE_URL`",
        json_schema_extra={**_group("core"), "shown_default": "`sk-goat-local`"},
    )
    llm_agent_key: SecretStr | None = Field(
        default=None,
        description="the key a `command:` agent in a cloud sandbox gets",
        json_schema_extra={**_group("core"), "shown_default": "a scoped proxy key, minted"},
    )
    sandbox_backend: Literal["local", "modal"] = Field(
        default="local",
        description="where the `benchmark_results` asset runs tasks (`goat run --sandbox` for the CLI)",
        json_schema_extra=_group("core"),
    )
    sandbox_bwrap: bool = Field(
        default=True,
        description="`0` runs the local sandbox without bubblewrap, on purpose (weaker; a warning says "
        "how; never as root). Unset, a missing bubblewrap is an error",
        json_schema_extra={**_group("core"), "shown_default": "on"},
    )

    view_url: str = Field(
        default="http://127.0.0.1:8200",
        description="where `goat view` is reached: the base of the links in Dagster metadata and of "
        "the URL `goat demo` prints (set it when the viewer runs on another host or port, or behind "
        "a proxy)",
        json_schema_extra=_group("core"),
    )

    # -- the run queue: which waiting run starts first (higher first; Dagster's default is 0) -----
    priority_model_change: int = Field(
        default=10,
        description="`dagster/priority` of the runs `model_registry_sensor` requests for a new or "
        "changed model",
        json_schema_extra=_group("core"),
    )
    priority_suite_change: int = Field(
        default=5,
        description="`dagster/priority` of the runs `benchmark_suite_sensor` requests when the suite changes",
        json_schema_extra=_group("core"),
    )
    priority_backfill: int = Field(
        default=-5,
        description="`dagster/priority` of each run of a backfill launched without one (runs launched "
        "one at a time keep Dagster's 0)",
        json_schema_extra=_group("core"),
    )

    # -- traces ---------------------------------------------------------------------------------
    trace_io: bool = Field(
        default=True,
        description="`0`: the trace sink records no input/output of calls",
        json_schema_extra={**_group("core"), "shown_default": "on"},
    )
    trace_io_max_chars: int = Field(
        default=4000,
        ge=0,
        description="characters of input/output kept per call in the trace sink",
        json_schema_extra=_group("core"),
    )
    langfuse_public_key: str | None = Field(
        default=None,
        alias="LANGFUSE_PUBLIC_KEY",
        description="with the next two: send traces to Langfuse too, and read them back from there",
        json_schema_extra={**_group("core"), "shown_default": "unset"},
    )
    langfuse_secret_key: SecretStr | None = Field(
        default=None,
        alias="LANGFUSE_SECRET_KEY",
        description="Langfuse secret key",
        json_schema_extra={**_group("core"), "shown_default": "unset"},
    )
    langfuse_host: str | None = Field(
        default=None,
        alias="LANGFUSE_HOST",
        description="Langfuse host, e.g. `https://cloud.langfuse.com`",
        json_schema_extra={**_group("core"), "shown_default": "unset"},
    )

    # -- Modal ----------------------------------------------------------------------------------
    modal_environment: str = Field(
        default="goat",
        description="Modal environment everything is created in",
        json_schema_extra=_group("modal"),
    )
    vllm_api_key: SecretStr | None = Field(
        default=None,
        alias="VLLM_API_KEY",
        description="the bearer token the `goat-vllm-*` apps require on `/v1` (the value `goat setup` "
        "stores in the `goat-vllm` secret); `serving_endpoint`, its check and the proxy config use it",
        json_schema_extra={**_group("modal"), "shown_default": "unset"},
    )
    model: str | None = Field(
        default=None,
        description="model key for `modal deploy/run -m goat_dagster.serving.modal_vllm` / `modal_gpt_oss`",
        json_schema_extra=_group("modal"),
    )
    modal_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="limit for quick Modal API calls (lookups)",
        json_schema_extra=_group("modal"),
    )
    doctor_trace_wait_s: float = Field(
        default=15.0,
        ge=0,
        description="how long `goat doctor` waits for its call's trace",
        json_schema_extra=_group("modal"),
    )
    langfuse_on_modal: bool = Field(
        default=False,
        description="`1`: `goat setup` runs Langfuse on Modal (app `goat-langfuse`): it generates the "
        "keys, deploys, and writes the URL to `LANGFUSE_HOST` in the env file and the `goat-langfuse` "
        "secret (`goat setup` reads this from the env file too); `goat doctor` then checks the app",
        json_schema_extra={**_group("modal"), "shown_default": "off"},
    )

    @field_validator("view_url")
    @classmethod
    def _http_base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    # -- derived --------------------------------------------------------------------------------

    @property
    def litellm_external(self) -> bool:
        """The proxy is external: GOAT_LITELLM_MODE=external, or GOAT_LITELLM_URL set without a mode."""
        return (self.litellm_mode or ("external" if self.litellm_url else "managed")) == "external"

    @property
    def langfuse_configured(self) -> bool:
        return bool(self.langfuse_public_key and self.langfuse_secret_key and self.langfuse_host)

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable of a field (`serve_port` -> `GOAT_SERVE_PORT`)."""
        info = cls.model_fields[field]
        return info.alias or f"{ENV_PREFIX}{field.upper()}"


def _env_names() -> tuple[str, ...]:
    return tuple(GoatSettings.env_name(f) for f in GoatSettings.model_fields)


ENV_NAMES = _env_names()


def settings() -> GoatSettings:
    """The settings as the environment holds them now; `ConfigError` names a variable that is invalid."""
    return _settings_for(tuple((name, os.environ.get(name)) for name in ENV_NAMES))


@functools.lru_cache(maxsize=16)
def _settings_for(values: tuple[tuple[str, str | None], ...]) -> GoatSettings:
    try:
        return GoatSettings()
    except ValidationError as exc:
        problems = []
        for e in exc.errors(include_url=False):
            field = str(e["loc"][0]) if e["loc"] else ""
            name = GoatSettings.env_name(field) if field in GoatSettings.model_fields else field
            problems.append(f"{name}={os.environ.get(name, '')!r}: {e['msg']}")
        raise ConfigError("invalid environment: " + "; ".join(problems)) from None


def settings_table(group: str) -> str:
    """The README's table of the environment variables of `group` (core | modal)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in GoatSettings.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("group") != group:
            continue
        shown = extra.get("shown_default")
        if shown is None:
            shown = f"`{info.default}`" if info.default not in (None, "") else "\N{EN DASH}"
            if isinstance(info.default, bool):
                shown = "on" if info.default else "off"
        rows.append(f"| `{GoatSettings.env_name(name)}` | {shown} | {info.description} |")
    return "\n".join(rows)


# ---- paths --------------------------------------------------------------------------------------


def project_dir() -> Path:
    """The directory holding models.yaml, dagster.yaml and suites/.

    `GOAT_PROJECT_DIR` wins; otherwise the checkout this package was installed from (editable
    install), otherwise the current directory.
    """
    configured = settings().project_dir
    if configured:
        return configured.expanduser().resolve()
    checkout = PACKAGE_DIR.parent
    if (checkout / "dagster.yaml").is_file() and (checkout / "models.yaml").is_file():
        return checkout
    return Path.cwd().resolve()


def goat_home() -> Path:
    return settings().home.expanduser().resolve()


def models_file() -> Path:
    configured = settings().models_file
    return configured.expanduser().resolve() if configured else project_dir() / "models.yaml"


def suites_dir() -> Path:
    configured = settings().suites_dir
    return configured.expanduser().resolve() if configured else project_dir() / "suites"


def prompts_dir() -> Path:
    configured = settings().prompts_dir
    return configured.expanduser().resolve() if configured else project_dir() / "prompts"


@dataclass(frozen=True)
class GoatPaths:
    """The layout of `GOAT_HOME` (DESIGN §7)."""

    home: Path

    @property
    def pg(self) -> Path:
        return self.home / "pg"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def lake_results(self) -> Path:
        return self.lake / "results"

    @property
    def lake_traces(self) -> Path:
        return self.lake / "traces"

    @property
    def lake_runs(self) -> Path:
        """One manifest per run: what produced its results (bench/manifest.py)."""
        return self.lake / "runs"

    @property
    def lake_summaries(self) -> Path:
        """One per results file: its per-task rollup, what the analysis reads (analysis/summaries.py)."""
        return self.lake / "summaries"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def traces(self) -> Path:
        """The local trace sink's JSONL files (written by the LiteLLM callback)."""
        return self.home / "traces"

    @property
    def runs(self) -> Path:
        """Per-run journals of the benchmark harness."""
        return self.home / "runs"

    @property
    def serve(self) -> Path:
        """State of the detached `goat serve` control plane (pid, port, log)."""
        return self.home / "serve"

    @property
    def litellm(self) -> Path:
        """State of the managed LiteLLM proxy (config, pid, log)."""
        return self.home / "litellm"

    @property
    def endpoints(self) -> Path:
        """One record per model endpoint (`serving_endpoint` writes them, routing reads them)."""
        return self.home / "endpoints"

    def ensure(self) -> GoatPaths:
        for d in (
            self.home,
            self.lake_results,
            self.lake_traces,
            self.lake_runs,
            self.lake_summaries,
            self.models,
            self.logs,
            self.traces,
            self.runs,
            self.dagster_home,
        ):
            d.mkdir(parents=True, exist_ok=True)
        return self


def paths() -> GoatPaths:
    return GoatPaths(goat_home())


def export_environment() -> GoatPaths:
    """Pin GOAT_HOME / GOAT_PROJECT_DIR to absolute paths for every child process."""
    p = paths()
    os.environ[GoatSettings.env_name("home")] = str(p.home)
    os.environ.setdefault(GoatSettings.env_name("project_dir"), str(project_dir()))
    return p
