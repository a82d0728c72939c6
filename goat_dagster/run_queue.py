"""Runs of one serving backend at a time where it matters: the run queue (dagster.yaml) lets one run
tagged `goat/serving-backend: local` in progress at a time, so one local CPU server is never asked
to serve two benchmarks at once, while Modal and cloud runs go side by side (up to the queue's
limit of runs).

The sensors tag the runs they request. A run launched from the UI — one materialization, or each
run of a backfill over several partitions — is tagged when it is submitted, by
`ServingBackendRunCoordinator`: Dagster's queued run coordinator (what dagster.yaml configures)
plus this one step, its documented way to extend run submission. The tag comes from the run's
`dagster/partition` (a model of models.yaml) and the registry's backend of that model.
"""

from __future__ import annotations

import logging

from dagster import DagsterRun, QueuedRunCoordinator, SubmitRunContext

from goat_dagster.registry import ModelEntry, RegistryError, load_registry

RUN_TAG = "goat/serving-backend"  # dagster.yaml limits concurrent runs per value of this tag
PARTITION_TAG = "dagster/partition"
log = logging.getLogger(__name__)


def backend_tags(entry: ModelEntry) -> dict[str, str]:
    """The run tags of a run working on `entry`'s partition."""
    return {RUN_TAG: entry.backend}


def tags_for_partition(partition: str) -> dict[str, str]:
    """The backend tag of a run of one model partition; none when models.yaml cannot say."""
    try:
        return backend_tags(load_registry().get(partition))
    except (RegistryError, KeyError) as exc:  # the run goes on untagged; its steps still run
        log.warning("run of partition %r not tagged with its serving backend: %s", partition, exc)
        return {}


class ServingBackendRunCoordinator(QueuedRunCoordinator):
    """Dagster's run queue, with each run of a model partition tagged with its serving backend
    before it is queued (unless a tag says so already)."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        partition = run.tags.get(PARTITION_TAG)
        if partition and RUN_TAG not in run.tags:
            tags = tags_for_partition(partition)
            if tags:
                self._instance.add_run_tags(run.run_id, tags)
                tagged = self._instance.get_run_by_id(run.run_id)
                context = context._replace(dagster_run=tagged or run)
        return super().submit_run(context)
