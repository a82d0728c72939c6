"""Runs of one serving backend at a time where it matters: the run queue (dagster.yaml) lets one run
tagged `goat/serving-backend: local` in progress at a time, so one local CPU server is never asked
to serve two benchmarks at once, while Modal and cloud runs go side by side (up to the queue's
limit of runs).

Which waiting run starts first is its `dagster/priority` (higher first, then first come): a model
that changed in models.yaml (GOAT_PRIORITY_MODEL_CHANGE, 10) before a suite that changed
(GOAT_PRIORITY_SUITE_CHANGE, 5) before runs launched by hand (Dagster's 0) before the runs of a
backfill (GOAT_PRIORITY_BACKFILL, -5). The sensors set theirs; a backfill's runs get theirs when
they are submitted, unless the backfill was launched with a `dagster/priority` tag of its own.

The sensors tag the runs they request. A run launched from the UI — one materialization, or each
run of a backfill over several partitions — is tagged when it is submitted, by
`ServingBackendRunCoordinator`: Dagster's queued run coordinator (what dagster.yaml configures)
plus this one step, its documented way to extend run submission. The tag comes from the run's
`dagster/partition` (a model of models.yaml) and the registry's backend of that model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal

from dagster import DagsterRun, QueuedRunCoordinator, SubmitRunContext

from goat_dagster import config
from goat_dagster.registry import ModelEntry, RegistryError, load_registry

RUN_TAG = "goat/serving-backend"  # dagster.yaml limits concurrent runs per value of this tag
PARTITION_TAG = "dagster/partition"
PRIORITY_TAG = "dagster/priority"  # the queue starts the highest first (Dagster's default: 0)
BACKFILL_TAG = "dagster/backfill"  # on every run a backfill launches
log = logging.getLogger(__name__)


def backend_tags(entry: ModelEntry) -> dict[str, str]:
    """The run tags of a run working on `entry`'s partition."""
    return {RUN_TAG: entry.backend}


def priority_tags(reason: Literal["model_change", "suite_change", "backfill"]) -> dict[str, str]:
    """The `dagster/priority` tag of a run started for `reason` (GOAT_PRIORITY_*)."""
    return {PRIORITY_TAG: str(getattr(config.settings(), f"priority_{reason}"))}


def tags_for_partition(partition: str) -> dict[str, str]:
    """The backend tag of a run of one model partition; none when models.yaml cannot say."""
    try:
        return backend_tags(load_registry().get(partition))
    except (RegistryError, KeyError) as exc:  # the run goes on untagged; its steps still run
        log.warning("run of partition %r not tagged with its serving backend: %s", partition, exc)
        return {}


class ServingBackendRunCoordinator(QueuedRunCoordinator):
    """Dagster's run queue, with each run of a model partition tagged with its serving backend, and
    each run of a backfill with the backfill priority, before it is queued (unless a tag says so
    already)."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        tags = missing_tags(run.tags)
        if tags:
            self._instance.add_run_tags(run.run_id, tags)
            tagged = self._instance.get_run_by_id(run.run_id)
            context = context._replace(dagster_run=tagged or run)
        return super().submit_run(context)


def missing_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """What a run submitted with `tags` still needs: the serving backend of its model partition,
    and a backfill's priority (a tag given at launch is kept)."""
    out: dict[str, str] = {}
    partition = tags.get(PARTITION_TAG)
    if partition and RUN_TAG not in tags:
        out.update(tags_for_partition(partition))
    if BACKFILL_TAG in tags and PRIORITY_TAG not in tags:
        out.update(priority_tags("backfill"))
    return out
