"""Reading traces back from Langfuse with the langfuse 5 SDK: observations v2
(`LangfuseAPI(...).observations.get_many`, cursor pagination), mapped to `TraceRecord`.

The proxy sends generations to Langfuse through LiteLLM's `langfuse_otel` callback (OTLP). Langfuse
keeps a span's attributes in the observation's `metadata.attributes`; LiteLLM's `metadata` attribute
(a JSON string) holds `requester_metadata`, the request metadata the harness sent
(`call_metadata()`: goat_call_id, trace_id, session_id, ...). That is how a Langfuse observation is
matched to a harness call, the same key the local sink uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from goat_dagster import config
from goat_dagster.tracing.masking import mask_text, secret_values
from goat_dagster.tracing.schema import TraceRecord

FIELDS = "core,basic,time,io,metadata,model,usage,metrics,trace_context"
IO_CAP = 4000


@dataclass(frozen=True)
class LangfuseSettings:
    public_key: str
    secret_key: str
    host: str

    @classmethod
    def from_env(cls) -> LangfuseSettings | None:
        """From LANGFUSE_PUBLIC_KEY / LANGFUSE_SECRET_KEY / LANGFUSE_HOST; None unless all are set."""
        s = config.settings()
        if not (s.langfuse_public_key and s.langfuse_secret_key and s.langfuse_host):
            return None
        return cls(s.langfuse_public_key, s.langfuse_secret_key.get_secret_value(), s.langfuse_host)

    def __repr__(self) -> str:  # never print the secret key
        return f"LangfuseSettings(host={self.host!r}, public_key={self.public_key[:8]!r}…)"


def _maybe_json(v: Any) -> Any:
    if isinstance(v, str) and v[:1] in "{[":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


def find_requester_metadata(metadata: Any, depth: int = 0) -> dict[str, Any]:
    """The request metadata dict (the one with `goat_call_id`) anywhere inside observation metadata,
    whose values Langfuse may hold as JSON strings."""
    if depth > 6:
        return {}
    metadata = _maybe_json(metadata)
    if isinstance(metadata, dict):
        if "goat_call_id" in metadata:
            return metadata
        for v in metadata.values():
            found = find_requester_metadata(v, depth + 1)
            if found:
                return found
    elif isinstance(metadata, list):
        for v in metadata:
            found = find_requester_metadata(v, depth + 1)
            if found:
                return found
    return {}


def _attr(metadata: Mapping[str, Any] | None, key: str) -> Any:
    attrs = (metadata or {}).get("attributes")
    attrs = _maybe_json(attrs)
    return attrs.get(key) if isinstance(attrs, dict) else None


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _cap(v: Any, secrets: list[str]) -> str | None:
    if v is None:
        return None
    text = v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)
    text = mask_text(text, secrets)
    return text if len(text) <= IO_CAP else text[:IO_CAP] + f"…[+{len(text) - IO_CAP} chars]"


def record_from_observation(o: Any, *, secrets: list[str] | None = None) -> TraceRecord:
    """A Langfuse `ObservationV2` (generation) as a `TraceRecord`."""
    secrets = secret_values() if secrets is None else secrets
    md = o.metadata or {}
    req = find_requester_metadata(md)
    usage = o.usage_details or {}
    start, end = _utc(o.start_time), _utc(o.end_time)
    provider, name = _attr(md, "llm.provider"), _attr(md, "llm.model_name")
    provider_model = f"{provider}/{name}" if provider and name else o.model
    cost = o.total_cost if o.total_cost is not None else (o.cost_details or {}).get("total")
    error = o.level == "ERROR"
    tags = req.get("tags") if isinstance(req.get("tags"), list) else (o.tags or [])
    prompt = usage.get("input", usage.get("prompt_tokens"))
    completion = usage.get("output", usage.get("completion_tokens"))
    total = usage.get("total", usage.get("total_tokens"))
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    return TraceRecord(
        source="langfuse",
        call_id=req.get("goat_call_id"),
        trace_id=req.get("trace_id") or o.trace_id,
        run_id=req.get("session_id") or req.get("goat_run_id") or o.session_id,
        suite=req.get("goat_suite"),
        task_id=req.get("goat_task_id"),
        epoch=_int(req.get("goat_epoch")),
        step=_int(req.get("goat_step")),
        generation_name=req.get("generation_name") or o.name,
        model=_attr(md, "llm.response.model") or o.model,
        provider_model=provider_model,
        start_time=start,
        end_time=end,
        latency_s=o.latency
        if o.latency is not None
        else ((end - start).total_seconds() if start and end else None),
        ttft_s=o.time_to_first_token,
        prompt_tokens=_int(prompt),
        completion_tokens=_int(completion),
        total_tokens=_int(total),
        cost_usd=float(cost) if cost is not None else None,
        status="error" if error else "success",
        error=mask_text(o.status_message or "error", secrets) if error else None,
        tags=[str(t) for t in tags],
        input=_cap(o.input, secrets),
        output=_cap(o.output, secrets) if not error else None,
    )


def iter_observations(
    settings: LangfuseSettings, run_id: str, *, page_size: int = 100, timeout_s: float = 60
) -> Iterator[Any]:
    """Every generation of a run (`session_id` = run id), following the v2 API's cursor."""
    # The SDK's API client, as `Langfuse(...).api` builds it. Not `Langfuse(...)` itself: that keeps
    # one resource manager per public key for the life of the process (a later host or secret key
    # for the same public key would be ignored) and sets up an OTEL exporter a reader does not need.
    # Imported here: the SDK costs ~0.3 s to import, and only a configured Langfuse needs it.
    from langfuse.api import LangfuseAPI

    api = LangfuseAPI(
        base_url=settings.host.rstrip("/"),
        username=settings.public_key,
        password=settings.secret_key,
        x_langfuse_sdk_name="python",
        x_langfuse_public_key=settings.public_key,
        timeout=timeout_s,
    )
    cursor: str | None = None
    while True:
        page = api.observations.get_many(
            session_id=run_id,
            type="GENERATION",
            fields=FIELDS,
            expand_metadata="attributes",
            limit=page_size,
            cursor=cursor,
        )
        yield from page.data
        cursor = page.meta.cursor
        if not cursor:
            break


