"""The local trace sink's files: how a LiteLLM call becomes one JSON line, where lines go, and how
they are read back as `TraceRecord`s.

Layout: `$GOAT_HOME/traces/<run_id>.jsonl` for calls that carry a `session_id` (= run id), and
`$GOAT_HOME/traces/_unscoped/<YYYY-MM-DD>.jsonl` for the rest. One file per run keeps reading a
run cheap and lets runs write concurrently. This module does not import LiteLLM (the reader runs
in Dagster and the CLI); `goat_dagster.tracing.sink` is the proxy-side callback.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from goat_dagster import config
from goat_dagster.tracing.masking import mask_obj, mask_text, secret_values
from goat_dagster.tracing.schema import TraceRecord

UNSCOPED = "_unscoped"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_lock = threading.Lock()


def sink_dir() -> Path:
    return config.paths().traces


def run_file(run_id: str) -> Path:
    name = _SAFE.sub("_", run_id).strip("._") or "run"
    return sink_dir() / f"{name}.jsonl"


def export_path(run_id: str) -> Path:
    """The run's exported traces in the lake (`tracing.export` writes it; readers find it here
    without importing pyarrow)."""
    return config.paths().lake_traces / f"{run_file(run_id).stem}.parquet"


def _ts(epoch: Any) -> datetime | None:
    if isinstance(epoch, int | float) and epoch > 0:
        return datetime.fromtimestamp(float(epoch), UTC)
    if isinstance(epoch, datetime):
        return epoch if epoch.tzinfo else epoch.replace(tzinfo=UTC)
    return None


def _cap(value: Any, limit: int, secrets: list[str]) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = mask_text(text, secrets)
    return text if len(text) <= limit else text[:limit] + f"…[+{len(text) - limit} chars]"


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def requester_metadata(payload: Mapping[str, Any], kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The request body's `metadata` (what `call_metadata()` produced) from a LiteLLM payload, over
    what the proxy key says (a scoped key's run and attempt ids: calls of an external agent that
    sends no metadata of ours are still filed under their attempt)."""
    md = payload.get("metadata") or {}
    md = md if isinstance(md, Mapping) else {}
    lp = (kwargs or {}).get("litellm_params") or {}
    meta = lp.get("metadata") if isinstance(lp, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    keyed = md.get("user_api_key_auth_metadata") or meta.get("user_api_key_metadata")
    out = dict(keyed) if isinstance(keyed, Mapping) else {}
    req = md.get("requester_metadata")
    if isinstance(req, Mapping) and req:
        out.update(req)
    else:
        out.update({k: v for k, v in meta.items() if k == "tags" or k.startswith("goat_") or k in _ID_KEYS})
    return out


_ID_KEYS = ("trace_id", "session_id", "generation_name", "trace_name")


def record_from_payload(
    payload: Mapping[str, Any],
    kwargs: Mapping[str, Any] | None = None,
    *,
    capture_io: bool | None = None,
    io_cap: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One sink line from LiteLLM's `StandardLoggingPayload` (a dict): a `TraceRecord` plus the
    request parameters the deployment was called with. Secrets masked, input/output capped."""
    env = os.environ if environ is None else environ
    secrets = secret_values(env)
    capture = config.settings().trace_io if capture_io is None else capture_io  # GOAT_TRACE_IO
    cap = config.settings().trace_io_max_chars if io_cap is None else io_cap  # GOAT_TRACE_IO_MAX_CHARS
    req = requester_metadata(payload, kwargs)
    start, end = _ts(payload.get("startTime")), _ts(payload.get("endTime"))
    first = _ts(payload.get("completionStartTime"))
    status = "success" if payload.get("status") == "success" else "error"
    err_info = payload.get("error_information") or {}
    error = (payload.get("error_str") or err_info.get("error_message")) if status == "error" else None
    tags = req.get("tags") if isinstance(req.get("tags"), list) else list(payload.get("request_tags") or [])
    hidden = payload.get("hidden_params") or {}
    params = {
        k: v for k, v in (payload.get("model_parameters") or {}).items() if k not in ("tools", "functions")
    }
    rec = TraceRecord(
        source="sink",
        call_id=req.get("goat_call_id"),
        trace_id=req.get("trace_id") or payload.get("trace_id"),
        run_id=req.get("session_id") or req.get("goat_run_id"),
        suite=req.get("goat_suite"),
        task_id=req.get("goat_task_id"),
        epoch=_int(req.get("goat_epoch")),
        step=_int(req.get("goat_step")),
        generation_name=req.get("generation_name"),
        model=payload.get("model_group") or payload.get("model"),
        provider_model=hidden.get("litellm_model_name") or payload.get("model"),
        start_time=start,
        end_time=end,
        latency_s=(end - start).total_seconds() if start and end else None,
        ttft_s=(first - start).total_seconds() if first and start and payload.get("stream") else None,
        prompt_tokens=_int(payload.get("prompt_tokens")),
        completion_tokens=_int(payload.get("completion_tokens")),
        total_tokens=_int(payload.get("total_tokens")),
        cost_usd=float(payload.get("response_cost") or 0.0),
        status=status,
        error=_cap(error, 2000, secrets) if error else None,
        tags=[str(t) for t in tags],
        input=_cap(payload.get("messages"), cap, secrets) if capture else None,
        output=_cap(payload.get("response"), cap, secrets) if capture and status == "success" else None,
    )
    line = rec.model_dump(mode="json")
    line["litellm_call_id"] = payload.get("id")
    line["api_base"] = mask_text(str(payload.get("api_base") or ""), secrets)
    line["request_params"] = mask_obj(params, secrets)
    line["stream"] = bool(payload.get("stream"))
    return line


def append_line(line: Mapping[str, Any]) -> Path:
    """Append one record to its run's file (or today's unscoped file). One `write` per line."""
    run_id = line.get("run_id")
    if run_id:
        target = run_file(str(run_id))
    else:
        target = sink_dir() / UNSCOPED / f"{datetime.now(UTC):%Y-%m-%d}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(line, default=str, ensure_ascii=False) + "\n"
    with _lock, open(target, "a", encoding="utf-8") as fh:
        fh.write(data)
    return target


def iter_lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            raw = raw.strip()
            if not raw:
                continue
            try:
                yield json.loads(raw)
            except json.JSONDecodeError:
                continue  # a line cut by a crash mid-write; the rest of the file is still good


def read_sink(run_id: str) -> list[TraceRecord]:
    """The sink's traces of one run, in call order."""
    recs = [TraceRecord.model_validate(d) for d in iter_lines(run_file(run_id)) if d.get("run_id") == run_id]
    return sorted(recs, key=lambda r: r.start_time or datetime.min.replace(tzinfo=UTC))


def read_sink_lines(run_id: str) -> list[dict[str, Any]]:
    """The raw sink lines of one run (TraceRecord fields plus request_params, api_base, …)."""
    return [d for d in iter_lines(run_file(run_id)) if d.get("run_id") == run_id]


def read_sink_traces(run_id: str, trace_ids: list[str]) -> list[TraceRecord]:
    """The sink's traces of some attempts of a run, in call order, without parsing the run's other
    lines (a big run's file is long; a trace id is 32 hex characters, found as text first)."""
    wanted = set(trace_ids)
    path = run_file(run_id)
    out: list[TraceRecord] = []
    if not wanted or not path.exists():
        return out
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            if not any(t in raw for t in wanted):
                continue
            try:
                d = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if d.get("run_id") == run_id and d.get("trace_id") in wanted:
                out.append(TraceRecord.model_validate(d))
    return sorted(out, key=lambda r: r.start_time or datetime.min.replace(tzinfo=UTC))
