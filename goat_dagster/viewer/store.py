"""What the viewer reads: runs, one run's rows, one attempt's transcript, comparisons, the leaderboard.

Everything comes through the modules that own each format: the results lake (`bench.lake`), the
warehouse SQL (`analysis.runs` and `analysis.snapshot`: run summaries with their intervals, `calls`,
`ab_compare`), the journals (`bench.journal`, `analysis.run_reports`), the transcripts
(`bench.transcript`) and the traces (`tracing`). A page about one run reads that run's files only;
a transcript reads one task's files. Results are cached by the (name, size, mtime) of the files
they came from, so a page shown again costs a few `stat` calls, and a run that changes shows its
new state at once.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from goat_dagster import config
from goat_dagster.analysis.compare import Comparison, compare_in
from goat_dagster.analysis.leaderboard import Leaderboard, RunComparison, build_leaderboard, compare_runs
from goat_dagster.analysis.run_reports import row_notes
from goat_dagster.analysis.runs import details_of_run, journal_details, lake_run_details
from goat_dagster.analysis.snapshot import open_files, query
from goat_dagster.bench import lake
from goat_dagster.bench.journal import journal_file, read_spec, read_task_entries, run_dirs
from goat_dagster.bench.transcript import Attempt, read_attempts
from goat_dagster.tracing.export import export_path
from goat_dagster.tracing.langfuse_reader import LangfuseSettings
from goat_dagster.tracing.sink_store import read_sink_traces

# ---- caching by file signature -------------------------------------------------------------------


def _stat(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (path.name, st.st_size, st.st_mtime_ns)


def _dir_sig(directory: Path, suffix: str) -> tuple[tuple[str, int, int], ...]:
    out = []
    try:
        with os.scandir(directory) as it:
            for e in it:
                if e.name.endswith(suffix) and not e.name.startswith("."):
                    st = e.stat()
                    out.append((e.name, st.st_size, st.st_mtime_ns))
    except OSError:
        return ()
    return tuple(sorted(out))


class _Cache:
    """A small LRU of (key -> (signature, value)); a value is computed again when its files changed."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self.items: OrderedDict[Any, tuple[Any, Any]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Any, sig: Any, compute: Callable[[], Any]) -> Any:
        with self.lock:
            hit = self.items.get(key)
            if hit is not None and hit[0] == sig:
                self.items.move_to_end(key)
                return hit[1]
        value = compute()
        with self.lock:
            self.items[key] = (sig, value)
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


_runs_cache = _Cache(4)
_run_cache = _Cache(8)
_board_cache = _Cache(2)


def clear_caches() -> None:
    for c in (_runs_cache, _run_cache, _board_cache):
        c.clear()


# ---- runs ------------------------------------------------------------------------------------------
# A run's numbers are the warehouse's `run_summary` (analysis.runs.run_details); here only which
# runs there are, and whether each is done (in the lake) or incomplete (a journal only).


def _lake_sig() -> tuple[Any, ...]:
    p = config.paths()
    journals = tuple(_stat(d / "results.jsonl") for d in run_dirs())
    return (_dir_sig(p.lake_results, ".parquet"), _dir_sig(p.lake_traces, ".parquet"), journals)


def _all_runs() -> list[dict[str, Any]]:
    runs = [{**r, "state": "done"} for r in lake_run_details()]
    known = {r["run_id"] for r in runs}
    for d in run_dirs():
        if d.name in known:
            continue
        spec = read_spec(d.name)
        if spec is not None:
            summary = journal_details(spec)
            summary.pop("rows")
            runs.append({**summary, "state": "incomplete"})
    runs.sort(key=lambda r: (r["started_at"] is not None, r["started_at"] or datetime.min), reverse=True)
    return runs


def list_runs() -> list[dict[str, Any]]:
    """Every run: the lake's and the journals' not yet in it, newest first."""
    return _runs_cache.get("runs", _lake_sig(), _all_runs)


