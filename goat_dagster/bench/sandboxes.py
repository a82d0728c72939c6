"""The sandbox backends by name: `make_pool("local" | "modal", options)`."""

from __future__ import annotations

from goat_dagster.bench.local_sandbox import LocalSandboxPool
from goat_dagster.bench.modal_sandbox import ModalSandboxPool
from goat_dagster.bench.sandbox import PoolOptions, SandboxPool

BACKENDS = ("local", "modal")


def make_pool(kind: str, options: PoolOptions) -> SandboxPool:
    if kind == "local":
        return LocalSandboxPool(options)
    if kind == "modal":
        return ModalSandboxPool(options)
    raise ValueError(f"unknown sandbox {kind!r}; expected {' or '.join(BACKENDS)}")
