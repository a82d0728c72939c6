"""Per-backend slots on the real instance: a second benchmark on the local server waits for the first."""

from __future__ import annotations

import threading
import time

import pytest

from goat_dagster.pools import backend_slot

pytestmark = pytest.mark.integration


def test_second_claim_waits_until_first_frees(pg_instance) -> None:
    pg_instance.event_log_storage.set_concurrency_slots("serving-test", 1)
    order: list[str] = []
    first_in = threading.Event()

    def first() -> None:
        with backend_slot(pg_instance, "serving-test", "run-a", "benchmark_results"):
            order.append("a-in")
            first_in.set()
            time.sleep(1.5)
            order.append("a-out")

    def second() -> None:
        first_in.wait(30)
        with backend_slot(pg_instance, "serving-test", "run-b", "benchmark_results", poll_s=0.2):
            order.append("b-in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert order == ["a-in", "a-out", "b-in"]
    info = pg_instance.event_log_storage.get_concurrency_info("serving-test")
    assert info.claimed_slots == [] and info.pending_steps == []
