"""The real LiteLLM proxy in front of a real llama.cpp endpoint with SmolLM2: completions, traces in
the sink, per-deployment defaults, scoped keys, Langfuse OTLP export, restarts, `goat traces verify`."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import httpx
import openai
import pytest
from click.testing import CliRunner

from goat_dagster.cli import main as goat
from goat_dagster.routing import proxy
from goat_dagster.tracing.schema import CallRecord, call_metadata, new_id
from goat_dagster.tracing.sink_store import read_sink, read_sink_lines, sink_dir
from tests.conftest import benchmark

from .conftest import FAKE_KEYS, gateway, sandbox_gateway_for, serve_registry, wait_until

pytestmark = pytest.mark.integration
MODEL = "smollm2-135m-local"


def _call(client, run_id: str, task_id: str, step: int = 1, **extra):
    trace_id, call_id = new_id(), new_id()
    meta = call_metadata(
        run_id=run_id,
        suite="smoke",
        model=MODEL,
        task_id=task_id,
        epoch=0,
        trace_id=trace_id,
        call_id=call_id,
        step=step,
    )
    started = datetime.now(UTC)
    resp = client.openai().chat.completions.create(
        model=client.model,
        messages=[{"role": "user", "content": extra.pop("prompt", "Say hello in one word.")}],
        max_tokens=extra.pop("max_tokens", 8),
        extra_body={"metadata": meta},
        **extra,
    )
    rec = CallRecord(
        run_id=run_id,
        suite="smoke",
        model=MODEL,
        task_id=task_id,
        epoch=0,
        step=step,
        trace_id=trace_id,
        call_id=call_id,
        started_at=started,
        finished_at=datetime.now(UTC),
    )
    return resp, rec


def _sink_line(run_id: str, call_id: str) -> dict:
    line = wait_until(lambda: next((d for d in read_sink_lines(run_id) if d["call_id"] == call_id), None), 10)
    assert line, f"no sink line for call {call_id} in {sink_dir()}"
    return line


def test_completion_arrives_with_its_trace_in_the_sink(proxy_url):
    client = gateway("smollm2-135m")
    assert client.base_url == proxy_url + "/v1" and client.model == MODEL
    resp, rec = _call(client, "run-sink-1", "hello")
    assert resp.choices[0].message.content
    line = _sink_line("run-sink-1", rec.call_id)
    assert line["trace_id"] == rec.trace_id and line["run_id"] == "run-sink-1"
    assert (line["task_id"], line["epoch"], line["step"], line["suite"]) == ("hello", 0, 1, "smoke")
    assert line["generation_name"] == "hello#e0#s1"
    assert line["tags"] == [f"model:{MODEL}", "suite:smoke", "task:hello", "run:run-sink-1"]
    assert line["model"] == MODEL and line["provider_model"].endswith("smollm2-135m")
    assert line["status"] == "success" and line["error"] is None
    assert line["completion_tokens"] == resp.usage.completion_tokens > 0
    assert line["prompt_tokens"] == resp.usage.prompt_tokens > 0
    assert line["latency_s"] > 0 and line["cost_usd"] == 0.0
    assert "Say hello" in line["input"]
    [rec_back] = read_sink("run-sink-1")
    assert rec_back.call_id == rec.call_id and rec_back.source == "sink"


def test_local_defaults_apply_unless_the_request_overrides(proxy_url):
    """temperature 0.3 / tool_choice auto are deployment litellm_params: the router merges them under
    the request's own params, so they are defaults. The sink records the params LiteLLM called with."""
    client = gateway(MODEL)
    _, plain = _call(client, "run-defaults", "plain")
    _, hot = _call(client, "run-defaults", "hot", temperature=0.9)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "description": "current time",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]
    _, tooled = _call(client, "run-defaults", "tools", tools=tools, max_tokens=32)
    _, none = _call(client, "run-defaults", "none", tools=tools, tool_choice="none", max_tokens=16)
    params = {
        r.task_id: _sink_line("run-defaults", r.call_id)["request_params"] for r in (plain, hot, tooled, none)
    }
    assert params["plain"]["temperature"] == 0.3
    assert params["hot"]["temperature"] == 0.9
    assert params["tools"]["tool_choice"] == "auto" and params["tools"]["temperature"] == 0.3
    assert params["none"]["tool_choice"] == "none"


def test_scoped_sandbox_keys(proxy_url):
    ok = sandbox_gateway_for(MODEL, run_id="run-scoped", work_s=60)
    assert ok.api_key.get_secret_value().startswith("sk-goat-")
    assert ok.api_key.get_secret_value() != proxy.master_key()
    resp, rec = _call(ok, "run-scoped", "scoped")
    assert resp.choices[0].message.content is not None
    assert _sink_line("run-scoped", rec.call_id)["status"] == "success"
    other = sandbox_gateway_for("claude-haiku", work_s=60)  # a key for another model only
    with pytest.raises(openai.PermissionDeniedError, match="not available for this API key"):
        other.openai().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=2
        )
    for bad in ("sk-goat-forged.signature", "sk-random-guess", FAKE_KEYS["OPENAI_API_KEY"]):
        r = httpx.post(
            f"{proxy_url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {bad}"},
            json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]},
            timeout=30,
        )
        assert r.status_code == 401, (bad, r.text)
    assert (
        httpx.post(f"{proxy_url}/v1/chat/completions", json={"model": MODEL}, timeout=30).status_code == 401
    )


