"""The thread budget of `goat serve`: the CPU cores its workers may keep busy at once.

A llama.cpp worker evaluates a prompt with `n_threads_batch` threads and generates with
`n_threads`; on CPUs that share cores with another busy worker (or with an agent's checks) its
OpenMP threads wait for each other at every barrier, and on 2 cores a 500-token prompt went from
about 1 s to 100+ s. So a request runs only when the threads of its worker fit beside those of the
requests already running; otherwise it waits, first come first served. Workers are started with a
passive OpenMP wait policy and a short spin (`WORKER_ENV`), so a worker that waits spins on no core.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from typing import Any

# An idle or waiting worker sleeps instead of spinning (libgomp: OMP_WAIT_POLICY), after a short spin
# (GOMP_SPINCOUNT: 3,000 pause-loop iterations, of the order of 0.1 ms). ggml's threads meet at an
# OpenMP barrier after every operation of the graph (hundreds per engine pass): with no spin at all
# each barrier put a thread to sleep and woke it through the kernel, and a one-token pass took 31-37 ms
# instead of 12-14 ms, a 33-token draft pass 183-244 ms instead of 142-175 ms (2 threads, 2 cores, KV
# cache at 2,000 tokens). With a CPU-bound process beside the worker on those cores, the spin costs
# instead (one-token pass 20-24 -> 40-76 ms, draft pass 290-365 -> 410-420 ms): the thread budget
# keeps goat's workers off each other's cores, and where other work shares them (checks beside
# generation), GOMP_SPINCOUNT=0 in goat serve's environment puts every barrier to sleep again. The
# environment of goat serve may set both otherwise.
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class ThreadBudget:
    """Cores handed to requests, FIFO. `acquire(name, n)` waits until `n` threads fit (a worker that
    wants more than all the cores gets all of them, alone)."""

    def __init__(self, cores: int) -> None:
        self.cores = max(1, cores)
        self.in_use = 0
        self.holders: dict[int, tuple[str, int]] = {}  # hold id -> (model, threads)
        self._queue: deque[tuple[str, int, asyncio.Future[int]]] = deque()
        self._next_id = 0
        self.waited = 0  # requests that had to wait for threads

    def _fits(self, n: int) -> bool:
        return self.in_use + n <= self.cores

    def _grant(self, name: str, n: int) -> int:
        self._next_id += 1
        self.in_use += n
        self.holders[self._next_id] = (name, n)
        return self._next_id

    async def acquire(self, name: str, threads: int, timeout_s: float) -> int:
        """A hold of `threads` cores for model `name`; raises TimeoutError after `timeout_s`."""
        n = min(max(1, threads), self.cores)
        if not self._queue and self._fits(n):
            return self._grant(name, n)
        self.waited += 1
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        entry = (name, n, fut)
        self._queue.append(entry)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release(fut.result())  # granted just as we gave up
            else:
                fut.cancel()
                if entry in self._queue:
                    self._queue.remove(entry)
                self._wake()
            raise

    def release(self, hold: int) -> None:
        held = self.holders.pop(hold, None)
        if held is not None:
            self.in_use -= held[1]
            self._wake()

    def _wake(self) -> None:
        while self._queue and self._fits(self._queue[0][1]):
            name, n, fut = self._queue.popleft()
            if not fut.done():
                fut.set_result(self._grant(name, n))

    def status(self) -> dict[str, Any]:
        busy: dict[str, int] = {}
        for name, n in self.holders.values():
            busy[name] = busy.get(name, 0) + n
        return {
            "cores": self.cores,
            "in_use": self.in_use,
            "free": self.cores - self.in_use,
            "waiting": len(self._queue),
            "waited_total": self.waited,
            "busy": busy,
        }
