"""Trace export and verification for one benchmark run.

- `collect_traces(run_id)`: the run's `TraceRecord`s from Langfuse when configured, else the sink.
- `export_traces(run_id)`: those records as `$GOAT_HOME/lake/traces/<run_id>.parquet`, one file per
  run (concurrent runs never contend), in the `TraceRecord` schema whichever the source.
- `verify_run(run_id)`: every harness call (`$GOAT_HOME/runs/<run_id>/calls.jsonl`, `CallRecord`)
  matched to a trace by `call_id`: found / missing.
- `export_run(run_id)`: both, as the `trace_export` asset does them.

Degrade, don't block: with Langfuse the source but not handing traces back (unreachable, keys
refused), `verify_run` and `export_run` read the local sink instead — it holds every call the proxy
saw — and their results say so in `note` (source used, and why); `fallback=False` (`goat traces
verify --source langfuse`) makes that an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, Literal, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from goat_dagster import config
from goat_dagster.atomic import written_aside
from goat_dagster.tabular import arrow_schema
from goat_dagster.tracing.langfuse_reader import LangfuseReadError, LangfuseSettings, read_langfuse
from goat_dagster.tracing.schema import CallRecord, TraceRecord
from goat_dagster.tracing.sink_store import export_path, read_sink

Source = Literal["auto", "sink", "langfuse"]
R = TypeVar("R")


# ---- the Parquet schema, derived from TraceRecord ---------------------------------------------

TRACE_SCHEMA = arrow_schema(TraceRecord)


def traces_table(records: list[TraceRecord]) -> pa.Table:
    rows = [r.model_dump() for r in records]
    for row in rows:
        for k in ("start_time", "end_time"):
            if row[k] is not None and row[k].tzinfo is None:
                row[k] = row[k].replace(tzinfo=UTC)
    return pa.Table.from_pylist(rows, schema=TRACE_SCHEMA)


# ---- sources ---------------------------------------------------------------------------------


def resolve_source(source: Source = "auto", langfuse: LangfuseSettings | None = None) -> str:
    if source == "auto":
        return "langfuse" if (langfuse or LangfuseSettings.from_env()) else "sink"
    return source


def collect_traces(
    run_id: str, *, source: Source = "auto", langfuse: LangfuseSettings | None = None
) -> tuple[str, list[TraceRecord]]:
    """(source used, the run's traces)."""
    used = resolve_source(source, langfuse)
    if used == "langfuse":
        settings = langfuse or LangfuseSettings.from_env()
        if settings is None:
            raise ValueError(
                "source 'langfuse' needs LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY and LANGFUSE_HOST"
            )
        return used, read_langfuse(settings, run_id)
    return used, read_sink(run_id)


@dataclass
class ExportResult:
    run_id: str
    source: str
    path: Path
    rows: int
    records: list[TraceRecord] = field(repr=False, default_factory=list)
    note: str | None = None  # why `source` is not the configured one

    def summary(self) -> dict[str, Any]:
        recs = self.records
        return {
            "run_id": self.run_id,
            "source": self.source,
            "note": self.note,
            "path": str(self.path),
            "rows": self.rows,
            "errors": sum(r.status == "error" for r in recs),
            "prompt_tokens": sum(r.prompt_tokens or 0 for r in recs),
            "completion_tokens": sum(r.completion_tokens or 0 for r in recs),
            "cost_usd": round(sum(r.cost_usd or 0.0 for r in recs), 6),
        }


def write_traces(records: list[TraceRecord], path: Path) -> Path:
    with written_aside(path) as tmp:
        pq.write_table(traces_table(records), tmp)
    return path


def export_traces(
    run_id: str,
    *,
    source: Source = "auto",
    langfuse: LangfuseSettings | None = None,
    records: list[TraceRecord] | None = None,
) -> ExportResult:
    """Write the run's traces to the lake (Parquet). `records` skips collecting them again."""
    if records is None:
        used, records = collect_traces(run_id, source=source, langfuse=langfuse)
    else:
        used = resolve_source(source, langfuse)
    path = write_traces(records, export_path(run_id))
    return ExportResult(run_id=run_id, source=used, path=path, rows=len(records), records=records)


# ---- verification ----------------------------------------------------------------------------


def calls_file(run_id: str) -> Path:
    return config.paths().runs / run_id / "calls.jsonl"


def load_calls(run_id: str) -> list[CallRecord]:
    """The harness's calls of a run: none for a run that made no LLM call (the oracle, or every
    task failed before one); FileNotFoundError names the file when there is no such run."""
    f = calls_file(run_id)
    if not f.exists():
        if (f.parent / "run.json").exists():
            return []
        raise FileNotFoundError(f"{f}: no call journal for run {run_id!r}")
    out = []
    for line in f.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(CallRecord.model_validate(json.loads(line)))
            except (json.JSONDecodeError, ValueError):
                continue  # a torn last line of a killed run
    return out


@dataclass
class VerifyResult:
    run_id: str
    source: str
    n_calls: int
    found: list[str]
    missing: list[dict[str, Any]]
    extra: list[str]  # traces whose call_id is not in the journal (retries, other clients)
    records: list[TraceRecord] = field(repr=False, default_factory=list)
    note: str | None = None  # why `source` is not the configured one

    @property
    def ok(self) -> bool:
        return not self.missing

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "source": self.source,
            "calls": self.n_calls,
            "found": len(self.found),
            "missing": len(self.missing),
            "extra": len(self.extra),
            "ok": self.ok,
            "note": self.note,
            "missing_calls": self.missing,
        }