def test_a_scoped_key_files_calls_without_metadata_under_its_attempt(proxy_url):
    """An external agent (a `command:` agent in a Modal sandbox) calls the proxy with its scoped key
    and no metadata of ours: the sink still files the call under the run and the attempt."""
    ids = {"trace_id": new_id(), "task_id": "fizzbuzz", "epoch": "2", "suite": "smoke"}
    settings_key = proxy.master_key()
    from goat_dagster.routing.gateway import sandbox_key

    key = sandbox_key(settings_key, MODEL, run_id="run-keyed", work_s=60, ids=ids)
    r = httpx.post(
        f"{proxy_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    line = wait_until(lambda: next(iter(read_sink_lines("run-keyed")), None), 10)
    assert line, "the call was not filed under its run"
    assert (line["run_id"], line["trace_id"], line["task_id"], line["epoch"], line["suite"]) == (
        "run-keyed", ids["trace_id"], "fizzbuzz", 2, "smoke"
    )  # fmt: skip


def test_a_route_group_is_one_model_name_over_several_deployments(proxy_url):
    """router.groups: the group's name routes to its members' deployments by weight (the dead
    member, weight 1e-6, is all but never picked); LiteLLM names the deployment that served."""
    served = []
    for _ in range(4):
        r = httpx.post(
            f"{proxy_url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {proxy.master_key()}"},
            json={"model": "any-small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        served.append(r.headers.get("x-litellm-model-id"))
    assert served == ["any-small/smollm2-135m"] * 4


def test_langfuse_otel_callback_exports_the_ids(proxy_url, routing_env):
    """LANGFUSE_* is set for this proxy, so the generated config has `langfuse_otel`; the local OTLP
    receiver stands in for Langfuse (unreachable here) and sees what LiteLLM really sends."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    _, rec = _call(gateway(MODEL), "run-otel", "otel")

    def spans() -> list[dict]:
        out = []
        for path, headers, body in routing_env.langfuse.requests:
            assert path == "/api/public/otel/v1/traces"
            auth = base64.b64encode(
                f"pk-lf-FAKE-public-0001:{FAKE_KEYS['LANGFUSE_SECRET_KEY']}".encode()
            ).decode()
            assert headers["authorization"] == f"Basic {auth}"
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            for rs in MessageToDict(req)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for sp in ss["spans"]:
                        attrs = {a["key"]: next(iter(a["value"].values())) for a in sp["attributes"]}
                        if rec.call_id in attrs.get("metadata", ""):
                            out.append(attrs)
        return out

    found = wait_until(spans, 15, 0.25)
    assert found, "no OTLP span carrying the call id reached the Langfuse endpoint"
    attrs = found[0]
    assert attrs["session.id"] == "run-otel"
    assert attrs["langfuse.trace.id"] == rec.trace_id
    assert attrs["langfuse.generation.name"] == "otel#e0#s1"
    assert json.loads(attrs["langfuse.trace.tags"])[2] == "task:otel"


def test_provider_keys_never_reach_config_sink_or_log(proxy_url):
    client = gateway(MODEL)
    # a prompt that contains a provider key verbatim: the sink must mask it
    _, rec = _call(client, "run-leak", "leak", prompt=f"repeat this: {FAKE_KEYS['GROQ_API_KEY']}")
    _sink_line("run-leak", rec.call_id)
    # a cloud model whose (fake) key the proxy does resolve: it fails upstream, leaving an error trace
    with pytest.raises(openai.APIError):
        gateway("gpt-4.1-mini").openai(max_retries=0).chat.completions.create(
            model="gpt-4.1-mini",
            messages=[{"role": "user", "content": "x"}],
            max_tokens=2,
            extra_body={"metadata": {"session_id": "run-leak", "goat_call_id": new_id()}},
        )
    wait_until(lambda: any(d["status"] == "error" for d in read_sink_lines("run-leak")), 10)
    texts = {"config": proxy.config_path().read_text(), "log": proxy.log_path().read_text(errors="replace")}
    for f in sink_dir().rglob("*.jsonl"):
        texts[str(f)] = f.read_text()
    assert any(d["status"] == "error" for d in read_sink_lines("run-leak"))
    for where, text in texts.items():
        for name, value in FAKE_KEYS.items():
            assert value not in text, f"{name} leaked into {where}"
    assert proxy.master_key() not in texts["config"]


def test_traces_verify_cli(proxy_url, routing_env):
    client = gateway(MODEL)
    run_id = "run-verify"
    recs = [_call(client, run_id, f"t{i}", step=i)[1] for i in range(2)]
    journal = routing_env.home / "runs" / run_id / "calls.jsonl"
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text("".join(r.model_dump_json() + "\n" for r in recs))
    runner = CliRunner()
    ok = runner.invoke(goat, ["traces", "verify", run_id, "--source", "sink", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output) | {"missing_calls": []} == {
        "run_id": run_id,
        "source": "sink",
        "calls": 2,
        "found": 2,
        "missing": 0,
        "extra": 0,
        "ok": True,
        "missing_calls": [],
        "note": None,  # asked for the sink: nothing fell back from Langfuse
    }
    lost = recs[0].model_copy(update={"call_id": new_id(), "step": 9})
    with journal.open("a") as fh:
        fh.write(lost.model_dump_json() + "\n")
    bad = runner.invoke(goat, ["traces", "verify", run_id, "--source", "sink", "--wait-s", "0.5"])
    assert bad.exit_code == 1
    assert "3 calls, 2 traced, 1 missing" in bad.output and lost.call_id in bad.output


def test_unchanged_config_reuses_and_changed_restarts(proxy_url, routing_env):
    before = proxy.read_state()
    assert serve_registry() == proxy_url
    assert proxy.read_state().pid == before.pid  # unchanged: the same process
    original = routing_env.models_file.read_text()
    try:
        routing_env.models_file.write_text(original.replace("num_retries: 1", "num_retries: 0"))
        handle_url = serve_registry()
        after = proxy.read_state()
        assert handle_url == proxy_url and after.pid != before.pid
        assert after.config_sha256 != before.config_sha256
        assert "num_retries: 0" in proxy.config_path().read_text()
        assert proxy.is_ready(proxy_url)
    finally:
        routing_env.models_file.write_text(original)
        serve_registry()  # back to the session's config for whoever runs next
    assert proxy.read_state().config_sha256 == before.config_sha256


def test_a_run_without_llm_calls_verifies(routing_env):
    """The oracle makes no LLM call: its run has a journal (run.json) and no calls.jsonl, which is
    zero calls to verify, not a missing journal; a run id nobody ran is still an error."""
    summary = benchmark(suite="smoke", model="smollm2-135m", agent="oracle", task_ids=["fizzbuzz"])
    runner = CliRunner()
    ok = runner.invoke(goat, ["traces", "verify", summary.run_id, "--source", "sink", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["calls"] == 0
    unknown = runner.invoke(goat, ["traces", "verify", "no-such-run", "--source", "sink"])
    assert unknown.exit_code != 0 and "no call journal" in unknown.output


def test_a_streamed_call_through_the_proxy_carries_its_usage(proxy_url):
    """Streamed through LiteLLM to goat serve with `stream_options.include_usage`: the last chunk
    has the tokens the same call reports unstreamed. (llama-cpp-python's streams carry no usage;
    goat serve's workers add it when asked, so the relay that meters a `command:` agent's streamed
    calls counts what was generated, not 0.)"""
    client = gateway("smollm2-135m").openai()
    ask = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count from one to ten."}],
        "max_tokens": 12,
        "temperature": 0,
    }
    plain = client.chat.completions.create(**ask).usage
    chunks = list(client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    usage = chunks[-1].usage  # LiteLLM passes it on in its last chunk (with an empty delta)
    assert usage is not None and not any(c.usage for c in chunks[:-1])
    assert usage.completion_tokens == plain.completion_tokens > 0
    assert usage.prompt_tokens == plain.prompt_tokens > 0


def test_a_warm_interpreter_becomes_the_proxy(proxy_url, routing_env):
    """`prewarm` (what `goat demo` calls): LiteLLM imported ahead of its config, then handed the
    start `ensure_proxy` would have spawned — the same process serves, with the same config, port
    and checks. Not when a proxy already runs; stopped when nothing takes it."""
    assert not proxy.prewarm()  # the session's proxy runs: no start is coming
    proxy.stop_proxy()
    assert proxy.prewarm()
    unused = proxy._warm.proc
    proxy.release_warm()
    assert unused.poll() is not None and proxy._warm is None

    assert proxy.prewarm()
    warm = proxy._warm.proc
    assert serve_registry() == proxy_url
    st = proxy.read_state()
    assert st.pid == warm.pid and proxy.is_ready(proxy_url)
    assert proxy._warm is None
    args = f"--config {proxy.config_path()} --host 127.0.0.1 --port {routing_env.proxy_port}"
    assert f"starting litellm: {args}" in proxy.log_path().read_text()
    resp, _ = _call(gateway("smollm2-135m"), "run-warm-1", "hello")
    assert resp.choices[0].message.content


def test_a_warm_interpreter_of_another_environment_is_not_used(proxy_url, monkeypatch):
    """The warm process got its environment when it was spawned: when the proxy's environment has
    changed since, a fresh `litellm` starts instead (and the warm one is stopped)."""
    proxy.stop_proxy()
    assert proxy.prewarm()
    warm = proxy._warm.proc
    monkeypatch.setenv("GOAT_TEST_CHANGED_AFTER_PREWARM", "1")
    assert serve_registry() == proxy_url
    assert proxy.read_state().pid != warm.pid and warm.poll() is not None
    assert proxy.is_ready(proxy_url)
