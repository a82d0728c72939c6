"""The memory budget of the control plane: how much a llama.cpp worker will take, and which idle
workers to evict so a new one fits.

The estimate comes from the GGUF (weights bytes + the KV cache for the configured context + the
attention scratch llama.cpp reserves for a batch) plus the resident cost of a llama-cpp-python
server process. After a load the control plane charges max(estimate, real RSS) and remembers the
RSS it saw, so a model whose estimate was low is charged what it really takes next time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import psutil

from goat_dagster.registry import ModelEntry
from goat_dagster.serving.local.engine import WorkerSpec, worker_spec
from goat_dagster.serving.local.gguf import GGUFInfo, read_gguf_info
from goat_dagster.serving.local.weights import locate_weights

MIB = 1 << 20
RUNTIME_MB = 96.0  # a llama-cpp-python server process before any model (Python, numpy, uvicorn, ggml)
DEFAULT_MARGIN_MB = 256
_CACHE_TYPE_BYTES = {
    None: 2.0,
    0: 4.0,
    1: 2.0,
    8: 1.0625,
    2: 0.5625,
    3: 0.625,
}  # ggml types: f32 f16 q8_0 q4_0 q4_1


@dataclass(frozen=True)
class MemoryEstimate:
    n_ctx: int
    weights_mb: float
    kv_cache_mb: float
    compute_mb: float
    logits_mb: float
    runtime_mb: float

    @property
    def total_mb(self) -> float:
        return self.weights_mb + self.kv_cache_mb + self.compute_mb + self.logits_mb + self.runtime_mb

    def explain(self) -> str:
        parts = [
            f"weights {self.weights_mb:.0f} MB",
            f"KV cache {self.kv_cache_mb:.0f} MB for n_ctx={self.n_ctx}",
            f"compute {self.compute_mb:.0f} MB",
        ]
        if self.logits_mb:
            parts.append(f"logits_all {self.logits_mb:.0f} MB")
        parts.append(f"runtime {self.runtime_mb:.0f} MB")
        return f"~{self.total_mb:.0f} MB (" + " + ".join(parts) + ")"


def estimate_memory(
    info: GGUFInfo,
    weights_bytes: int,
    n_ctx: int,
    *,
    n_ubatch: int = 512,
    logits_all: bool = False,
    type_k: int | None = None,
    type_v: int | None = None,
) -> MemoryEstimate:
    """What one worker serving this GGUF with context `n_ctx` will hold resident."""
    k_bytes = _CACHE_TYPE_BYTES.get(type_k, 2.0)
    v_bytes = _CACHE_TYPE_BYTES.get(type_v, 2.0)
    kv = (
        n_ctx
        * info.block_count
        * info.head_count_kv
        * (info.key_length * k_bytes + info.value_length * v_bytes)
    )
    # attention scores of one micro-batch against the whole context (f32), plus activations
    scratch = n_ctx * min(n_ubatch, n_ctx) * info.head_count * 4 + 0.1 * weights_bytes
    logits = n_ctx * info.vocab_size * 4 if logits_all else 0
    return MemoryEstimate(
        n_ctx=n_ctx,
        weights_mb=weights_bytes / MIB,
        kv_cache_mb=kv / MIB,
        compute_mb=scratch / MIB,
        logits_mb=logits / MIB,
        runtime_mb=RUNTIME_MB,
    )


def plan_worker(
    entry: ModelEntry, observed_mb: Mapping[tuple[str, int], float]
) -> tuple[WorkerSpec, MemoryEstimate]:
    """What a worker for `entry` needs: its spec (engine_args checked) and memory, from its GGUF. A
    peak RSS seen before for the same GGUF and context, when higher, is what is charged."""
    located = locate_weights(entry, download=False)
    gguf = located.gguf
    assert gguf is not None  # locate_weights refuses a local model without one
    spec = worker_spec(entry, gguf)
    est = estimate_memory(
        read_gguf_info(gguf),
        located.gguf_bytes,
        spec.n_ctx,
        n_ubatch=int(spec.settings.get("n_ubatch", 512)),
        logits_all=bool(spec.settings.get("logits_all", False)),
        type_k=spec.settings.get("type_k"),
        type_v=spec.settings.get("type_v"),
    )
    seen = observed_mb.get((spec.model_path, spec.n_ctx))
    if seen and seen > est.total_mb:  # learned from a previous run of this GGUF: charge what it took
        est = replace(est, runtime_mb=est.runtime_mb + (seen - est.total_mb))
    return spec, est


def default_budget_mb() -> int:
    """Half of this machine's RAM: the rest is for the benchmark, sandboxes and the OS."""
    return int(psutil.virtual_memory().total / MIB / 2)


def process_tree_rss_mb(pid: int) -> float | None:
    """Resident memory of a process and its children, in MB (None when it is gone)."""
    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total / MIB
    except psutil.Error:
        return None


@dataclass(frozen=True)
class Resident:
    """A loaded worker as the eviction planner sees it."""

    name: str
    charged_mb: float
    last_used: float
    busy: bool  # a request in flight (or the worker is still loading): never evicted


def plan_eviction(
    residents: Sequence[Resident], need_mb: float, capacity_mb: float
) -> tuple[list[str], bool]:
    """Least-recently-used idle residents to evict so `need_mb` more fits in `capacity_mb`.

    Returns (victims, fits): `fits` is False when even evicting every idle resident is not enough
    right now (busy ones hold the rest); then `victims` is empty and nothing should be evicted.
    """
    used = sum(r.charged_mb for r in residents)
    if used + need_mb <= capacity_mb:
        return [], True
    victims: list[str] = []
    for r in sorted((r for r in residents if not r.busy), key=lambda r: r.last_used):
        victims.append(r.name)
        used -= r.charged_mb
        if used + need_mb <= capacity_mb:
            return victims, True
    return [], False
