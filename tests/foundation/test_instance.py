"""The Dagster instance: PostgreSQL storage, reused by concurrent processes, stopped cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import AssetKey

from goat_dagster.instance import sqlalchemy_url

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).resolve().parents[2]

MATERIALIZE = """
from dagster import DagsterInstance, materialize
from goat_dagster.assets.registry import model_registry
from goat_dagster.instance import ensure_instance
from goat_dagster.resources.registry import RegistryResource
result = materialize([model_registry], instance=ensure_instance(), resources={"registry": RegistryResource()})
print("RUN", result.run_id, result.success)
"""


def goat_sees_model_registry(env: dict[str, str]) -> bool:
    """Whether goat's own instance, opened in a new process with `env`, has a model_registry
    materialization."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from dagster import AssetKey; from goat_dagster.instance import ensure_instance;"
            "event = ensure_instance().get_latest_materialization_event(AssetKey('model_registry'));"
            "print(event is not None)",
        ],
        env=env, cwd=PROJECT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().endswith("True")


def test_sqlalchemy_url_names_psycopg2() -> None:
    assert sqlalchemy_url("postgresql://u:p@h:5432/d") == "postgresql+psycopg2://u:p@h:5432/d"
    assert sqlalchemy_url("postgres://u@/d?host=/s") == "postgresql+psycopg2://u@/d?host=/s"
    assert sqlalchemy_url("postgresql+psycopg2://x") == "postgresql+psycopg2://x"


def test_concurrent_runs_share_the_embedded_server(pg_instance) -> None:
    """Two processes materialize at once against the same instance: both runs and both
    materializations land, and neither starts a second PostgreSQL."""
    before = pg_instance.get_latest_materialization_event(AssetKey("model_registry"))
    env = dict(os.environ)  # carries DAGSTER_PG_URL / GOAT_PG_EMBEDDED of the session's server
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MATERIALIZE],
            env=env,
            cwd=PROJECT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    run_ids = []
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        line = next(ln for ln in out.splitlines() if ln.startswith("RUN "))
        _, run_id, ok = line.split()
        assert ok == "True"
        run_ids.append(run_id)
    for run_id in run_ids:
        run = pg_instance.get_run_by_id(run_id)
        assert run is not None and run.is_success
    records = pg_instance.fetch_materializations(AssetKey("model_registry"), limit=100).records
    ours = [r for r in records if r.run_id in run_ids]
    assert len(ours) == 2
    after = pg_instance.get_latest_materialization_event(AssetKey("model_registry"))
    assert after is not None and (before is None or after.run_id != before.run_id)


def test_embedded_server_starts_on_demand_and_stops_with_last_user(tmp_path: Path) -> None:
    """A fresh GOAT_HOME: `goat demo`-style use starts PostgreSQL under $GOAT_HOME/pg and the server
    is stopped when the last process using it exits."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("DAGSTER_PG_URL", "GOAT_PG_EMBEDDED", "DAGSTER_HOME")
    }
    env["GOAT_HOME"] = str(tmp_path / "home")
    out = subprocess.run(
        [sys.executable, "-c", MATERIALIZE], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-2000:]
    pgdata = tmp_path / "home" / "pg"
    assert (pgdata / "PG_VERSION").read_text().strip() == "16"
    deadline = time.time() + 20
    while (pgdata / "postmaster.pid").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not (pgdata / "postmaster.pid").exists(), "embedded PostgreSQL still running after exit"
    # and it comes back on the next use with the data of the first
    assert goat_sees_model_registry(env)


def _clean_env(home: Path) -> dict[str, str]:
    """The environment of a new shell: no instance of goat's or of this test session."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("DAGSTER_PG_URL", "GOAT_PG_EMBEDDED", "DAGSTER_HOME")
    }
    env["GOAT_HOME"] = str(home)
    return env


def _fresh_home() -> Path:
    # traversable by the `pgserver` user PostgreSQL runs as under root (pytest's tmp dirs are 0700)
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="goat-test-plain-"))
    home.chmod(0o755)
    return home


def test_plain_dagster_commands_in_the_checkout_use_goats_instance() -> None:
    """`dagster definitions validate` and `dagster asset materialize`, run in the checkout as a
    Dagster user would (no DAGSTER_HOME, no goat), read ./dagster.yaml and land in the embedded
    PostgreSQL of $GOAT_HOME, where `goat` finds the run."""
    import shutil

    home = _fresh_home()
    env = _clean_env(home)
    dagster = str(Path(sys.executable).with_name("dagster"))
    try:
        out = subprocess.run(
            [dagster, "definitions", "validate", "-w", "workspace.yaml"],
            env=env, cwd=PROJECT, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert "Validation successful" in out.stdout + out.stderr
        assert (home / "pg" / "PG_VERSION").read_text().strip() == "16"
        out = subprocess.run(
            [dagster, "asset", "materialize", "--select", "model_registry", "-m", "goat_dagster.definitions"],
            env=env, cwd=PROJECT, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert goat_sees_model_registry(env)
    finally:
        shutil.rmtree(home, ignore_errors=True)


HOLDER = """
import sys, time
from pathlib import Path
from goat_dagster.instance import ensure_instance
ensure_instance()
import os
print(os.environ["DAGSTER_PG_URL"], flush=True)
while not Path(sys.argv[1]).exists():
    time.sleep(0.1)
"""


def test_independent_processes_join_one_embedded_server() -> None:
    """Two `goat`s started apart on one GOAT_HOME (nothing inherited): the second joins the first's
    PostgreSQL, its run lands beside the first's, and the server stops only when the last exits."""
    import shutil

    home = _fresh_home()
    env = _clean_env(home)
    release = home / "release"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(release)], env=env, cwd=PROJECT, stdout=subprocess.PIPE, text=True
    )
    try:
        url = holder.stdout.readline().strip()
        assert url.startswith("postgresql+psycopg2://"), url
        pid_file = home / "pg" / "postmaster.pid"
        server_pid = pid_file.read_text().split()[0]
        out = subprocess.run(
            [sys.executable, "-c", MATERIALIZE],
            env=env, cwd=PROJECT, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        # joined, not a second server; and its exit did not stop the one the first still uses
        assert pid_file.read_text().split()[0] == server_pid
        release.touch()
        assert holder.wait(timeout=60) == 0
        deadline = time.time() + 20
        while pid_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        assert not pid_file.exists(), "embedded PostgreSQL still running after the last user exited"
    finally:
        release.touch()
        holder.kill()
        shutil.rmtree(home, ignore_errors=True)


def test_an_external_postgres_url_is_used_and_nothing_is_embedded(pg_instance) -> None:
    """DAGSTER_PG_URL set by the user (a bare postgresql:// URL, as people write them): the run lands
    in that database and no embedded server is started under the new GOAT_HOME."""
    import shutil

    home = _fresh_home()
    env = _clean_env(home)
    env["DAGSTER_PG_URL"] = os.environ["DAGSTER_PG_URL"].replace("postgresql+psycopg2://", "postgresql://")
    try:
        out = subprocess.run(
            [sys.executable, "-c", MATERIALIZE],
            env=env,
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        run_id = next(ln for ln in out.stdout.splitlines() if ln.startswith("RUN ")).split()[1]
        run = pg_instance.get_run_by_id(run_id)
        assert run is not None and run.is_success
        assert not (home / "pg").exists()
    finally:
        shutil.rmtree(home, ignore_errors=True)
