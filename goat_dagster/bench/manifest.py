"""A run's manifest: what produced its results, recorded with them (`RunManifest`).

`describe_run` makes it when a run starts; `settle_manifest` writes it to the journal
(`runs/<run_id>/manifest.json`), and a resumed run must match what it was started with;
`write_manifest` puts it in the lake beside the results (`lake/runs/<run_id>.parquet`, one row: the
warehouse's `runs` view); the `benchmark_results` asset shows it in its metadata.

Its fields fall in three kinds (`differences` compares two manifests by them):

- SETUP: what the harness did with a model — the suite's version, the agent and its prompt set,
  the harness and grader versions, the sampling settings, the limits, the tasks, the sandbox and its
  image, the LiteLLM version. Two runs that differ here are not comparable, whichever models.
  (Epochs are recorded, not compared: more epochs estimate the same pass rate more precisely.)
- MODEL: what served the model — weights revision and sha256, engine, its version and build. They
  differ between two models by nature; between two runs of one model they are a difference.
- the rest says where a run comes from and decides nothing: run id, time, goat's version and
  commit, the gateway, the prompt set's name, notes.

`HARNESS_VERSION` and `GRADER_VERSION` are bumped by hand, by whoever changes what could change a
result: the runner, the task runner, the agents and their tools, the sandboxes (harness); how a
check's outcome becomes passed or failed (grader). They are part of `benchmark_results`' code
version, so Dagster shows every partition stale after such a change.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import json
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from goat_dagster import atomic, config
from goat_dagster.bench.agent import Agent
from goat_dagster.bench.journal import RunError, RunSpec
from goat_dagster.bench.lake import RunIdentity, read_lake_rows, write_lake_file
from goat_dagster.bench.llm_client import TOOL_CHOICE
from goat_dagster.bench.prompts import PROMPT_FILES, PromptError, PromptSet, load_prompt_set, prompt_set_dir
from goat_dagster.bench.sandbox import SandboxLimits
from goat_dagster.bench.usage import AgentLimits
from goat_dagster.registry import ModelEntry
from goat_dagster.routing.config import LOCAL_DEFAULTS, request_defaults
from goat_dagster.routing.gateway import Gateway
from goat_dagster.routing.proxy import proxy_version
from goat_dagster.serving.backend import Provenance
from goat_dagster.tabular import Json, duckdb_columns

HARNESS_VERSION = "1"
GRADER_VERSION = "1"

SETUP_FIELDS = (
    "suite",
    "suite_version",
    "agent",
    "prompt_sha256",
    "harness_version",
    "grader_version",
    "sampling",
    "limits",
    "task_ids",
    "sandbox",
    "sandbox_image",
    "litellm_version",
)
MODEL_FIELDS = ("weights_revision", "weights_sha256", "engine", "engine_version", "engine_build")
MANIFEST_FILE = "manifest.json"


class RunManifest(RunIdentity):
    """One run's manifest (see the module docstring); one row of the `runs` lake."""

    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    epochs: int
    task_ids: list[str] | None = None
    prompt_set: str | None = Field(default=None, description="name or directory (the builtin agent's)")
    prompt_sha256: str | None = Field(default=None, description="content hash of the prompt set")
    harness_version: str = HARNESS_VERSION
    grader_version: str = GRADER_VERSION
    goat_version: str = ""
    goat_commit: str | None = Field(default=None, description="git HEAD of the project (+dirty)")
    weights_revision: str | None = None
    weights_sha256: str | None = None
    engine: str | None = None
    engine_version: str | None = None
    engine_build: Json = Field(default_factory=dict)
    litellm_version: str | None = Field(default=None, description="as the gateway's proxy reports it")
    gateway: str | None = None
    sampling: Json = Field(default_factory=dict, description="request parameters of every model call")
    limits: Json = Field(default_factory=dict, description="per attempt (agent) and per command (sandbox)")
    sandbox_image: str = ""
    fingerprint: str = Field(default="", description="sha256 of the SETUP and MODEL fields")
    notes: list[str] = Field(default_factory=list)

    @field_validator("engine_build", "sampling", "limits", mode="before")
    @classmethod
    def _json_text(cls, v: Any) -> Any:
        """A mapping read back from the lake comes as JSON text."""
        return json.loads(v) if isinstance(v, str) else ({} if v is None else v)

    def compared(self) -> dict[str, Any]:
        return self.model_dump(mode="json", include={*SETUP_FIELDS, *MODEL_FIELDS})

    def with_fingerprint(self) -> RunManifest:
        digest = hashlib.sha256(json.dumps(self.compared(), sort_keys=True).encode()).hexdigest()
        return self.model_copy(update={"fingerprint": digest})