# ---- one run ------------------------------------------------------------------------------------------


@dataclass
class RunDetail:
    summary: dict[str, Any]
    rows: list[dict[str, Any]]  # results rows (lake columns) plus `note` and `tokens`
    spec: dict[str, Any] | None = None  # run.json, when the journal is here
    index: dict[tuple[str, int], int] = field(init=False)  # (task, epoch) -> position in rows

    def __post_init__(self) -> None:
        self.index = {(r["task_id"], r["epoch"]): i for i, r in enumerate(self.rows)}

    def row(self, task_id: str, epoch: int) -> dict[str, Any] | None:
        i = self.index.get((task_id, epoch))
        return None if i is None else self.rows[i]

    def neighbours(self, task_id: str, epoch: int) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
        """The rows before and after this one, in the run's order."""
        i = self.index.get((task_id, epoch))
        if i is None:
            return None, None
        keys = [(r["task_id"], r["epoch"]) for r in self.rows[max(0, i - 1) : i + 2]]
        return (keys[0] if i > 0 else None), (keys[-1] if i + 1 < len(self.rows) else None)


def _run_sig(run_id: str) -> tuple[Any, ...]:
    return (
        _stat(lake.results_file(run_id)),
        _stat(export_path(run_id)),
        _stat(journal_file(run_id)),
        _stat(config.paths().runs / run_id / "run.json"),
    )


def _load_run(run_id: str) -> RunDetail | None:
    spec = read_spec(run_id)
    summary = details_of_run(run_id)
    if summary is not None:
        summary["state"] = "done"
        rows = lake.read_rows(run_id)
    elif spec is not None:
        summary = {**journal_details(spec), "state": "incomplete"}
        rows = summary.pop("rows")
    else:
        return None
    notes = row_notes(run_id)
    for r in rows:
        r["note"] = notes.get((r["task_id"], r["epoch"]), "")
        r["tokens"] = (r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0)
    return RunDetail(summary, rows, spec.model_dump(mode="json") if spec else None)


def run_detail(run_id: str) -> RunDetail | None:
    """One run: its summary (the warehouse's `run_summary` of its own files) and every row."""
    return _run_cache.get(("run", run_id), _run_sig(run_id), lambda: _load_run(run_id))


SORTABLE = ("task_id", "epoch", "status", "error_kind", "steps", "tool_calls", "tokens", "cost_usd",
            "wall_s", "note")  # fmt: skip


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    per_page: int


