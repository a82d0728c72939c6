"""A code location of one small job, for the run queue's ordering test (test_run_priority.py): what
the runs do does not matter there, only the order the queue starts them in."""

import time

from dagster import Definitions, job, op


@op
def wait_a_moment() -> None:
    time.sleep(1.0)


@job
def queued_job() -> None:
    wait_a_moment()


defs = Definitions(jobs=[queued_job])