class LangfuseReadError(RuntimeError):
    """Langfuse did not hand the traces back (unreachable, bad keys, an API error); says which."""


def read_langfuse(settings: LangfuseSettings, run_id: str, *, page_size: int = 100) -> list[TraceRecord]:
    """Langfuse's traces of one run, as `TraceRecord`s in call order."""
    from langfuse.api.core.api_error import ApiError  # the SDK lazily, as in iter_observations

    secrets = secret_values()
    try:
        recs = [
            record_from_observation(o, secrets=secrets)
            for o in iter_observations(settings, run_id, page_size=page_size)
        ]
    except ApiError as exc:
        hint = " (check LANGFUSE_PUBLIC_KEY / LANGFUSE_SECRET_KEY)" if exc.status_code in (401, 403) else ""
        raise LangfuseReadError(
            f"Langfuse at {settings.host} answered {exc.status_code} reading run {run_id}{hint}: "
            f"{mask_text(str(exc.body)[:300], secrets)}"
        ) from None
    except httpx.HTTPError as exc:
        raise LangfuseReadError(
            f"Langfuse at {settings.host} is unreachable reading run {run_id}: {type(exc).__name__}: {exc}"
        ) from None
    return sorted(recs, key=lambda r: r.start_time or datetime.min.replace(tzinfo=UTC))


@dataclass(frozen=True)
class LangfuseHealth:
    ok: bool
    detail: str


HEALTH_PATH = "/api/public/health"


def langfuse_health(host: str, timeout_s: float = 10.0) -> LangfuseHealth:
    """Langfuse's own health endpoint (`GET /api/public/health?failIfDatabaseUnavailable=true`:
    200 `{"status": "OK", "version": ...}` when the API and its database answer, 503 otherwise).
    No key needed; what it says about the server is all it says."""
    url = host.rstrip("/") + HEALTH_PATH
    try:
        r = httpx.get(url, params={"failIfDatabaseUnavailable": "true"}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return LangfuseHealth(False, f"{url} unreachable: {type(exc).__name__}: {exc}")
    try:
        body = r.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    if r.status_code == 200 and str(body.get("status", "")).upper() == "OK":
        return LangfuseHealth(True, f"Langfuse {body.get('version', '?')} at {host} healthy")
    why = body.get("status") or body.get("message") or r.text[:120]
    return LangfuseHealth(False, f"{url} answered {r.status_code}: {why}")
