"""The per-request timeout of `goat serve` (queue wait + load + generation), on a control plane of
its own with a short `--timeout-s`: a 504 in the error format, and a worker that is not left
generating for nobody (the next request is answered)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving.plane_helpers import Plane, one_worker_budget_mb, start_plane, write_models_yaml

pytestmark = pytest.mark.integration
TIMEOUT_S = 10


@pytest.fixture(scope="module")
def short_plane(tmp_path_factory: pytest.TempPathFactory, smollm2: Path) -> Iterator[Plane]:
    home = tmp_path_factory.mktemp("serve-timeout-home")
    models = write_models_yaml(home / "models.yaml", smollm2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOAT_HOME", str(home))
        budget = one_worker_budget_mb(smollm2)
    p = start_plane(
        home, models, "--budget-mb", str(budget), "--margin-mb", "0", "--timeout-s", str(TIMEOUT_S)
    )
    try:
        yield p
    finally:
        p.stop()


def test_a_generation_past_the_timeout_is_a_504_and_the_worker_is_freed(short_plane: Plane) -> None:
    # loaded first, so the timeout is all generation (a load on a busy machine may itself take
    # longer than the timeout: then the next try finds the GGUF's metadata cached)
    for _ in range(3):
        if short_plane.chat("smol-a").status_code == 200:
            break
    before = short_plane.instance("smol-a")
    assert before["state"] == "ready", before
    t0 = time.monotonic()
    # 1900 tokens take ~24 s on 2 CPU cores (so ~14 s are left when the request times out);
    # min_tokens keeps the end-of-turn token away
    r = short_plane.chat("smol-a", content="Write a very long story.", max_tokens=1900, min_tokens=1900)
    waited = time.monotonic() - t0
    assert r.status_code == 504, r.text
    err = r.json()["error"]
    assert err["type"] == "timeout" and "smol-a" in err["message"] and err["code"] == 504
    assert waited < TIMEOUT_S + 3
    # the abandoned generation was stopped with its worker: the next request is answered at once
    # (after a reload), not stuck behind 1500 tokens generated for nobody
    after = short_plane.instance("smol-a")
    assert after["pid"] != before["pid"] and "timed out" in (after["last_error"] or "")
    again = short_plane.chat("smol-a")
    assert again.status_code == 200, again.text
    metrics = httpx.get(f"{short_plane.root}/metrics", timeout=10).text
    assert 'goat_serve_requests_total{code="504",model="smol-a"} 1.0' in metrics
