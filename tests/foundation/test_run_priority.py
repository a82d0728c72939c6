"""Run priorities with the real run queue: Dagster's queued run coordinator as goat's dagster.yaml
configures it (goat's `ServingBackendRunCoordinator`), on the embedded PostgreSQL, dequeued by the
real `dagster-daemon`.

Four runs are queued while nothing dequeues, in the order that would be worst for a first-come
queue — a backfill's run, a run launched by hand, a suite sensor's, a registry sensor's — then the
daemon starts with room for one run at a time. The runs must start in priority order: the changed
model first, the changed suite next, the hand-launched run, the backfill last.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from sqlalchemy.engine import make_url

from goat_dagster.run_queue import BACKFILL_TAG, PRIORITY_TAG, priority_tags
from tests.conftest import PROJECT

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
LOCATION = HERE / "queue_location.py"
BIN = Path(sys.executable).parent


@pytest.fixture
def queue_home(pg_instance, tmp_path):
    """A DAGSTER_HOME whose dagster.yaml is the project's with one run at a time, on a database of
    its own in the session's embedded PostgreSQL server (so no run of another test is in its queue)."""
    server = make_url(os.environ["DAGSTER_PG_URL"])
    db = f"goat_queue_{uuid.uuid4().hex[:8]}"
    # a libpq URI: the embedded server is reached by its socket directory (`?host=...`)
    admin = psycopg2.connect(server.set(drivername="postgresql").render_as_string(hide_password=False))
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{db}"')
    conf = yaml.safe_load((PROJECT / "dagster.yaml").read_text())
    conf["run_coordinator"]["config"].update(max_concurrent_runs=1, dequeue_interval_seconds=1)
    home = tmp_path / "dagster-home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(conf))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": server.set(database=db).render_as_string(hide_password=False),
    }
    env.pop("GOAT_PG_EMBEDDED", None)  # the URL is given: join that server, start none
    try:
        yield env
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()


def launch(env: dict[str, str], tags: dict[str, str]) -> str:
    """`dagster job launch`: the run goes through the instance's run coordinator into the queue."""
    run_id = str(uuid.uuid4())
    subprocess.run(
        [str(BIN / "dagster"), "job", "launch", "-f", str(LOCATION), "-j", "queued_job",
         "--run-id", run_id, "--tags", json.dumps(tags)],
        env=env, check=True, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    return run_id


def test_the_queue_starts_runs_in_priority_order(queue_home, monkeypatch) -> None:
    env = queue_home
    launched = {
        "backfill": launch(env, {BACKFILL_TAG: "bf-test"}),
        "by hand": launch(env, {}),
        "suite sensor": launch(env, {**priority_tags("suite_change"), "goat/reason": "suite smoke changed"}),
        "registry sensor": launch(env, {**priority_tags("model_change"), "goat/reason": "model changed"}),
    }
    for name in ("DAGSTER_HOME", "DAGSTER_PG_URL"):
        monkeypatch.setenv(name, env[name])
    instance = DagsterInstance.get()
    try:
        runs = {name: instance.get_run_by_id(run_id) for name, run_id in launched.items()}
        assert {n: r.status for n, r in runs.items()} == dict.fromkeys(launched, DagsterRunStatus.QUEUED)
        # the backfill's run got its priority from goat's coordinator when it was submitted
        assert runs["backfill"].tags[PRIORITY_TAG] == "-5"
        assert PRIORITY_TAG not in runs["by hand"].tags

        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-f", str(LOCATION)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            wait_until_done(instance, list(launched.values()))
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=60)
        started = {name: instance.get_run_record_by_id(rid).start_time for name, rid in launched.items()}
        assert sorted(started, key=started.__getitem__) == [
            "registry sensor", "suite sensor", "by hand", "backfill",
        ]  # fmt: skip
    finally:
        instance.dispose()


def wait_until_done(instance: DagsterInstance, run_ids: list[str], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = instance.get_runs(RunsFilter(run_ids=run_ids))
        assert not [r for r in runs if r.status == DagsterRunStatus.FAILURE], "a run failed"
        if all(r.status == DagsterRunStatus.SUCCESS for r in runs):
            return
        time.sleep(1)
    pytest.fail(f"runs not done in {timeout_s:.0f} s: {[(r.run_id, r.status) for r in runs]}")
