"""Scoped proxy keys: minted on the host, verified statelessly by the proxy's custom auth."""

from __future__ import annotations

import time

import pytest

from goat_dagster.routing.auth import ScopedKeyError, mint_scoped_key, verify_scoped_key

MASTER = "sk-master-for-tests-0123456789"


def test_roundtrip_carries_models_run_and_expiry():
    key = mint_scoped_key(MASTER, models=["smollm2-135m-local"], run_id="run-1", ttl_s=60)
    assert key.startswith("sk-goat-") and MASTER not in key
    claims = verify_scoped_key(MASTER, key)
    assert claims.models == ("smollm2-135m-local",) and claims.run_id == "run-1"
    assert time.time() + 50 < claims.expires_at <= time.time() + 61


def test_rejects_tampering_other_master_and_expiry():
    key = mint_scoped_key(MASTER, models=["a-local"], ttl_s=60)
    _, sig = key.removeprefix("sk-goat-").rsplit(".", 1)
    forged = (
        mint_scoped_key("sk-attacker", models=["b-local"], ttl_s=60)
        .removeprefix("sk-goat-")
        .rsplit(".", 1)[0]
    )
    with pytest.raises(ScopedKeyError, match="bad signature"):
        verify_scoped_key(MASTER, f"sk-goat-{forged}.{sig}")
    with pytest.raises(ScopedKeyError, match="bad signature"):
        verify_scoped_key("sk-other-master", key)
    with pytest.raises(ScopedKeyError, match="expired"):
        verify_scoped_key(MASTER, key, now=time.time() + 120)
    with pytest.raises(ScopedKeyError, match="not a goat scoped key"):
        verify_scoped_key(MASTER, MASTER)
    with pytest.raises(ScopedKeyError):
        mint_scoped_key(MASTER, models=[], ttl_s=60)


def test_a_scoped_key_carries_the_attempt_it_is_for():
    ids = {"trace_id": "t1", "task_id": "fizzbuzz", "epoch": "1", "suite": "smoke"}
    claims = verify_scoped_key(
        MASTER, mint_scoped_key(MASTER, models=["m-local"], run_id="r1", ttl_s=60, ids=ids)
    )
    assert claims.ids == ids
    assert claims.trace_metadata() == {
        "goat_run_id": "r1",
        "trace_id": "t1",
        "goat_task_id": "fizzbuzz",
        "goat_epoch": "1",
        "goat_suite": "smoke",
    }
    plain = verify_scoped_key(MASTER, mint_scoped_key(MASTER, models=["m-local"], ttl_s=60))
    assert plain.ids == {} and plain.trace_metadata() == {}
