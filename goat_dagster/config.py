"""Where goat-dagster keeps things: the project files and the `GOAT_HOME` data directory.

Everything is resolved from environment variables so that the CLI, `dagster dev`, run workers and
the detached servers all agree. `export_environment()` pins the resolved absolute paths into
`os.environ` so child processes started from any working directory see the same ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def project_dir() -> Path:
    """The directory holding models.yaml, dagster.yaml and suites/.

    `GOAT_PROJECT_DIR` wins; otherwise the checkout this package was installed from (editable
    install), otherwise the current directory.
    """
    env = os.environ.get("GOAT_PROJECT_DIR")
    if env:
        return Path(env).expanduser().resolve()
    checkout = PACKAGE_DIR.parent
    if (checkout / "dagster.yaml").is_file() and (checkout / "models.yaml").is_file():
        return checkout
    return Path.cwd().resolve()


def goat_home() -> Path:
    return Path(os.environ.get("GOAT_HOME", "./.goat")).expanduser().resolve()


def models_file() -> Path:
    env = os.environ.get("GOAT_MODELS_FILE")
    return Path(env).expanduser().resolve() if env else project_dir() / "models.yaml"


def suites_dir() -> Path:
    env = os.environ.get("GOAT_SUITES_DIR")
    return Path(env).expanduser().resolve() if env else project_dir() / "suites"


DEFAULT_VIEW_URL = "http://127.0.0.1:8200"


def view_url() -> str:
    """Where `goat view` is reached (`GOAT_VIEW_URL`): the base of the links Dagster metadata and
    `goat demo` print. Set it when the viewer runs on another host, port or behind a proxy."""
    return (os.environ.get("GOAT_VIEW_URL") or DEFAULT_VIEW_URL).rstrip("/")


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

    def ensure(self) -> GoatPaths:
        for d in (
            self.home,
            self.lake_results,
            self.lake_traces,
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
    os.environ["GOAT_HOME"] = str(p.home)
    os.environ.setdefault("GOAT_PROJECT_DIR", str(project_dir()))
    return p
