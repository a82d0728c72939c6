"""The memory budget's arithmetic: the GGUF-based estimate and the LRU eviction plan."""

from __future__ import annotations

from goat_dagster.serving.local.gguf import read_gguf_info
from goat_dagster.serving.local.memory import MIB, RUNTIME_MB, Resident, estimate_memory, plan_eviction
from goat_dagster.serving.local.settings import ServeSettings


def test_estimate_is_weights_plus_kv_cache_plus_scratch(goat_home, smollm2):
    info = read_gguf_info(smollm2)
    size = smollm2.stat().st_size
    small = estimate_memory(info, size, 2048)
    big = estimate_memory(info, size, 4096)
    assert small.weights_mb == size / MIB and small.runtime_mb == RUNTIME_MB
    assert small.kv_cache_mb == 2048 * info.kv_bytes_per_token() / MIB
    assert big.kv_cache_mb == 2 * small.kv_cache_mb, "the KV cache grows with the context"
    assert big.total_mb > small.total_mb
    assert "n_ctx=2048" in small.explain() and small.logits_mb == 0
    with_logits = estimate_memory(info, size, 2048, logits_all=True)
    assert with_logits.logits_mb == 2048 * info.vocab_size * 4 / MIB
    q8 = estimate_memory(info, size, 2048, type_k=8, type_v=8)
    assert q8.kv_cache_mb < small.kv_cache_mb, "a quantized KV cache is smaller"


def test_eviction_takes_least_recently_used_idle_workers_first():
    residents = [
        Resident("old", 300, last_used=1.0, busy=False),
        Resident("busy-oldest", 300, last_used=0.5, busy=True),
        Resident("recent", 300, last_used=9.0, busy=False),
    ]
    assert plan_eviction(residents, need_mb=100, capacity_mb=1000) == ([], True)
    assert plan_eviction(residents, need_mb=300, capacity_mb=1000) == (["old"], True)
    assert plan_eviction(residents, need_mb=600, capacity_mb=1000) == (["old", "recent"], True)
    # only the busy one would make room: nothing is evicted, the load has to wait
    assert plan_eviction(residents, need_mb=800, capacity_mb=1000) == ([], False)


def test_margin_is_kept_free_within_the_budget():
    s = ServeSettings(budget_mb=1000, margin_mb=100)
    assert s.capacity_mb == 900
    assert ServeSettings(budget_mb=400).resolved_margin_mb == 100, "default margin: at most a quarter"
    assert "--budget-mb" in ServeSettings(budget_mb=1000).cli_args()
