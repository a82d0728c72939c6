"""The thread budget of `goat serve`: two busy SmolLM2 workers with n_threads 2 never share 2 cores
(the second request waits for the first), `/status` shows the budget, and workers run with a passive
OpenMP wait policy. Plus the budget's queue itself (FIFO, timeouts) without a model."""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

from goat_dagster.serving.local.gguf import read_gguf_info
from goat_dagster.serving.local.memory import estimate_memory
from goat_dagster.serving.local.threads import WORKER_ENV, ThreadBudget
from tests.serving.plane_helpers import TEST_N_CTX, start_plane, write_models_yaml


def test_thread_budget_is_fifo_and_times_out():
    async def scenario() -> None:
        budget = ThreadBudget(2)
        a = await budget.acquire("a", 2, 1)
        order: list[str] = []

        async def take(name: str, n: int) -> int:
            hold = await budget.acquire(name, n, 5)
            order.append(name)
            return hold

        b = asyncio.create_task(take("b", 1))
        c = asyncio.create_task(take("c", 1))
        await asyncio.sleep(0.01)
        assert budget.status()["waiting"] == 2 and budget.in_use == 2
        with pytest.raises(TimeoutError):
            await budget.acquire("d", 1, 0.01)
        assert budget.status()["waiting"] == 2, "a request that gave up leaves the queue"
        budget.release(a)
        holds = await asyncio.gather(b, c)
        assert order == ["b", "c"] and budget.status()["busy"] == {"b": 1, "c": 1}
        for h in holds:
            budget.release(h)
        assert budget.in_use == 0
        big = await budget.acquire("huge", 64, 1)  # more threads than cores: all of them, alone
        assert budget.in_use == 2
        budget.release(big)

    asyncio.run(scenario())


@pytest.mark.integration
@pytest.mark.slow
def test_two_busy_workers_never_oversubscribe_the_cores(tmp_path, smollm2):
    models = write_models_yaml(tmp_path / "models.yaml", smollm2)
    est = estimate_memory(read_gguf_info(smollm2), smollm2.stat().st_size, TEST_N_CTX).total_mb
    plane = start_plane(
        tmp_path, models, "--budget-mb", str(int(est * 2.6)), "--margin-mb", "0", "--cores", "2"
    )
    try:
        for model in ("smol-a", "smol-b"):  # both loaded: the budget holds two workers
            r = plane.chat(model)
            assert r.status_code == 200, r.text
        for pid in plane.worker_pids():
            env = psutil.Process(pid).environ()
            assert env.get("OMP_WAIT_POLICY") == os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
            assert env.get("GOMP_SPINCOUNT") == os.environ.get("GOMP_SPINCOUNT", WORKER_ENV["GOMP_SPINCOUNT"])

        def long(model: str) -> httpx.Response:
            body = {
                "model": model,
                "max_tokens": 96,
                "min_tokens": 96,
                "messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
            }
            return httpx.post(f"{plane.base_url}/chat/completions", json=body, timeout=120)

        seen: list[dict] = []
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(long, m) for m in ("smol-a", "smol-b")]
            while not all(f.done() for f in futures):
                seen.append(plane.status()["threads"])
                time.sleep(0.05)
            assert all(f.result().status_code == 200 for f in futures)
        assert all(t["cores"] == 2 and t["in_use"] <= 2 for t in seen), seen
        assert any(t["waiting"] == 1 and len(t["busy"]) == 1 for t in seen), "the second request waited"
        final = plane.status()["threads"]
        assert final["in_use"] == 0 and final["waited_total"] >= 1
    finally:
        plane.stop()
