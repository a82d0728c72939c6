"""The viewer's addresses: the one place that knows its routes. Dagster metadata, `goat demo` and
the pages themselves build their links here; absolute links start from `GOAT_VIEW_URL`."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from goat_dagster import config


def run_path(run_id: str) -> str:
    return f"/runs/{quote(run_id, safe='')}"


def task_path(run_id: str, task_id: str, epoch: int) -> str:
    # task ids may hold '/' (HumanEval/0): kept as path separators, the route takes the rest
    return f"{run_path(run_id)}/tasks/{quote(task_id, safe='/')}/{int(epoch)}"


def compare_path(a: str | None = None, b: str | None = None, **extra: str | int) -> str:
    params = {k: v for k, v in {"a": a, "b": b, **extra}.items() if v not in (None, "")}
    return "/compare" + (f"?{urlencode(params)}" if params else "")


def leaderboard_path() -> str:
    return "/leaderboard"


def absolute(path: str) -> str:
    return config.settings().view_url + path


def run_url(run_id: str) -> str:
    return absolute(run_path(run_id))


def task_url(run_id: str, task_id: str, epoch: int = 1) -> str:
    return absolute(task_path(run_id, task_id, epoch))


def compare_url(a: str, b: str) -> str:
    return absolute(compare_path(a, b))


def leaderboard_url() -> str:
    return absolute(leaderboard_path())
