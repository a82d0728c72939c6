"""The real control plane with real SmolLM2 workers: chat, stream, tools, errors, status, metrics,
the memory budget (eviction, never a busy worker), the queue bound, crash recovery."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def wait_for(pred, timeout: float = 30, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def read_sse(resp: httpx.Response) -> tuple[list[dict], bool]:
    events, done = [], False
    for line in resp.iter_lines():
        if not line.startswith("data: "):
            continue
        data = line[len("data: ") :]
        if data == "[DONE]":
            done = True
            continue
        events.append(json.loads(data))
    return events, done


def long_stream_body(model: str, n: int) -> dict:
    """A streamed completion of exactly n tokens (min_tokens keeps the end-of-turn token away)."""
    return {
        "model": model,
        "stream": True,
        "max_tokens": n,
        "min_tokens": n,
        "temperature": 0.3,
        "messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
    }


def test_chat_completion(plane):
    r = plane.chat("smol-a", "Say hello in five words", max_tokens=16)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "smol-a"
    assert data["choices"][0]["message"]["content"].strip()
    assert data["usage"]["completion_tokens"] > 0
    inst = plane.instance("smol-a")
    assert inst["state"] == "ready" and inst["pid"] and inst["port"]


def test_streamed_completion(plane):
    body = {
        "model": "smol-a",
        "stream": True,
        "max_tokens": 12,
        "messages": [{"role": "user", "content": "Count from one to five."}],
    }
    with httpx.stream("POST", f"{plane.base_url}/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events, done = read_sse(r)
    assert done, "the stream ends with [DONE]"
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    assert text.strip()
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_a_stream_that_asks_for_usage_ends_with_the_tokens_it_generated(plane):
    """`stream_options.include_usage` (OpenAI): llama-cpp-python's server ignores it; goat serve's
    workers end such a stream with a usage chunk (`choices: []`) whose counts are the unstreamed
    answer's. A stream that does not ask gets none."""
    ask = {
        "model": "smol-a",
        "max_tokens": 12,
        "temperature": 0,
        "messages": [{"role": "user", "content": "Count from one to ten."}],
    }
    plain = httpx.post(f"{plane.base_url}/chat/completions", json=ask, timeout=60).json()["usage"]
    streamed = {**ask, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{plane.base_url}/chat/completions", json=streamed, timeout=60) as r:
        events, done = read_sse(r)
    assert done and [e for e in events if e.get("usage")] == [events[-1]]
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")
    assert events[-1]["choices"] == []
    assert {k: events[-1]["usage"][k] for k in counts} == {k: plain[k] for k in counts}, (events[-1], plain)
    assert plain["completion_tokens"] > 0
    with httpx.stream(
        "POST", f"{plane.base_url}/chat/completions", json={**ask, "stream": True}, timeout=60
    ) as r:
        events, done = read_sse(r)
    assert done and not any(e.get("usage") for e in events)


def test_tool_call_passes_through(plane):
    r = plane.chat(
        "smol-a",
        "What is the weather in Paris?",
        max_tokens=64,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    call = message["tool_calls"][0]
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert isinstance(json.loads(call["function"]["arguments"]), dict)


def test_models_health_and_errors(plane):
    models = httpx.get(f"{plane.base_url}/models", timeout=10).json()
    assert models["object"] == "list"
    assert {m["id"] for m in models["data"]} == {"smol-a", "smol-b", "smol-huge"}
    health = httpx.get(f"{plane.root}/healthz", timeout=10).json()
    assert health["status"] == "ok" and health["goat_home"] == str(plane.home)

    unknown = plane.chat("no-such-model")
    assert unknown.status_code == 404
    err = unknown.json()["error"]
    assert err["type"] == "model_not_found" and err["code"] == 404 and "smol-a" in err["message"]

    bad = httpx.post(f"{plane.base_url}/chat/completions", content=b"{not json", timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"

    missing = httpx.get(f"{plane.root}/v2/nothing", timeout=10)
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"message", "type", "code"}


def test_openapi_document_and_swagger_ui(plane):
    doc = httpx.get(f"{plane.root}/openapi.json", timeout=10).json()
    assert doc["info"]["title"] == "goat serve"
    assert {
        "/v1/chat/completions", "/v1/models", "/healthz", "/readyz", "/status", "/metrics",
        "/admin/models/{model}/load", "/admin/models/{model}/unload",
    } <= set(doc["paths"])  # fmt: skip
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert "messages" in chat["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"404", "429", "507"} <= set(chat["responses"])
    docs = httpx.get(f"{plane.root}/docs", timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    # FastAPI's own errors keep goat's shape too
    wrong_method = httpx.post(f"{plane.root}/healthz", timeout=10)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == {
        "message": "Method Not Allowed", "type": "method_not_allowed", "code": 405,
    }  # fmt: skip


def test_model_that_never_fits_gets_507(plane):
    r = plane.chat("smol-huge")
    assert r.status_code == 507
    err = r.json()["error"]
    assert err["type"] == "insufficient_memory"
    assert "n_ctx=32768" in err["message"] and "--budget-mb" in err["message"]
    assert plane.instance("smol-huge")["state"] == "failed"
    assert plane.worker_pids(), "the running worker was not touched"


def test_eviction_never_takes_a_busy_worker(plane):
    assert plane.chat("smol-a").status_code == 200
    a_pid = plane.instance("smol-a")["pid"]
    evictions_before = plane.status()["evictions"]

    with ThreadPoolExecutor(2) as pool:
        first_chunk = threading.Event()

        def stream_a():
            with httpx.stream(
                "POST",
                f"{plane.base_url}/chat/completions",
                json=long_stream_body("smol-a", 120),
                timeout=120,
            ) as r:
                assert r.status_code == 200
                events = []
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        first_chunk.set()
                        events.append(line)
                return events

        a = pool.submit(stream_a)
        assert first_chunk.wait(60)
        b = pool.submit(plane.chat, "smol-b")
        # b needs a's memory, but a has a request in flight: b waits, a keeps its worker

        def b_waits():
            s = plane.status()
            states = {i["model"]: i["state"] for i in s["instances"]}
            return s if states.get("smol-b") == "waiting_for_memory" else None

        status = wait_for(b_waits)
        inst_a = next(i for i in status["instances"] if i["model"] == "smol-a")
        assert inst_a["state"] == "ready" and inst_a["pid"] == a_pid and inst_a["in_flight"] == 1
        ready = httpx.get(f"{plane.root}/readyz", timeout=10)
        assert ready.status_code == 503 and "smol-b" in ready.json()["loading"]

        events = a.result(timeout=120)
        assert events[-1] == "data: [DONE]", "the busy stream ran to its end"
        assert len(events) >= 120
        rb = b.result(timeout=120)
    assert rb.status_code == 200, rb.text
    status = plane.status()
    by_model = {i["model"]: i for i in status["instances"]}
    assert by_model["smol-a"]["state"] == "evicted" and by_model["smol-a"]["pid"] is None
    assert by_model["smol-b"]["state"] == "ready"
    assert status["evictions"] == evictions_before + 1
    assert status["used_mb"] <= status["capacity_mb"]
    assert not psutil.pid_exists(a_pid)
    assert httpx.get(f"{plane.root}/readyz", timeout=10).status_code == 200


def test_queue_overflow_answers_429(plane):
    # max_queue is 1: one request in flight, one waiting, the third is refused
    assert plane.chat("smol-a").status_code == 200
    with ThreadPoolExecutor(3) as pool:
        started = threading.Event()

        def long_a():
            with httpx.stream(
                "POST", f"{plane.base_url}/chat/completions", json=long_stream_body("smol-a", 80), timeout=120
            ) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        started.set()
            return r.status_code

        first = pool.submit(long_a)
        assert started.wait(60)
        second = pool.submit(plane.chat, "smol-a")
        wait_for(lambda: plane.instance("smol-a")["queued"] == 1)
        third = plane.chat("smol-a")
        assert third.status_code == 429
        assert third.json()["error"]["type"] == "queue_full"
        assert int(third.headers["retry-after"]) >= 1
        assert first.result(120) == 200
        assert second.result(120).status_code == 200, "the queued request is served in turn"


def test_killed_worker_recovers_on_next_request(plane):
    assert plane.chat("smol-a").status_code == 200
    inst = plane.instance("smol-a")
    os.kill(inst["pid"], signal.SIGKILL)
    r = plane.chat("smol-a")
    assert r.status_code == 200, r.text
    after = plane.instance("smol-a")
    assert after["crashes"] == inst["crashes"] + 1
    assert after["pid"] != inst["pid"] and after["state"] == "ready"
    assert "SIGKILL" in after["last_crash"]["exit"]


def test_worker_killed_mid_stream_ends_the_stream_with_an_error(plane):
    assert plane.chat("smol-a").status_code == 200
    inst = plane.instance("smol-a")
    with httpx.stream(
        "POST", f"{plane.base_url}/chat/completions", json=long_stream_body("smol-a", 300), timeout=60
    ) as r:
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
        os.kill(inst["pid"], signal.SIGKILL)
        rest = [line for line in lines if line.startswith("data: ")]
    last = json.loads(rest[-1][len("data: ") :])
    assert last["error"]["type"] == "worker_crashed" and last["error"]["code"] == 502
    assert plane.chat("smol-a").status_code == 200, "the next request gets a new worker"
    assert plane.instance("smol-a")["crashes"] == inst["crashes"] + 1


def test_a_worker_killed_by_sigill_is_named_in_the_502_the_log_and_status(plane):
    """A worker that dies of SIGILL (an engine built for CPU features this CPU cannot execute traps
    on its first prompt batch; here the signal is sent by hand, which ends a worker the same way):
    the 502, the crash record in /status and goat serve's log say so in one line, with the fix. It is
    not retried on a new worker, which would die the same."""
    from goat_dagster.serving.local.engine_build import sigill_cause

    assert plane.chat("smol-a").status_code == 200
    inst = plane.instance("smol-a")
    body = {**long_stream_body("smol-a", 400), "stream": False}
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(httpx.post, f"{plane.base_url}/chat/completions", json=body, timeout=120)
        wait_for(lambda: plane.instance("smol-a")["in_flight"] == 1)
        time.sleep(0.5)  # generating
        os.kill(inst["pid"], signal.SIGILL)
        r = answer.result(120)
    assert r.status_code == 502, r.text
    err = r.json()["error"]
    cause = sigill_cause()  # this process: the same engine, the same CPU
    assert err["type"] == "worker_crashed" and cause in err["message"], err
    assert "illegal instruction (SIGILL)" in cause and "make install" in cause and "\n" not in cause
    after = plane.instance("smol-a")
    assert after["crashes"] == inst["crashes"] + 1 and after["loads"] == inst["loads"], "not retried"
    assert after["last_crash"]["exit"] == "killed by SIGILL" and after["last_crash"]["cause"] == cause
    logged = [line for line in plane.log.read_text().splitlines() if "killed by SIGILL" in line]
    assert logged and cause in logged[-1]
    assert plane.chat("smol-a").status_code == 200, "the next request gets a new worker"


def test_status_and_metrics_fields(plane):
    assert plane.chat("smol-a").status_code == 200
    status = plane.status()
    for field in ("budget_mb", "margin_mb", "used_mb", "capacity_mb", "instances"):
        assert field in status
    inst = next(i for i in status["instances"] if i["model"] == "smol-a")
    for field in ("model", "state", "pid", "port", "rss_mb", "estimated_mb", "last_used", "in_flight"):
        assert inst[field] is not None, field
    assert inst["rss_mb"] > 50 and inst["estimated_mb"] > 50

    text = httpx.get(f"{plane.root}/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("goat_serve_requests_total", (("code", "200"), ("model", "smol-a")))] >= 1
    assert samples[("goat_serve_request_duration_seconds_count", (("model", "smol-a"),))] >= 1
    assert samples[("goat_serve_model_loads_total", (("model", "smol-a"), ("outcome", "ok")))] >= 1
    assert ("goat_serve_queue_depth", (("model", "smol-a"),)) in samples
    assert samples[("goat_serve_memory_budget_mb", ())] == status["budget_mb"]
    assert samples[("goat_serve_memory_used_mb", ())] > 0


def test_edited_models_yaml_restarts_the_idle_worker(plane):
    assert plane.chat("smol-b").status_code == 200
    before = plane.instance("smol-b")
    assert before["n_ctx"] == 2048
    models = plane.home / "models.yaml"
    text = models.read_text()
    head, tail = text.split("  smol-b:", 1)
    models.write_text(head + "  smol-b:" + tail.replace("context_length: 2048", "context_length: 1024", 1))
    assert plane.chat("smol-b").status_code == 200
    after = plane.instance("smol-b")
    assert after["n_ctx"] == 1024 and after["pid"] != before["pid"]
    assert plane.instance("smol-a")["state"] != "ready" or plane.instance("smol-a")["n_ctx"] == 2048


WRITE_TOOL = {
    "type": "function",
    "function": {
        "name": "write_file",
        "description": "Write a file",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
}


def test_max_tokens_bounds_auto_tool_calls(plane):
    """A request's max_tokens bounds its whole response. llama-cpp-python's chatml-function-calling
    ran each inner completion (routing, arguments, the "more calls?" follow-up) with its own limit,
    and a model that kept starting calls ran on (3,202 tokens for max_tokens=128)."""
    r = plane.chat(
        "smol-a",
        "Use write_file to write numbers.txt containing every number from 1 to 2000, one per line.",
        max_tokens=24,
        temperature=0,  # greedy, no repeat penalty: unbounded, SmolLM2 writes until its context is full
        repeat_penalty=1.0,
        tools=[WRITE_TOOL],
        tool_choice="auto",
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usage"]["completion_tokens"] <= 24, body["usage"]
    assert body["choices"][0]["finish_reason"] == "length"
    # the engine's own count of generated tokens agrees, over every completion of the turn
    assert sum(p["predicted_n"] for p in body["timings"]["phases"]) == body["usage"]["completion_tokens"]


def test_reusing_a_control_plane_started_with_other_settings_says_so(plane, monkeypatch):
    """`serving_endpoint` / `goat run` reuse the running control plane (its workers serve other
    runs); asked for another budget, they say how it differs and how to apply it."""
    from goat_dagster.serving.backend import PrintLog
    from goat_dagster.serving.local.client import ensure_control_plane
    from goat_dagster.serving.local.settings import ServeSettings

    monkeypatch.setenv("GOAT_HOME", str(plane.home))
    monkeypatch.setenv("GOAT_MODELS_FILE", str(plane.home / "models.yaml"))
    said: list[str] = []
    running = plane.status()["budget_mb"]
    cp = ensure_control_plane(ServeSettings(port=0, budget_mb=running + 1000), log=PrintLog(said.append))
    assert cp.root_url == plane.root
    assert any(f"budget_mb {running} (asked {running + 1000})" in m and "goat stop" in m for m in said), said
    said.clear()
    ensure_control_plane(ServeSettings(port=0, budget_mb=running), log=PrintLog(said.append))
    assert not any("asked" in m for m in said), said
