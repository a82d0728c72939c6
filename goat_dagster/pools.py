"""Per-backend concurrency for partitioned assets whose backend depends on the partition.

Dagster pools are static per asset, but `benchmark_results[m]` talks to a local CPU server for one
model and to a cloud API for another. `backend_slot` claims a slot of the pool of the partition's
serving backend (`serving-local`, `serving-modal`, `serving-cloud`) through the instance's own
concurrency storage — the same slots the UI shows on the pool page, limited by the same limits —
waits for it, and frees it when the step ends (Dagster also frees a run's slots when a run dies).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dagster import DagsterInstance

from goat_dagster.registry import ModelEntry

RUN_TAG = "goat/serving-backend"  # dagster.yaml limits concurrent runs per value of this tag

# Steps of one serving backend that may run at once: one local CPU server must not be flooded;
# remote GPUs and cloud APIs take several benchmarks side by side.
POOL_LIMITS: dict[str, int] = {"serving-local": 1, "serving-modal": 8, "serving-cloud": 8}


def pool_for(entry: ModelEntry) -> str:
    return f"serving-{entry.backend}"


def configure_pools(instance: DagsterInstance) -> None:
    """Give goat's pools their limits, once: a limit changed later in the UI is left alone."""
    storage = instance.event_log_storage
    known = storage.get_concurrency_keys()
    for pool, limit in POOL_LIMITS.items():
        if pool not in known:
            storage.set_concurrency_slots(pool, limit)


@contextmanager
def backend_slot(
    instance: DagsterInstance,
    pool: str,
    run_id: str,
    step_key: str,
    log: Callable[[str], None] | None = None,
    poll_s: float = 1.0,
) -> Iterator[None]:
    storage = instance.event_log_storage
    if pool not in storage.get_concurrency_keys():  # an instance goat has not configured yet
        configure_pools(instance)
        if pool not in storage.get_concurrency_keys():
            storage.initialize_concurrency_limit_to_default(pool)
    status = storage.claim_concurrency_slot(pool, run_id, step_key)
    waited = 0.0
    while not status.is_claimed:
        if log and waited == 0.0:
            log(f"waiting for a slot in pool {pool!r} (another benchmark holds this serving backend)")
        time.sleep(status.sleep_interval or poll_s)
        waited += status.sleep_interval or poll_s
        status = storage.claim_concurrency_slot(pool, run_id, step_key)
    if log and waited:
        log(f"got a slot in pool {pool!r} after {waited:.0f}s")
    try:
        yield
    finally:
        storage.free_concurrency_slot_for_step(run_id, step_key)