MANIFEST_TYPES: dict[str, str] = duckdb_columns(RunManifest)


@dataclass(frozen=True)
class Difference:
    """One field (a key of a mapping field: `sampling.temperature`) on which two runs differ."""

    field: str
    a: Any
    b: Any

    def __str__(self) -> str:
        return f"{self.field}: {_show(self.a)} vs {_show(self.b)}"


def _show(v: Any) -> str:
    text = "(none)" if v is None else json.dumps(v) if isinstance(v, dict | list) else str(v)
    return text if len(text) <= 80 else text[:77] + "..."


def flat_fields(m: RunManifest, fields: tuple[str, ...]) -> dict[str, Any]:
    """The fields, mappings spread key by key (`sampling.temperature`, `limits.agent.max_steps`)."""
    out: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                put(f"{name}.{k}", v)
        else:
            out[name] = value

    data = m.compared()
    for name in fields:
        put(name, data.get(name))
    return out


def differences(a: RunManifest, b: RunManifest, *, same_model: bool | None = None) -> list[Difference]:
    """The fields on which two runs differ: SETUP always, MODEL when both ran the same model (by
    default: when their model keys are equal), mappings key by key."""
    same = a.model == b.model if same_model is None else same_model
    fields = (*SETUP_FIELDS, *(MODEL_FIELDS if same else ()))
    fa, fb = flat_fields(a, fields), flat_fields(b, fields)
    return [Difference(k, fa.get(k), fb.get(k)) for k in _ordered(fa, fb) if fa.get(k) != fb.get(k)]


def _ordered(*maps: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(k for m in maps for k in m))


def disagreements(manifests: dict[str, RunManifest]) -> dict[str, dict[str, Any]]:
    """For runs ranked together (label -> manifest): each SETUP field they do not all agree on,
    with every run's value (field -> label -> value)."""
    flat = {label: flat_fields(m, SETUP_FIELDS) for label, m in manifests.items()}
    keys = _ordered(*flat.values())
    return {
        k: {label: f.get(k) for label, f in flat.items()}
        for k in keys
        if len({json.dumps(f.get(k), sort_keys=True) for f in flat.values()}) > 1
    }


@dataclass(frozen=True)
class CurrentSetup:
    """What a run made now would be: the prompt set GOAT_PROMPTS names (None, with the problem,
    when its files are broken) and this code's harness and grader versions. The leaderboard
    chooses each model's latest run among the runs made with it."""

    prompt_sha256: str | None
    harness_version: str | None = HARNESS_VERSION
    grader_version: str | None = GRADER_VERSION
    problem: str = ""


def current_setup() -> CurrentSetup:
    """The setup now. The prompt set is validated again only when its files' bytes changed: every
    leaderboard asks, and reading three small files is cheaper than validating them (10-15 ms)."""
    name, path = prompt_set_dir()
    try:
        return CurrentSetup(_prompt_sha256(name, path, _prompt_files(path)))
    except PromptError as exc:
        return CurrentSetup(None, problem=str(exc))


@functools.lru_cache(maxsize=8)
def _prompt_sha256(name: str, path: Path, files: tuple[bytes | None, ...]) -> str:
    """The prompt set's content hash; `path` and `files` (its files' bytes now: `_prompt_files`)
    only key the cache. A broken set raises, and is not cached."""
    return load_prompt_set(name).sha256


def _prompt_files(path: Path) -> tuple[bytes | None, ...]:
    out: list[bytes | None] = []
    for name in PROMPT_FILES:
        try:
            out.append((path / name).read_bytes())
        except OSError:
            out.append(None)
    return tuple(out)


# ---- making one ------------------------------------------------------------------------------------


