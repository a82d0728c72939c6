"""The control plane's state: one `ModelInstance` per local registry model, workers started on
demand within the memory budget, least-recently-used idle workers evicted, one request at a time
per worker behind a bounded FIFO queue, crashed workers restarted on the next request.

Everything runs on one asyncio event loop (no locks across threads). Invariants:
- `in_flight` counts requests that hold the instance's gate (including while its worker loads);
  an instance with `in_flight > 0` is never evicted.
- memory is charged for workers that exist (loading: the estimate; ready: max(estimate, RSS)).
- one load at a time (`_load_lock`), so two loads never count on the same free memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import aiohttp

from goat_dagster import config
from goat_dagster.registry import ModelEntry, Registry, RegistryError, load_registry
from goat_dagster.serving.local.engine import EngineArgsError, WorkerSpec
from goat_dagster.serving.local.errors import ServeError
from goat_dagster.serving.local.gguf import GGUFError
from goat_dagster.serving.local.instances import Lease, ModelInstance, iso
from goat_dagster.serving.local.memory import MemoryEstimate, Resident, plan_eviction, plan_worker
from goat_dagster.serving.local.metrics import Metrics
from goat_dagster.serving.local.models_dir import ModelsDir
from goat_dagster.serving.local.settings import ServeSettings
from goat_dagster.serving.local.threads import ThreadBudget
from goat_dagster.serving.local.weights import WeightsError
from goat_dagster.serving.local.worker import Worker, WorkerStartError

log = logging.getLogger("goat.serve")


class ModelManager:
    def __init__(self, settings: ServeSettings, state_dir: Path, metrics: Metrics | None = None):
        self.settings = settings
        self.models_dir = ModelsDir(settings.models_dir) if settings.models_dir else None
        self.state_dir = state_dir
        self.metrics = metrics or Metrics()
        self.instances: dict[str, ModelInstance] = {}
        self._registry: Registry | None = None
        self._registry_stamp: tuple[int, int] | None = None
        self._registry_error: str | None = None
        self._load_lock = asyncio.Lock()
        self._waiters: set[asyncio.Future[None]] = set()
        self._observed_mb: dict[tuple[str, int], float] = {}  # (gguf path, n_ctx) -> peak RSS seen
        self._over_capacity = False  # the monitor warns once when RSS takes workers past capacity
        self._monitor: asyncio.Task[None] | None = None
        self.evictions = 0
        self.threads = ThreadBudget(settings.resolved_cores)
        self.started_at = time.time()
        self.metrics.budget_mb.set(settings.resolved_budget_mb)
        self.metrics.margin_mb.set(settings.resolved_margin_mb)

    # ---- registry ------------------------------------------------------------------------

    def registry(self) -> Registry:
        """models.yaml, re-read when the file changed (an invalid edit keeps the last good one)."""

        path = config.models_file()
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp is None and self.models_dir is not None:  # serving a folder, no registry
            return Registry(models={}, source=str(path))
        if self._registry is None or stamp != self._registry_stamp:
            try:
                self._registry = load_registry(path)
                self._registry_error = None
            except RegistryError as exc:
                self._registry_error = str(exc)
                log.error("models.yaml is invalid; keeping the last good registry:\n%s", exc)
                if self._registry is None:
                    raise ServeError(500, "registry_error", str(exc)) from None
            self._registry_stamp = stamp
        return self._registry

    def local_models(self) -> list[ModelEntry]:
        """The registry's local models, then the GGUFs of --models-dir (a registry name wins)."""
        local = [m for m in self.registry().models.values() if m.provider == "local"]
        if self.models_dir is not None:
            taken = {m.key for m in local} | {m.served_model for m in local}
            local += [m for m in self.models_dir.entries() if m.key not in taken]
        return local

    def resolve(self, name: str) -> ModelEntry:
        if not isinstance(name, str) or not name:
            raise ServeError(400, "invalid_request_error", "the request needs a 'model' (a local model id)")
        local = self.local_models()
        for m in local:
            if name == m.served_model:
                return m
        try:
            entry = self.registry().get(name)
        except KeyError:
            entry = None
        if entry is None or entry.provider != "local":
            known = ", ".join(sorted(m.served_model for m in local)) or "(none)"
            why = f" (it is a {entry.provider} model; ask the LiteLLM proxy)" if entry else ""
            raise ServeError(
                404, "model_not_found", f"model {name!r} is not served here{why}; local models: {known}"
            )
        return entry

    def instance(self, entry: ModelEntry) -> ModelInstance:
        inst = self.instances.get(entry.key)
        if inst is None:
            inst = self.instances[entry.key] = ModelInstance(entry=entry)
        elif inst.entry != entry:
            inst.entry = entry
            inst.stale = inst.worker is not None
        return inst

    def _released(self, lease: Lease) -> None:
        inst = lease.inst
        if lease.threads_hold is not None:
            self.threads.release(lease.threads_hold)
        self.metrics.in_flight.labels(inst.name).set(inst.in_flight)
        self.changed()

    # ---- waiting for change -----------------------------------------------------------------

    def changed(self) -> None:
        """Something that frees memory or capacity happened: wake every waiter to re-check."""
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()
        self.metrics.used_mb.set(self.used_mb())

    async def _wait_change(self, deadline: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            await asyncio.wait_for(fut, max(0.0, min(deadline - time.monotonic(), 1.0)))
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(fut)

    # ---- requests -----------------------------------------------------------------------------

    async def acquire(self, inst: ModelInstance, deadline: float) -> Lease:
        """Queue for the instance's worker (FIFO, bounded), make sure it is loaded, hold it."""
        m = self.metrics
        if inst.gate.locked() and inst.queued >= self.settings.max_queue:
            m.rejected.labels(inst.name, "queue_full").inc()
            per_request = (inst.load_s or 1.0) if inst.state != "ready" else 2.0
            raise ServeError(
                429,
                "queue_full",
                f"model {inst.name!r}: {inst.queued} requests are already waiting "
                f"(max {self.settings.max_queue}); retry later",
                retry_after_s=per_request * (inst.queued + 1),
            )
        inst.queued += 1
        m.queue_depth.labels(inst.name).set(inst.queued)
        try:
            await asyncio.wait_for(inst.gate.acquire(), max(0.001, deadline - time.monotonic()))
        except TimeoutError:
            m.rejected.labels(inst.name, "timeout").inc()
            raise ServeError(
                504,
                "timeout",
                f"model {inst.name!r}: waited {self.settings.request_timeout_s:g}s in the queue",
            ) from None
        finally:
            inst.queued -= 1
            m.queue_depth.labels(inst.name).set(inst.queued)
        inst.in_flight += 1
        inst.requests += 1
        m.in_flight.labels(inst.name).set(inst.in_flight)
        lease = Lease(inst, self._released)
        try:
            await self.ensure_loaded(inst, deadline)
            lease.threads_hold = await self._hold_threads(inst, deadline)
        except BaseException:
            lease.release()
            raise
        return lease

    async def _hold_threads(self, inst: ModelInstance, deadline: float) -> int:
        """Wait until the worker's threads fit in the thread budget beside the busy workers'."""
        assert inst.spec is not None
        try:
            return await self.threads.acquire(
                inst.name, inst.spec.threads, max(0.001, deadline - time.monotonic())
            )
        except TimeoutError:
            self.metrics.rejected.labels(inst.name, "timeout").inc()
            raise ServeError(
                504,
                "timeout",
                f"model {inst.name!r}: waited {self.settings.request_timeout_s:g}s for free cores "
                f"(thread budget {self.threads.cores}: {self.threads.status()['busy']} busy)",
            ) from None

    # ---- loading and eviction --------------------------------------------------------------------

    def _check_worker(self, inst: ModelInstance) -> None:
        """Notice a worker that died on its own: record the crash, free its memory."""
        w = inst.worker
        if w is None or w.alive() or inst.state in ("stopping", "loading"):
            return
        inst.crashes += 1
        cause = w.cause()  # SIGILL: the engine's build and this CPU, in one line
        inst.last_crash = {
            "at": iso(time.time()),
            "pid": w.pid,
            "exit": w.exit(),
            "cause": cause,
            "log_tail": w.log_tail(6),
        }
        inst.last_error = f"worker pid {w.pid} {w.exit()}" + (f": {cause}" if cause else "")
        log.warning("%s: %s; restarting on the next request", inst.name, inst.last_error)
        self.metrics.crashes.labels(inst.name).inc()
        self._drop_worker(inst, "crashed")

    async def worker_died(self, inst: ModelInstance, wait_s: float = 1.0) -> bool:
        """Whether the instance's worker is dead (waiting briefly: a killed process takes a moment
        to exit); a dead one is recorded as a crash."""
        w = inst.worker
        if w is None:
            return inst.state == "crashed"
        deadline = time.monotonic() + wait_s
        while w.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if w.alive():
            return False
        self._check_worker(inst)
        return True

    def _drop_worker(self, inst: ModelInstance, state: str) -> None:
        client, inst.client = inst.client, None
        if client is not None:
            asyncio.get_running_loop().create_task(client.close())
        inst.worker = None
        inst.rss_mb = None
        inst.state = state
        self.metrics.rss_mb.labels(inst.name).set(0)
        self.changed()

    def _prepare(self, inst: ModelInstance) -> tuple[WorkerSpec, MemoryEstimate]:
        try:
            return plan_worker(inst.entry, self._observed_mb)
        except (WeightsError, GGUFError, EngineArgsError) as exc:
            inst.state, inst.last_error = "failed", str(exc)
            raise ServeError(503, "model_unavailable", str(exc)) from None

    def used_mb(self, exclude: ModelInstance | None = None) -> float:
        return sum(i.charged_mb for i in self.instances.values() if i is not exclude)

    async def ensure_loaded(self, inst: ModelInstance, deadline: float) -> None:
        self._check_worker(inst)
        if inst.state == "ready" and inst.worker is not None and not inst.stale:
            return
        try:
            await asyncio.wait_for(self._load_lock.acquire(), max(0.001, deadline - time.monotonic()))
        except TimeoutError:
            raise ServeError(
                504, "timeout", f"model {inst.name!r}: timed out waiting for another model to load"
            ) from None
        try:
            self._check_worker(inst)
            if inst.stale and inst.worker is not None and inst.in_flight <= 1:
                log.info("%s: models.yaml changed; restarting its worker with the new settings", inst.name)
                await self._stop_worker(inst, "stopped")
            inst.stale = False
            if inst.state == "ready" and inst.worker is not None:
                return
            await self._load(inst, deadline)
        finally:
            self._load_lock.release()

    async def _load(self, inst: ModelInstance, deadline: float) -> None:
        spec, est = await asyncio.to_thread(self._prepare, inst)
        capacity = self.settings.capacity_mb
        budget, margin = self.settings.resolved_budget_mb, self.settings.resolved_margin_mb
        if est.total_mb > capacity:
            inst.state = "failed"
            inst.last_error = (
                f"needs {est.explain()}, more than the budget allows "
                f"({budget} MB budget - {margin} MB margin = {capacity} MB)"
            )
            self.metrics.rejected.labels(inst.name, "never_fits").inc()
            raise ServeError(
                507,
                "insufficient_memory",
                f"model {inst.name!r} can never fit: it {inst.last_error}. Start goat serve with a larger "
                "--budget-mb (or a smaller --margin-mb), or lower its context_length in models.yaml.",
            )
        state_before = inst.state
        try:
            await self._make_room(inst, est.total_mb, capacity, deadline)
        except BaseException:
            if inst.state == "waiting_for_memory":  # gave up (or cancelled): not loading any more
                inst.state = state_before
                self.changed()
            raise

        inst.spec, inst.estimate, inst.state, inst.last_error = spec, est, "loading", None
        self.changed()
        log_path = config.paths().logs / "workers" / f"{inst.entry.slug}.log"
        log.info(
            "%s: starting a worker (%s, estimate %s)", inst.name, Path(spec.model_path).name, est.explain()
        )
        t0 = time.monotonic()
        try:
            remaining = max(1.0, deadline - time.monotonic())
            worker = await Worker.start(spec, log_path, min(self.settings.load_timeout_s, remaining))
        except WorkerStartError as exc:
            inst.state, inst.last_error, inst.worker = "failed", str(exc), None
            self.metrics.loads.labels(inst.name, "failed").inc()
            self.changed()
            raise ServeError(503, "model_load_failed", str(exc)) from None
        except BaseException:
            inst.state, inst.worker = "stopped", None
            self.changed()
            raise
        inst.worker = worker
        # aiohttp: its C HTTP parser relays a token for about half the CPU of httpx (benchmarks/serving.py)
        inst.client = aiohttp.ClientSession(
            base_url=worker.base_url,
            connector=aiohttp.TCPConnector(limit=8),
            timeout=aiohttp.ClientTimeout(total=None, connect=10.0),
            auto_decompress=False,
        )
        inst.load_s = time.monotonic() - t0
        inst.loads += 1
        inst.state = "ready"
        inst.last_used = time.time()
        self._sample_rss(inst)
        self.metrics.loads.labels(inst.name, "ok").inc()
        self.metrics.load_seconds.labels(inst.name).observe(inst.load_s)
        log.info(
            "%s: ready in %.2fs (pid %s, port %s, rss %s MB, estimate %.0f MB)",
            inst.name,
            inst.load_s,
            worker.pid,
            worker.port,
            f"{inst.rss_mb:.0f}" if inst.rss_mb else "?",
            est.total_mb,
        )
        self.changed()

    async def _make_room(self, inst: ModelInstance, need_mb: float, capacity: float, deadline: float) -> None:
        """Evict least-recently-used idle workers until `need_mb` fits, waiting for busy ones to
        finish until `deadline` (then 503)."""
        while True:
            residents = [
                Resident(i.entry.key, i.charged_mb, i.last_used, i.busy)
                for i in self.instances.values()
                if i is not inst and i.worker is not None
            ]
            victims, fits = plan_eviction(residents, need_mb, capacity)
            if fits:
                for key in victims:
                    victim = self.instances[key]
                    if victim.busy or victim.worker is None:  # a request reached it since the plan
                        break
                    await self._evict(victim, f"to make room for {inst.name}")
                if self.used_mb(exclude=inst) + need_mb <= capacity:
                    return
                continue  # memory changed while evicting: plan again
            if time.monotonic() >= deadline:
                busy = [i.name for i in self.instances.values() if i is not inst and i.worker and i.busy]
                self.metrics.rejected.labels(inst.name, "memory_busy").inc()
                raise ServeError(
                    503,
                    "insufficient_memory",
                    f"model {inst.name!r} needs {need_mb:.0f} MB; {self.used_mb(exclude=inst):.0f} of "
                    f"{capacity} MB are held by models with requests in flight ({', '.join(busy)}); "
                    "retry later",
                    retry_after_s=5,
                )
            inst.state = "waiting_for_memory"
            await self._wait_change(deadline)

    async def abort_generation(self, inst: ModelInstance) -> None:
        """A non-streamed request timed out while its worker generates. llama-cpp-python finishes a
        non-streamed completion whether or not anyone waits (only a stream notices its client
        left), so the worker would serve the next request only after generating for nobody: stop
        it (the caller still holds its lease, so nothing else is sent to it); the next request
        loads it again."""
        if inst.worker is None:
            return
        log.warning("%s: a request timed out mid-generation; restarting the worker to abort it", inst.name)
        inst.last_error = "restarted: a request timed out mid-generation"
        await self._stop_worker(inst, "stopped", grace_s=0)  # a graceful stop would wait for it

    async def _evict(self, inst: ModelInstance, why: str) -> None:
        assert not inst.busy, "never evict a worker with a request in flight"
        log.info(
            "%s: evicting idle worker pid %s %s", inst.name, inst.worker.pid if inst.worker else None, why
        )
        inst.evictions += 1
        self.evictions += 1
        self.metrics.evictions.labels(inst.name).inc()
        await self._stop_worker(inst, "evicted")

    async def _stop_worker(self, inst: ModelInstance, final_state: str, grace_s: float = 5.0) -> None:
        w = inst.worker
        if w is None:
            inst.state = final_state
            return
        inst.state = "stopping"
        client, inst.client = inst.client, None
        if client is not None:
            await client.close()
        await w.stop(grace_s)
        inst.worker, inst.rss_mb = None, None
        inst.state = final_state
        self.metrics.rss_mb.labels(inst.name).set(0)
        self.changed()

    # ---- admin -----------------------------------------------------------------------------

    async def load(self, name: str) -> dict[str, Any]:
        """Load a model now (as a request would) and return its status."""
        inst = self.instance(self.resolve(name))
        lease = await self.acquire(inst, time.monotonic() + self.settings.request_timeout_s)
        lease.release()
        return inst.status()

    async def unload(self, name: str) -> dict[str, Any]:
        inst = self.instance(self.resolve(name))
        deadline = time.monotonic() + self.settings.request_timeout_s
        try:
            await asyncio.wait_for(inst.gate.acquire(), max(0.001, deadline - time.monotonic()))
        except TimeoutError:
            raise ServeError(504, "timeout", f"model {inst.name!r} stayed busy; not unloaded") from None
        try:
            async with self._load_lock:
                await self._stop_worker(inst, "stopped")
        finally:
            inst.gate.release()
        return inst.status()

    # ---- monitoring ----------------------------------------------------------------------------

    def _sample_rss(self, inst: ModelInstance) -> None:
        w = inst.worker
        if w is None or inst.state != "ready":
            return
        rss = w.rss_mb()
        if rss is None:
            return
        inst.rss_mb = rss
        inst.peak_rss_mb = max(inst.peak_rss_mb or 0.0, rss)
        if inst.spec is not None:
            key = (inst.spec.model_path, inst.spec.n_ctx)
            self._observed_mb[key] = max(self._observed_mb.get(key, 0.0), rss)
        self.metrics.rss_mb.labels(inst.name).set(rss)

    async def monitor(self, interval_s: float = 1.0) -> None:
        """Notice crashed workers and sample RSS, forever (cancelled at shutdown)."""
        while True:
            for inst in list(self.instances.values()):
                self._check_worker(inst)
                self._sample_rss(inst)
            used, capacity = self.used_mb(), self.settings.capacity_mb
            self.metrics.used_mb.set(used)
            over = used > capacity
            if over and not self._over_capacity:  # once per excursion, not every second
                grown = [
                    i.name
                    for i in self.instances.values()
                    if i.rss_mb and i.estimate and i.rss_mb > i.estimate.total_mb
                ]
                log.warning(
                    "workers hold %.0f MB, over the %.0f MB capacity: real RSS above the estimate (%s); "
                    "the next load evicts idle workers to make room",
                    used,
                    capacity,
                    ", ".join(grown) or "-",
                )
            self._over_capacity = over
            await asyncio.sleep(interval_s)

    def start_monitor(self) -> None:
        self._monitor = asyncio.get_running_loop().create_task(self.monitor())

    async def shutdown(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        stops = [self._stop_worker(i, "stopped") for i in self.instances.values() if i.worker is not None]
        if stops:
            log.info("stopping %d worker(s)", len(stops))
            await asyncio.gather(*stops, return_exceptions=True)

    def kill_all_now(self) -> None:
        """Synchronous last resort when the event loop is gone."""
        for inst in self.instances.values():
            if inst.worker is not None:
                inst.worker.kill_now()

    # ---- reporting ---------------------------------------------------------------------------

    def loading(self) -> list[str]:
        return [i.name for i in self.instances.values() if i.state in ("loading", "waiting_for_memory")]

    def status(self) -> dict[str, Any]:

        for inst in self.instances.values():
            self._check_worker(inst)
        budget, margin = self.settings.resolved_budget_mb, self.settings.resolved_margin_mb
        used = self.used_mb()
        return {
            "service": "goat-serve",
            "pid": os.getpid(),
            "started_at": iso(self.started_at),
            "uptime_s": round(time.time() - self.started_at, 1),
            "models_file": str(config.models_file()),
            "models_dir": str(self.models_dir.directory) if self.models_dir else None,
            "registry_error": self._registry_error,
            "budget_mb": budget,
            "margin_mb": margin,
            "capacity_mb": self.settings.capacity_mb,
            "used_mb": round(used, 1),
            "free_mb": round(self.settings.capacity_mb - used, 1),
            "max_queue": self.settings.max_queue,
            "request_timeout_s": self.settings.request_timeout_s,
            "evictions": self.evictions,
            "threads": self.threads.status(),
            "instances": [i.status() for i in self.instances.values()],
        }
