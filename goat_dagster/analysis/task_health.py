"""Task health: which tasks of a suite need a look before their numbers are trusted.

Rows of the warehouse's `task_health` view (one per task of each suite's current version, the
version of its newest run), with the flags:

- `oracle fails` / `oracle errors`: the latest oracle run (`--agent oracle`) did not pass it: the
  task's reference, tests or check are broken;
- `flaky`: a model's epochs disagree (some passed, some failed) in its latest run;
- `every model fails` / `every model passes` (2+ models' latest runs scored it): too hard, too easy,
  or a check that cannot fail;
- `infra errors`: attempts of it ended in infrastructure errors.

`goat results --task-health` prints them, the leaderboard asset shows them in its metadata.
"""

from __future__ import annotations

import duckdb
from pydantic import BaseModel, Field

from goat_dagster import config
from goat_dagster.analysis.snapshot import open_snapshot, query
from goat_dagster.textfmt import format_table, markdown_table


class TaskHealth(BaseModel):
    suite: str
    suite_version: str | None = None
    task_id: str
    oracle: str | None = Field(default=None, description="the latest oracle run's outcome of the task")
    models_scored: int = 0
    models_passed: int = 0
    models_failed: int = 0
    flaky_models: int = 0
    flaky_in: str | None = None
    infra_errors: int = 0
    errors: int = 0
    flags: list[str] = Field(default_factory=list)


def task_health_in(con: duckdb.DuckDBPyConnection, flagged_only: bool = False) -> list[TaskHealth]:
    rows = [TaskHealth.model_validate(r) for r in query(con, "SELECT * FROM task_health")]
    return [r for r in rows if r.flags] if flagged_only else rows


def task_health(paths: config.GoatPaths | None = None, flagged_only: bool = False) -> list[TaskHealth]:
    """The task health of every suite in the lake (flagged tasks only, if asked)."""
    with open_snapshot(paths) as snap:
        return task_health_in(snap.con, flagged_only)


def _row(h: TaskHealth) -> dict[str, str]:
    return {
        "suite": h.suite,
        "task": h.task_id,
        "flags": ", ".join(h.flags) or "ok",
        "oracle": h.oracle or "-",
        "models passed": f"{h.models_passed}/{h.models_scored}",
        "flaky in": h.flaky_in or "-",
        "infra errors": str(h.infra_errors),
    }


COLUMNS = ["suite", "task", "flags", "oracle", "models passed", "flaky in", "infra errors"]


def health_text(rows: list[TaskHealth]) -> str:
    """The flagged tasks as a table (and how many are fine)."""
    if not rows:
        return "No benchmark results in the lake yet."
    flagged = [r for r in rows if r.flags]
    fine = len(rows) - len(flagged)
    head = f"{len(flagged)} of {len(rows)} tasks flagged ({fine} fine)"
    return head + ("\n\n" + format_table([_row(r) for r in flagged], COLUMNS) if flagged else "")


def health_markdown(rows: list[TaskHealth], limit: int = 60) -> str:
    flagged = [r for r in rows if r.flags]
    if not rows:
        return "_No task results yet._"
    if not flagged:
        return f"_All {len(rows)} tasks look healthy._"
    more = f"\n\n… {len(flagged) - limit} more flagged tasks" if len(flagged) > limit else ""
    legend = (
        "\n\n- oracle fails: the reference does not pass its own check\n- flaky: a model's epochs "
        "disagree\n- every model fails / passes: 2+ models' latest runs\n- infra errors: attempts "
        "lost to the infrastructure"
    )
    table = markdown_table([_row(r) for r in flagged[:limit]], COLUMNS)
    return f"{len(flagged)} of {len(rows)} tasks flagged\n\n{table}{more}{legend}"