def match_calls(
    calls: list[CallRecord], traces: list[TraceRecord]
) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    traced = {t.call_id for t in traces if t.call_id}
    found = [c.call_id for c in calls if c.call_id in traced]
    missing = [
        {
            "call_id": c.call_id,
            "task_id": c.task_id,
            "epoch": c.epoch,
            "step": c.step,
            "ok": c.ok,
            "error": c.error,
        }
        for c in calls
        if c.call_id not in traced
    ]
    called = {c.call_id for c in calls}
    extra = sorted(traced - called)
    return found, missing, extra


def sink_instead(read: Callable[[Source], R], source: Source, fallback: bool) -> tuple[R, str | None]:
    """`read(source)`; when that is Langfuse and it does not hand traces back, with `fallback`,
    `read("sink")` and a note saying why."""
    try:
        return read(source), None
    except LangfuseReadError as exc:
        if not fallback:
            raise
        return read("sink"), f"{exc}; read the local trace sink instead"


def verify_run(
    run_id: str,
    *,
    source: Source = "auto",
    langfuse: LangfuseSettings | None = None,
    wait_s: float = 5.0,
    fallback: bool = True,
) -> VerifyResult:
    """Match every call of the run to a trace. Callbacks write a moment after the response (and
    Langfuse ingests with a delay), so missing calls are re-polled for up to `wait_s` seconds."""
    result, note = sink_instead(
        lambda src: _verify(run_id, source=src, langfuse=langfuse, wait_s=wait_s), source, fallback
    )
    result.note = note
    return result


def _verify(run_id: str, *, source: Source, langfuse: LangfuseSettings | None, wait_s: float) -> VerifyResult:
    calls = load_calls(run_id)
    used = resolve_source(source, langfuse)

    def look() -> VerifyResult:
        _, traces = collect_traces(run_id, source=used, langfuse=langfuse)
        found, missing, extra = match_calls(calls, traces)
        return VerifyResult(run_id, used, len(calls), found, missing, extra, traces)

    retrying = Retrying(
        retry=retry_if_result(lambda result: not result.ok),
        stop=stop_after_delay(wait_s),
        wait=wait_fixed(0.25 if used == "sink" else 2.0),
        retry_error_callback=lambda state: state.outcome.result(),  # still missing: say which
    )
    return retrying(look)


def export_run(
    run_id: str, *, source: Source = "auto", langfuse: LangfuseSettings | None = None, fallback: bool = True
) -> tuple[ExportResult, VerifyResult | None]:
    """The run's traces in the lake, and how they match the run's call journal (None: the run has no
    journal, so nothing can be matched; its traces are exported all the same). With Langfuse not
    answering, from the sink (`fallback`), both results saying so in `note`."""

    def read(src: Source) -> tuple[ExportResult, VerifyResult | None]:
        try:
            verified: VerifyResult | None = _verify(run_id, source=src, langfuse=langfuse, wait_s=5.0)
        except FileNotFoundError:
            verified = None
            _, records = collect_traces(run_id, source=src, langfuse=langfuse)
        else:
            records = verified.records
        return export_traces(run_id, source=src, langfuse=langfuse, records=records), verified

    (result, verified), note = sink_instead(read, source, fallback)
    result.note = note
    if verified is not None:
        verified.note = note
    return result, verified


def find_latest_run(model_names: set[str]) -> str | None:
    """The newest run in `$GOAT_HOME/runs` whose calls were made against one of `model_names`
    (model key, slug or gateway name), by journal modification time; None when there is none."""
    runs = config.paths().runs
    if not runs.is_dir():
        return None
    journals = sorted(runs.glob("*/calls.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
    for f in journals:
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                try:
                    model = json.loads(line).get("model")
                except json.JSONDecodeError:
                    continue
                if model in model_names:
                    return f.parent.name
                break
    return None
