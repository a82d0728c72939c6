"""Fixtures of the serving tests: the real SmolLM2 GGUF and one real `goat serve` control plane per
session (budget for one worker, queue bound 1)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.serving.plane_helpers import (
    Plane,
    one_worker_budget_mb,
    smollm2_path,
    start_plane,
    write_models_yaml,
)


@pytest.fixture(scope="session")
def smollm2() -> Path:
    path = smollm2_path()
    assert path.is_file(), f"{path} missing: run `make install`"
    return path


@pytest.fixture(scope="package")
def plane(tmp_path_factory: pytest.TempPathFactory, smollm2: Path) -> Iterator[Plane]:
    """One control plane for the session: budget for one worker, queue bound 1."""
    home = tmp_path_factory.mktemp("serve-home")
    models = write_models_yaml(home / "models.yaml", smollm2)
    with pytest.MonkeyPatch.context() as mp:  # the GGUF metadata cache goes to this GOAT_HOME
        mp.setenv("GOAT_HOME", str(home))
        budget = one_worker_budget_mb(smollm2)
    p = start_plane(
        home,
        models,
        "--budget-mb",
        str(budget),
        "--margin-mb",
        "0",
        "--max-queue",
        "1",
    )
    try:
        yield p
    finally:
        workers = p.worker_pids()
        p.stop()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(psutil.pid_exists(w) for w in workers):
            time.sleep(0.05)