def paginate(rows: list[Any], page: int, per_page: int) -> Page:
    pages = max(1, -(-len(rows) // per_page))
    page = min(max(1, page), pages)
    return Page(rows[(page - 1) * per_page : page * per_page], len(rows), page, pages, per_page)


def task_rows(
    detail: RunDetail,
    *,
    status: str | None = None,
    error_kind: str | None = None,
    q: str | None = None,
    sort: str = "",
    desc: bool = False,
) -> list[dict[str, Any]]:
    """A run's rows filtered (status, error kind, text in task id or note) and sorted."""
    rows: Iterable[dict[str, Any]] = detail.rows
    if status:
        rows = (r for r in rows if r["status"] == status)
    if error_kind:
        rows = (r for r in rows if (r["error_kind"] or "") == error_kind)
    if q:
        needle = q.lower()
        rows = (r for r in rows if needle in r["task_id"].lower() or needle in (r["note"] or "").lower())
    out = list(rows)
    if sort in SORTABLE:
        out.sort(key=lambda r: (r[sort] is None, r[sort] if r[sort] is not None else 0), reverse=desc)
    return out


# ---- one attempt -------------------------------------------------------------------------------------


@dataclass
class TaskView:
    run_id: str
    task_id: str
    epoch: int
    row: dict[str, Any] | None
    attempts: list[Attempt]
    journal: list[dict[str, Any]]  # the journal's entries of this task x epoch (details of older runs)
    traces: dict[Any, dict[str, Any]] = field(default_factory=dict)  # call_key -> trace record
    untraced: list[dict[str, Any]] = field(default_factory=list)  # traces matched to no recorded call
    langfuse_host: str | None = None
    prev: tuple[str, int] | None = None
    next: tuple[str, int] | None = None


def call_key(trace_id: str, event: dict[str, Any]) -> Any:
    """What matches a recorded call to its trace: its call id, or (attempt, step) for a call
    recorded without one."""
    return event.get("call_id") or (trace_id, event.get("step"))


def _traces_of(run_id: str, trace_ids: list[str]) -> list[dict[str, Any]]:
    """The calls of these attempts: the warehouse's `calls` over the run's exported traces, else
    the local sink's records (a run not exported yet)."""
    if not trace_ids:
        return []
    exported = export_path(run_id)
    if exported.exists():
        results = lake.results_file(run_id)
        with open_files([results] if results.exists() else [], [exported]) as snap:
            return query(
                snap.con,
                "SELECT * FROM calls WHERE list_contains(?, trace_id) ORDER BY start_time",
                [trace_ids],
            )
    return [t.model_dump() for t in read_sink_traces(run_id, trace_ids)]


def task_view(run_id: str, task_id: str, epoch: int) -> TaskView | None:
    """A task x epoch of a run: its row, every recorded attempt, their traces."""
    detail = run_detail(run_id)
    if detail is None:
        return None
    row = detail.row(task_id, epoch)
    attempts = read_attempts(run_id, task_id, epoch)
    journal = [
        {"row": e["row"].model_dump(mode="json"), "detail": e.get("detail") or {}}
        for e in read_task_entries(journal_file(run_id), task_id, epoch)
    ]
    if row is None and not attempts and not journal:
        return None
    trace_ids = [a.trace_id for a in attempts] or [
        n["trace_id"] for e in journal for n in e["detail"].get("attempts", []) if n.get("trace_id")
    ]
    traces = _traces_of(run_id, trace_ids)
    # a call is matched to its trace by call id; one recorded without an id, by its step
    recorded = {call_key(a.trace_id, e) for a in attempts for e in a.events if e.get("type") == "call"}
    by_call: dict[Any, dict[str, Any]] = {}
    for t in traces:
        by_call.setdefault(t.get("call_id"), t)
        by_call.setdefault((t.get("trace_id"), t.get("step")), t)
    untraced = [
        t
        for t in traces
        if t.get("call_id") not in recorded and (t.get("trace_id"), t.get("step")) not in recorded
    ]
    prev, nxt = detail.neighbours(task_id, epoch)
    return TaskView(
        run_id, task_id, epoch, row, attempts, journal, by_call, untraced, langfuse_host(), prev, nxt
    )


# ---- comparisons and the leaderboard ---------------------------------------------------------------


class CompareError(LookupError):
    """Two runs that cannot be compared (one is not in the lake)."""


def comparison(run_a: str, run_b: str) -> tuple[RunComparison, Comparison]:
    """Two runs on their shared tasks: which tasks flipped (the warehouse's `ab_compare`) and the
    paired statistics (`analysis.compare`: the difference with its paired 95% interval, exact McNemar)."""
    files = []
    for run in (run_a, run_b):
        f = lake.results_file(run)
        if not f.exists():
            raise CompareError(f"run {run!r} is not in the results lake (unknown, or not finished)")
        files.append(f)
    with open_files(files) as snap:
        return compare_runs(snap.con, run_a, run_b), compare_in(snap.con, run_a, run_b)


def leaderboard() -> Leaderboard:
    """The latest run per (model, suite), as the `leaderboard` asset computes it."""
    p = config.paths()
    sig = (_dir_sig(p.lake_results, ".parquet"), _dir_sig(p.lake_traces, ".parquet"))
    return _board_cache.get("board", sig, lambda: build_leaderboard(p))


def langfuse_host() -> str | None:
    lf = LangfuseSettings.from_env()
    return lf.host.rstrip("/") if lf else None