def describe_run(
    spec: RunSpec,
    *,
    agent: Agent,
    entry: ModelEntry,
    prompts: PromptSet | None,
    gateway: Gateway | None,
    provenance: Provenance | None,
    limits: AgentLimits,
    sandbox_limits: SandboxLimits,
    sandbox_image: str,
) -> RunManifest:
    """The manifest of a run about to work: `provenance` is what serves the model (None when the
    agent calls no model), `gateway` where the agent's calls go."""
    notes: list[str] = []
    litellm = (
        proxy_version(gateway.base_url, gateway.api_key.get_secret_value()) if gateway is not None else None
    )
    sampling: dict[str, Any] = {}
    if gateway is not None:
        if gateway.via_proxy:
            sampling.update(request_defaults(entry))
        else:
            notes.append(f"sampling: {gateway.base_url} is not goat's proxy; its own defaults apply")
        sampling.update(agent.request_params(limits))
        if litellm is None:
            notes.append(f"litellm_version: no LiteLLM proxy answers at {gateway.base_url}")
    if provenance is not None and provenance.note:
        notes.append(f"model: {provenance.note}")
    served = provenance or Provenance(engine="")
    return RunManifest(
        **spec.model_dump(include={*RunIdentity.model_fields, "epochs", "task_ids"}),
        prompt_set=prompts.name if prompts is not None else None,
        prompt_sha256=prompts.sha256 if prompts is not None else None,
        goat_version=_goat_version(),
        goat_commit=_goat_commit(),
        weights_revision=served.weights_revision,
        weights_sha256=served.weights_sha256,
        engine=served.engine or None,
        engine_version=served.engine_version,
        engine_build=served.engine_build,
        litellm_version=litellm,
        gateway=gateway.base_url if gateway is not None else None,
        sampling=sampling,
        limits={"agent": _fields(limits), "sandbox": _fields(sandbox_limits)},
        sandbox_image=sandbox_image,
        notes=notes,
    ).with_fingerprint()


def _fields(obj: Any) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in obj.__dataclass_fields__}


def _goat_version() -> str:
    try:
        return md.version("goat-dagster")
    except md.PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=4)
def _commit_of(project: Path) -> str | None:
    try:
        head = subprocess.run(
            ["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(project), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _goat_commit() -> str | None:
    """The project checkout's commit (with `+dirty` when tracked files are changed), if it is one."""
    return _commit_of(config.project_dir())


def benchmark_code_version(run_defaults: dict[str, Any]) -> str:
    """The code version of `benchmark_results`: the harness and grader versions, and a hash of the
    defaults a run takes when its config says nothing (`run_defaults`: the asset's agent, epochs and
    limits; every other limit's default; the request defaults goat's proxy and client add). Code
    changes any of them; the prompt set is versioned apart (the `agent_prompts` asset)."""
    doc = {
        "run": run_defaults,
        "agent_limits": _fields(AgentLimits()),
        "sandbox_limits": _fields(SandboxLimits()),
        "request_defaults": LOCAL_DEFAULTS,
        "tool_choice": TOOL_CHOICE,
    }
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return f"harness-{HARNESS_VERSION}.grader-{GRADER_VERSION}.{digest[:10]}"


# ---- where it is kept ---------------------------------------------------------------------------


def manifest_path(run_id: str) -> Path:
    return config.paths().runs / run_id / MANIFEST_FILE


def read_manifest(run_id: str) -> RunManifest | None:
    """A run's manifest from its journal, else from the lake (None: a run from before manifests,
    or no such run)."""
    path = manifest_path(run_id)
    if path.exists():
        return RunManifest.model_validate_json(path.read_text())
    rows = read_lake_rows(runs_lake_file(run_id))
    return RunManifest.model_validate(rows[0]) if rows else None


def settle_manifest(journal_dir: Path, manifest: RunManifest) -> RunManifest:
    """Record the manifest of a run starting in `journal_dir`; a resumed run keeps the one it
    started with and must agree with it on every SETUP and MODEL field, or it is refused (its rows
    would come from two different setups)."""
    path = journal_dir / MANIFEST_FILE
    if path.exists():
        started = RunManifest.model_validate_json(path.read_text())
        diffs = differences(started, manifest, same_model=True)
        if diffs:
            shown = "; ".join(str(d) for d in diffs[:8]) + ("; ..." if len(diffs) > 8 else "")
            raise RunError(
                f"run {manifest.run_id!r} was started with another setup ({shown}); "
                "its rows would not be comparable: use a new --run-id"
            )
        return started
    atomic.write_text(path, manifest.model_dump_json(indent=2))
    return manifest


def runs_lake_file(run_id: str) -> Path:
    return config.paths().lake_runs / f"{run_id}.parquet"


def write_manifest(manifest: RunManifest) -> Path:
    """The manifest into the lake, beside its results (one Parquet file per run, like them)."""
    return write_lake_file(runs_lake_file(manifest.run_id), [manifest], MANIFEST_TYPES)
