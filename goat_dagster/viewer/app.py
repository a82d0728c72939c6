"""`goat view`: a read-only web app over $GOAT_HOME's results lake, run journals, transcripts and
traces (Starlette + Jinja2, plain HTML, one small script; no build step, nothing from a CDN).

Pages (links.py builds their addresses):
  /                                        runs, filterable by model, suite, agent, state
  /runs/<run_id>                           a run's summary and its task table (sort, filter, pages)
  /runs/<run_id>/tasks/<task_id>/<epoch>   the transcript of a task attempt
  /compare?a=<run>&b=<run>[&task=<id>]     the paired comparison; with a task, both transcripts
  /leaderboard                             the latest run per (model, suite)

A transcript is untrusted input (a model wrote it): templates autoescape every value, nothing a
model wrote is marked safe, and every response carries a Content-Security-Policy that allows this
app's own script and stylesheet only (no inline script, no inline style, nothing from elsewhere).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from goat_dagster import config
from goat_dagster.bench.transcript import Attempt
from goat_dagster.viewer import links, present, store

HERE = Path(__file__).resolve().parent
RUNS_PER_PAGE = 50
ROWS_PER_PAGE = 100
CALLS_PER_PAGE = 250  # model calls per page of a transcript
COMPARE_PER_PAGE = 200
MATRIX_TASKS_PER_PAGE = 200

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Adds the Content-Security-Policy and friends to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def qs(query: dict[str, str], **updates: Any) -> str:
    """A query string: `query` with `updates` applied, empty values left out."""
    merged = {**query, **{k: "" if v is None else str(v) for k, v in updates.items()}}
    return urlencode({k: v for k, v in merged.items() if v != ""})


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(present.FILTERS)
    env.globals.update(
        run_path=links.run_path,
        task_path=links.task_path,
        compare_path=links.compare_path,
        leaderboard_path=links.leaderboard_path,
        interval=present.interval,
        qs=qs,
    )
    return env


templates = Jinja2Templates(env=_environment())


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("goat_home", str(config.paths().home))
    context.setdefault("nav", "")
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        raise HTTPException(400, f"not a number: {value!r}") from None


def _choices(runs: list[dict[str, Any]], key: str) -> list[str]:
    return sorted({str(r[key]) for r in runs if r.get(key) is not None})


# ---- pages -----------------------------------------------------------------------------------------


def runs_page(request: Request) -> Response:
    q = request.query_params
    runs = store.list_runs()
    wanted = {k: q.get(k) or "" for k in ("model", "suite", "agent", "state")}
    shown = [r for r in runs if all(not v or str(r.get(k)) == v for k, v in wanted.items())]
    pg = store.paginate(shown, _int(q.get("page"), 1), RUNS_PER_PAGE)
    return page(
        request,
        "runs.html",
        nav="runs",
        runs=pg,
        total_runs=len(runs),
        filters=wanted,
        choices={k: _choices(runs, k) for k in ("model", "suite", "agent", "state")},
        query=dict(q),
    )


def _run_id(request: Request) -> str:
    run_id = request.path_params["run_id"]
    if run_id.startswith(".") or "/" in run_id:  # a run id names one directory of the lake
        raise HTTPException(404, f"no run {run_id!r}")
    return run_id


def run_page(request: Request) -> Response:
    run_id = _run_id(request)
    detail = store.run_detail(run_id)
    if detail is None:
        raise HTTPException(404, f"no run {run_id!r} in {config.paths().lake_results} or its journals")
    q = request.query_params
    sort = q.get("sort") or ""
    desc = q.get("desc") == "1"
    rows = store.task_rows(
        detail,
        status=q.get("status") or None,
        error_kind=q.get("error_kind") or None,
        q=q.get("q") or None,
        sort=sort,
        desc=desc,
    )
    per_page = min(max(_int(q.get("per_page"), ROWS_PER_PAGE), 10), 1000)
    pg = store.paginate(rows, _int(q.get("page"), 1), per_page)
    s = detail.summary
    others = [
        r
        for r in store.list_runs()
        if r["suite"] == s["suite"] and r["run_id"] != run_id and r["state"] == "done"
    ]
    return page(
        request,
        "run.html",
        run=s,
        spec=detail.spec,
        rows=pg,
        query=dict(q),
        sort=sort,
        desc=desc,
        sortable=store.SORTABLE,
        statuses=sorted({r["status"] for r in detail.rows}),
        error_kinds=sorted({r["error_kind"] for r in detail.rows if r["error_kind"]}),
        others=others[:200],
    )


def task_page(request: Request) -> Response:
    p = request.path_params
    view = store.task_view(_run_id(request), p["task_id"], int(p["epoch"]))
    if view is None:
        raise HTTPException(404, f"run {p['run_id']!r} has no task {p['task_id']!r} epoch {p['epoch']}")
    detail = store.run_detail(view.run_id)
    calls_page = _int(request.query_params.get("calls_page"), 1)
    attempts = [_attempt(a, view.traces, calls_page) for a in view.attempts]
    return page(
        request,
        "task.html",
        view=view,
        run=detail.summary if detail else None,
        attempts=attempts,
        untraced=view.untraced,
        query=dict(request.query_params),
    )


def _attempt(attempt: Attempt, traces: dict[Any, dict[str, Any]], calls_page: int = 1) -> dict[str, Any]:
    items, page_no, pages = present.page_of_calls(
        present.transcript_items(attempt.events, traces, attempt.trace_id), calls_page, CALLS_PER_PAGE
    )
    return {
        "trace_id": attempt.trace_id,
        "start": (attempt.first("start") or {}) if page_no == 1 else {},
        "end": attempt.last("end"),
        "items": items,
        "totals": present.calls_summary(attempt.events),
        "page": page_no,
        "pages": pages,
    }


def compare_page(request: Request) -> Response:
    q = request.query_params
    a, b = q.get("a") or "", q.get("b") or ""
    runs = [r for r in store.list_runs() if r["state"] == "done"]
    context: dict[str, Any] = {
        "a": a,
        "b": b,
        "runs": runs,
        "show": q.get("show") or "flipped",
        "nav": "compare",
    }
    if not (a and b):
        return page(request, "compare.html", comparison=None, **context)
    try:
        comp, paired = store.comparison(a, b)
    except store.CompareError as exc:
        raise HTTPException(404, str(exc)) from None
    by_id = {r["run_id"]: r for r in runs}
    shown = comp.rows if context["show"] == "all" else comp.flipped
    context.update(
        comparison=comp,
        paired=paired,
        run_a=by_id.get(a),
        run_b=by_id.get(b),
        shown=store.paginate(shown, _int(q.get("page"), 1), COMPARE_PER_PAGE),
        query=dict(q),
    )
    task = q.get("task")
    if task:
        epoch = _int(q.get("epoch"), 1)
        sides = []
        for run in (a, b):
            view = store.task_view(run, task, epoch)
            sides.append(
                {
                    "run_id": run,
                    "view": view,
                    "attempts": [_attempt(x, view.traces) for x in view.attempts[-1:]] if view else [],
                }
            )
        context.update(task=task, epoch=epoch, sides=sides)
        return page(request, "side_by_side.html", **context)
    return page(request, "compare.html", **context)


def leaderboard_page(request: Request) -> Response:
    board = store.leaderboard()
    by_suite: dict[str, list[dict[str, Any]]] = {}
    for r in board.rows:
        by_suite.setdefault(r["suite"], []).append(r)
    tasks_page = _int(request.query_params.get("tasks_page"), 1)
    matrix = {}
    for suite, rows in by_suite.items():  # the cells of one page of tasks only
        tasks = store.paginate(board.tasks.task_ids(suite), tasks_page, MATRIX_TASKS_PER_PAGE)
        cells = board.tasks.cells(suite, tasks.rows)
        tasks.rows = [(task_id, cells.get(task_id, {})) for task_id in tasks.rows]
        matrix[suite] = {"models": [r["model"] for r in rows], "tasks": tasks}
    return page(
        request,
        "leaderboard.html",
        nav="leaderboard",
        board=board,
        by_suite=by_suite,
        matrix=matrix,
        query=dict(request.query_params),
    )


def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True, "service": "goat view", "goat_home": str(config.paths().home)})


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return page(request, "error.html", status_code=exc.status_code, status=exc.status_code, detail=exc.detail)


def create_app() -> Starlette:
    routes = [
        Route("/", runs_page),
        Route("/runs/{run_id}", run_page),
        Route("/runs/{run_id}/tasks/{task_id:path}/{epoch:int}", task_page),
        Route("/compare", compare_page),
        Route("/leaderboard", leaderboard_page),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.add_middleware(SecurityHeaders)
    return app


def serve(host: str = "127.0.0.1", port: int = 8200, log_level: str = "info") -> None:
    """Run the viewer until SIGINT/SIGTERM (uvicorn stops on both)."""
    uvicorn.run(create_app(), host=host, port=port, log_level=log_level, access_log=False)
