"""Langfuse read-back with the real langfuse 5 SDK client, against recorded responses.

No Langfuse server is reachable here, so a local HTTP server plays Langfuse's public API: it serves
`data/langfuse_observations_v2.json` (observations in the shape of GET /api/public/v2/observations,
built from the span attributes this proxy really exported) page by page with cursors, and checks
Basic auth. Everything on the client side is the product's code and the SDK's.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import openai
import pyarrow.parquet as pq
import pytest

from goat_dagster.tracing.export import TRACE_SCHEMA, collect_traces, export_traces
from goat_dagster.tracing.langfuse_reader import LangfuseSettings, read_langfuse
from goat_dagster.tracing.schema import call_metadata
from goat_dagster.tracing.sink_store import read_sink_lines
from tests.conftest import send_json

from .conftest import gateway, wait_until

RECORDED = json.loads((Path(__file__).parent / "data" / "langfuse_observations_v2.json").read_text())
RUN_ID = RECORDED["session_id"]
PK, SK = "pk-lf-recorded", "sk-lf-recorded-secret"


def _requester(observation: dict) -> dict:
    return json.loads(observation["metadata"]["attributes"]["metadata"])["requester_metadata"]


@pytest.fixture(scope="module")
def langfuse_api():
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            seen.append({"path": url.path, **q})
            want = "Basic " + base64.b64encode(f"{PK}:{SK}".encode()).decode()
            if self.headers.get("Authorization") != want:
                return self._send(401, {"message": "Invalid credentials"})
            if url.path != "/api/public/v2/observations":
                return self._send(404, {"message": "not found"})
            obs = [
                o
                for o in RECORDED["observations"]
                if o["sessionId"] == q.get("sessionId") and o["type"] == q.get("type", o["type"])
            ]
            start = int(base64.b64decode(q["cursor"]).decode()) if q.get("cursor") else 0
            limit = int(q.get("limit", 50))
            page = obs[start : start + limit]
            nxt = start + limit
            meta = {"cursor": base64.b64encode(str(nxt).encode()).decode()} if nxt < len(obs) else {}
            self._send(200, {"data": page, "meta": meta})

        def _send(self, code: int, body: dict) -> None:
            send_json(self, code, body)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield LangfuseSettings(PK, SK, f"http://127.0.0.1:{srv.server_address[1]}"), seen
    srv.shutdown()


def test_reads_every_page_with_the_v2_api(langfuse_api):
    settings, seen = langfuse_api
    recs = read_langfuse(settings, RUN_ID, page_size=2)
    assert len(seen) == 2 and "cursor" not in seen[0] and seen[1]["cursor"]
    assert seen[0]["sessionId"] == RUN_ID and seen[0]["type"] == "GENERATION"
    assert "metadata" in seen[0]["fields"] and seen[0]["expandMetadata"] == "attributes"
    assert [r.call_id for r in recs] == [_requester(o)["goat_call_id"] for o in RECORDED["observations"]]
    first, _, failed = recs
    assert first.source == "langfuse" and first.run_id == RUN_ID
    assert first.trace_id == "1f0c4a9e8b7d4c2a9e6f5d4c3b2a1908"  # ours, not the OTEL trace id
    assert (first.task_id, first.epoch, first.step, first.generation_name) == ("t1", 0, 1, "t1#e0#s1")
    assert first.model == "smollm2-135m-local" and first.provider_model == "openai/smollm2-135m"
    assert (first.prompt_tokens, first.completion_tokens, first.total_tokens) == (11, 8, 19)
    assert first.latency_s == 0.8 and first.cost_usd == 0.0 and first.status == "success"
    assert "task:t1" in first.tags
    assert (
        failed.status == "error"
        and "AuthenticationError" in failed.error
        and failed.model == "gpt-4.1-mini"
        and failed.output is None
    )


def test_wrong_credentials_and_no_server_are_clear_errors(langfuse_api):
    settings, _ = langfuse_api
    from goat_dagster.tracing.langfuse_reader import LangfuseReadError

    with pytest.raises(LangfuseReadError, match=r"answered 401 .*check LANGFUSE_PUBLIC_KEY") as err:
        read_langfuse(LangfuseSettings(PK, "sk-lf-wrong", settings.host), RUN_ID)
    assert "sk-lf-wrong" not in str(err.value)
    with pytest.raises(LangfuseReadError, match="unreachable"):
        read_langfuse(LangfuseSettings(PK, "sk-lf-x", "http://127.0.0.1:9"), RUN_ID)


@pytest.mark.integration
def test_export_schema_is_the_same_from_both_sources(langfuse_api, proxy_url):
    """The recorded calls made for real through the proxy (same ids), exported from the sink and
    from Langfuse: same Parquet schema, same calls, same identities."""
    settings, _ = langfuse_api
    for o in RECORDED["observations"]:
        md = _requester(o)
        meta = call_metadata(
            run_id=RUN_ID,
            suite=md["goat_suite"],
            model="smollm2-135m-local",
            task_id=md["goat_task_id"],
            epoch=md["goat_epoch"],
            trace_id=md["trace_id"],
            call_id=md["goat_call_id"],
            step=md["goat_step"],
        )
        ok = o["level"] != "ERROR"
        model = "smollm2-135m-local" if ok else "gpt-4.1-mini"  # a cloud call that fails (fake key)
        try:
            gateway(model).openai(max_retries=0).chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "Say hi"}],
                max_tokens=8,
                extra_body={"metadata": meta},
            )
        except openai.APIError:
            assert not ok
    assert wait_until(lambda: len({d["call_id"] for d in read_sink_lines(RUN_ID)}) == 3, 10)

    sink_src, sink_recs = collect_traces(RUN_ID, source="sink")
    sink_path = export_traces(RUN_ID, source="sink", records=sink_recs).path
    sink_tbl = pq.read_table(sink_path)
    lf_src, lf_recs = collect_traces(RUN_ID, langfuse=settings)
    lf_tbl = pq.read_table(export_traces(RUN_ID, langfuse=settings, records=lf_recs).path)
    assert (sink_src, lf_src) == ("sink", "langfuse")
    assert sink_tbl.schema.equals(lf_tbl.schema) and sink_tbl.schema.equals(TRACE_SCHEMA)

    cols = ["trace_id", "run_id", "suite", "task_id", "epoch", "step", "generation_name", "status", "model"]

    def by_call(tbl) -> dict:  # the sink may hold one line per failed attempt: one row per call
        return {r["call_id"]: tuple(r[c] for c in cols) for r in tbl.to_pylist()}

    assert by_call(sink_tbl) == by_call(lf_tbl)
