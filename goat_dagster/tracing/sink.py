"""The local trace sink: a LiteLLM `CustomLogger` the proxy loads from its config
(`litellm_settings.callbacks: [goat_dagster.tracing.sink.trace_sink]`).

Every call through the proxy, success or failure, becomes one JSON line under `$GOAT_HOME/traces/`
(see `sink_store` for the format and the reader). It must never break a request: any error while
logging is written to the proxy log and swallowed.
"""

from __future__ import annotations

import logging
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from goat_dagster.tracing.sink_store import append_line, record_from_payload

log = logging.getLogger("goat.trace_sink")


class TraceSink(CustomLogger):
    """Appends one `TraceRecord` line per LLM call (ids, model, timings, tokens, cost, status)."""

    def _write(self, kwargs: dict[str, Any]) -> None:
        try:
            payload = kwargs.get("standard_logging_object")
            if not payload:
                log.warning("trace sink: call without standard_logging_object; not recorded")
                return
            append_line(record_from_payload(payload, kwargs))
        except Exception:  # never fail the request because of tracing
            log.exception("trace sink: could not record a call")

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):  # type: ignore[override]
        self._write(kwargs)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):  # type: ignore[override]
        self._write(kwargs)


trace_sink = TraceSink()
