"""The sandbox backends by name: `make_pool("local" | "modal", options)`, and what each runs task
code on (`sandbox_image`, for a run's manifest)."""

from __future__ import annotations

from goat_dagster.bench.bwrap import describe_host_image
from goat_dagster.bench.local_sandbox import LocalSandboxPool
from goat_dagster.bench.modal_sandbox import DEFAULT_PYTHON, ModalSandboxPool
from goat_dagster.bench.sandbox import PoolOptions, SandboxPool

BACKENDS = ("local", "modal")


def make_pool(kind: str, options: PoolOptions) -> SandboxPool:
    if kind == "local":
        return LocalSandboxPool(options)
    if kind == "modal":
        return ModalSandboxPool(options)
    raise ValueError(f"unknown sandbox {kind!r}; expected {' or '.join(BACKENDS)}")


def sandbox_image(kind: str, image: str | None = None) -> str:
    """What task code of a run runs on (tasks naming their own image say so in the suite, whose
    version the manifest holds): the local host's isolation, Python and OS, or the Modal image."""
    if kind == "local":
        return f"local: {describe_host_image()}"
    if kind == "modal":
        return f"modal: {image or f'debian_slim (Python {DEFAULT_PYTHON})'}"
    raise ValueError(f"unknown sandbox {kind!r}; expected {' or '.join(BACKENDS)}")
