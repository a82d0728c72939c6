"""The `sandbox` resource: where benchmark tasks run (DESIGN §6) and with which limits."""

from dagster import ConfigurableResource
from pydantic import Field

from goat_dagster.bench.sandbox import SandboxLimits
from goat_dagster.resources.env import env_vars


class SandboxResource(ConfigurableResource):
    """`local` (bubblewrap, no network, rlimits) or `modal` (`modal.Sandbox`, network blocked)."""

    backend: str = Field(default="local", description="local | modal")
    memory_mb: int = Field(
        default=2048, description="address-space limit per process (local), memory (Modal)"
    )
    processes: int = Field(default=256, description="process limit per task")
    file_size_mb: int = Field(default=64, description="largest file a task may write")
    cpus: float = Field(default=1.0, description="Modal: cores requested per sandbox")

    def limits(self) -> SandboxLimits:
        if self.backend not in ("local", "modal"):
            raise ValueError(f"sandbox backend must be local or modal, not {self.backend!r}")
        return SandboxLimits(
            memory_mb=self.memory_mb, processes=self.processes, file_size_mb=self.file_size_mb, cpus=self.cpus
        )


def sandbox_resource_from_env() -> SandboxResource:
    """The resource for `Definitions`: the backend from GOAT_SANDBOX_BACKEND (local | modal) when set."""
    return SandboxResource(**env_vars({"backend": "sandbox_backend"}))
