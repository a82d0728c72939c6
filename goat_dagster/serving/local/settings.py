"""Settings of the `goat serve` control plane (CLI flags, the Dagster resource and the detached
start all build one of these), and the record of the running one."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from goat_dagster import config
from goat_dagster.serving.daemon import StateFile
from goat_dagster.serving.local.memory import DEFAULT_MARGIN_MB, default_budget_mb
from goat_dagster.serving.local.threads import usable_cores

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8100
# what the environment may set (GoatSettings fields), for every way of starting or finding goat serve
ENV = {
    "host": "serve_host",
    "port": "serve_port",
    "budget_mb": "serve_budget_mb",
    "margin_mb": "serve_margin_mb",
}


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535, description="0 = any free port")
    budget_mb: int | None = Field(
        default=None, ge=1, description="memory for loaded models; default half the RAM"
    )
    margin_mb: int | None = Field(default=None, ge=0, description="head-room kept free within the budget")
    max_queue: int = Field(default=16, ge=0, description="requests waiting per model before 429")
    request_timeout_s: float = Field(default=600.0, gt=0, description="queue wait + load + generation")
    cores: int | None = Field(
        default=None, ge=1, description="cores busy workers may use at once; default the CPUs it may run on"
    )
    load_timeout_s: float = Field(default=300.0, gt=0, description="worker start until the model answers")
    models_dir: str | None = Field(
        default=None, description="a folder whose GGUFs are served too, without a registry entry"
    )

    @classmethod
    def from_env(cls) -> ServeSettings:
        """Defaults, overridden by GOAT_SERVE_HOST / _PORT / _BUDGET_MB / _MARGIN_MB."""
        s = config.settings()
        return cls(**{field: getattr(s, name) for field, name in ENV.items() if getattr(s, name) is not None})

    @property
    def resolved_budget_mb(self) -> int:
        return self.budget_mb if self.budget_mb is not None else default_budget_mb()

    @property
    def resolved_margin_mb(self) -> int:
        if self.margin_mb is not None:
            return self.margin_mb
        return min(DEFAULT_MARGIN_MB, self.resolved_budget_mb // 4)

    @property
    def resolved_cores(self) -> int:
        return self.cores if self.cores is not None else usable_cores()

    @property
    def capacity_mb(self) -> int:
        """What loaded workers may take: budget minus margin."""
        return max(0, self.resolved_budget_mb - self.resolved_margin_mb)

    def cli_args(self) -> list[str]:
        """The `goat serve` flags that reproduce these settings (for a detached start)."""
        args = ["--host", self.host, "--port", str(self.port)]
        if self.budget_mb is not None:
            args += ["--budget-mb", str(self.budget_mb)]
        if self.margin_mb is not None:
            args += ["--margin-mb", str(self.margin_mb)]
        if self.cores is not None:
            args += ["--cores", str(self.cores)]
        args += ["--max-queue", str(self.max_queue), "--timeout-s", f"{self.request_timeout_s:g}"]
        if self.models_dir is not None:
            args += ["--models-dir", self.models_dir]
        return args


def serve_state() -> StateFile:
    """The record of the running control plane of this GOAT_HOME, written by the server itself (pid,
    host, port, budget, the registry it serves); it may be stale: clients check the pid answers."""
    return StateFile(config.paths().serve / "serve.json")
