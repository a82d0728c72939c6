"""One `ModelInstance` per local registry model: its worker (if any), its state, what it is charged
in memory, its queue and its history (loads, crashes, evictions), as `/status` shows it; and the
`Lease` a request holds on it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from goat_dagster.registry import ModelEntry
from goat_dagster.serving.local.engine import WorkerSpec
from goat_dagster.serving.local.memory import MemoryEstimate
from goat_dagster.serving.local.worker import Worker


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


@dataclass
class ModelInstance:
    entry: ModelEntry
    gate: asyncio.Lock = field(default_factory=asyncio.Lock)  # FIFO: one request at a time
    state: str = "stopped"  # stopped | loading | ready | crashed | failed | stopping
    worker: Worker | None = None
    client: aiohttp.ClientSession | None = None
    spec: WorkerSpec | None = None
    estimate: MemoryEstimate | None = None
    rss_mb: float | None = None
    peak_rss_mb: float | None = None
    last_used: float = 0.0
    in_flight: int = 0
    queued: int = 0
    loads: int = 0
    load_s: float | None = None
    crashes: int = 0
    last_crash: dict[str, Any] | None = None
    last_error: str | None = None
    evictions: int = 0
    requests: int = 0
    stale: bool = False  # models.yaml changed under a running worker: restart it when idle

    @property
    def name(self) -> str:
        return self.entry.served_model

    @property
    def estimated_mb(self) -> float | None:
        return self.estimate.total_mb if self.estimate else None

    @property
    def charged_mb(self) -> float:
        if self.worker is None or self.estimate is None:
            return 0.0
        if self.state == "ready" and self.rss_mb is not None:
            return max(self.estimate.total_mb, self.rss_mb)
        return self.estimate.total_mb

    @property
    def busy(self) -> bool:
        return self.in_flight > 0 or self.state in ("loading", "stopping")

    def status(self) -> dict[str, Any]:
        w = self.worker
        return {
            "model": self.name,
            "key": self.entry.key,
            "state": self.state,
            "pid": w.pid if w else None,
            "port": w.port if w else None,
            "rss_mb": round(self.rss_mb, 1) if self.rss_mb is not None else None,
            "peak_rss_mb": round(self.peak_rss_mb, 1) if self.peak_rss_mb is not None else None,
            "estimated_mb": round(self.estimated_mb, 1) if self.estimated_mb is not None else None,
            "estimate": self.estimate.explain() if self.estimate else None,
            "charged_mb": round(self.charged_mb, 1),
            "n_ctx": self.spec.n_ctx if self.spec else None,
            "last_used": iso(self.last_used),
            "in_flight": self.in_flight,
            "queued": self.queued,
            "requests": self.requests,
            "loads": self.loads,
            "load_s": round(self.load_s, 3) if self.load_s is not None else None,
            "evictions": self.evictions,
            "crashes": self.crashes,
            "last_crash": self.last_crash,
            "last_error": self.last_error,
            "log": str(w.log_path) if w else None,
        }


class Lease:
    """A request's hold on an instance's worker; `release()` is idempotent and tells the manager
    (`on_release`), which wakes whoever waits for the worker or for memory."""

    def __init__(self, inst: ModelInstance, on_release: Callable[[Lease], None]):
        self.inst = inst
        self.on_release = on_release
        self.released = False
        self.threads_hold: int | None = None  # its hold on the thread budget, once granted

    @property
    def client(self) -> aiohttp.ClientSession:
        assert self.inst.client is not None
        return self.inst.client

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        inst = self.inst
        inst.in_flight -= 1
        inst.last_used = time.time()
        inst.gate.release()
        self.on_release(self)
