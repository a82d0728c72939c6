"""The harness against a real model: SmolLM2-135M on a real llama.cpp server (see conftest)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import pytest

from goat_dagster.bench.calls import CallContext, CallLog, CallMeter
from goat_dagster.bench.llm_client import LLMClient
from goat_dagster.bench.run_request import RetryPolicy
from goat_dagster.bench.tools import TOOL_SCHEMAS
from goat_dagster.bench.transcript import read_attempts
from goat_dagster.bench.usage import AgentLimits
from goat_dagster.routing import proxy
from goat_dagster.routing.gateway import Gateway
from goat_dagster.tracing.schema import call_metadata, new_id
from tests.conftest import benchmark

from .conftest import LlamaServer, proxy_in_front_of

pytestmark = pytest.mark.integration

QUICK = AgentLimits(max_steps=1, max_output_tokens=8, max_seconds=300)
THREE = ["fizzbuzz", "palindrome", "word-count"]
FAST_RETRY = RetryPolicy(retries=1, call_retries=1, backoff_s=0.05)


def calls_of(journal_dir: str) -> list[dict]:
    return [json.loads(ln) for ln in Path(journal_dir, "calls.jsonl").read_text().splitlines()]


def test_every_call_carries_metadata_and_is_logged(goat_home: Path, model_gateway: Gateway) -> None:
    sent: list[dict] = []

    def record(request: httpx.Request) -> None:  # observe what goes on the wire
        sent.append(json.loads(request.read()))

    log = CallLog("meta-run")
    client = LLMClient(
        model_gateway,
        CallMeter(log, model_gateway),
        http_client=httpx.Client(event_hooks={"request": [record]}),
    )
    ctx = CallContext(
        run_id="meta-run", suite="smoke", model="smollm2-135m", task_id="fizzbuzz", epoch=1, trace_id=new_id()
    )
    res = client.chat(ctx, 1, [{"role": "user", "content": "Say hi."}], tools=TOOL_SCHEMAS, max_tokens=8)
    assert res.prompt_tokens > 0 and res.completion_tokens > 0
    # llama.cpp sends no x-litellm-response-cost header: registry pricing x tokens
    assert res.cost_source == "registry"
    assert res.cost_usd == pytest.approx((res.prompt_tokens * 1.0 + res.completion_tokens * 2.0) / 1e6)
    assert len(sent) == 1
    body = sent[0]
    assert body["model"] == "smollm2-135m-local" and body["tool_choice"] == "auto"
    assert body["metadata"] == call_metadata(
        run_id="meta-run",
        suite="smoke",
        model="smollm2-135m",
        task_id="fizzbuzz",
        epoch=1,
        trace_id=ctx.trace_id,
        call_id=res.call_id,
        step=1,
    )
    [rec] = log.read()
    assert rec["call_id"] == res.call_id and rec["trace_id"] == ctx.trace_id and rec["ok"]
    assert rec["prompt_tokens"] == res.prompt_tokens and rec["cost_usd"] == res.cost_usd


@pytest.mark.slow
def test_builtin_agent_runs_smoke_with_smollm2(goat_home: Path, model_gateway: Gateway) -> None:
    limits = AgentLimits(max_steps=2, max_output_tokens=192, max_seconds=600)
    s = benchmark(
        suite="smoke", model="smollm2-135m", agent="builtin", gateway=model_gateway, parallel=2, limits=limits
    )
    assert s.n == 5
    assert s.errors_by_kind["infra"] == 0
    rows = {
        r["task_id"]: r
        for r in (
            json.loads(ln)["row"] for ln in Path(s.journal_dir, "results.jsonl").read_text().splitlines()
        )
    }
    assert len(rows) == 5
    calls = calls_of(s.journal_dir)
    for r in rows.values():
        assert r["status"] in ("passed", "failed", "error")
        assert 1 <= r["steps"] <= 2 and r["prompt_tokens"] > 0 and r["completion_tokens"] > 0
        assert len(r["trace_id"]) == 32
        mine = [c for c in calls if c["trace_id"] == r["trace_id"]]
        assert len(mine) == r["steps"] and all(c["task_id"] == r["task_id"] for c in mine)
        assert r["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in mine), rel=1e-6)
    assert len({c["call_id"] for c in calls}) == len(calls)
    assert s.cost_usd > 0


def test_killed_model_server_gives_infra_errors_not_failures(goat_home: Path, tmp_path: Path) -> None:
    server = LlamaServer(tmp_path / "doomed.log")
    gateway = Gateway(base_url=server.base_url, api_key="k", model="smollm2-135m-local")
    order: list[str] = []

    def kill_after_first(row, progress) -> None:
        order.append(row.task_id)
        if progress.done == 1:
            server.stop()

    try:
        s = benchmark(
            suite="smoke",
            model="smollm2-135m",
            agent="builtin",
            gateway=gateway,
            parallel=1,
            limits=QUICK,
            retry=FAST_RETRY,
            on_task=kill_after_first,
            task_ids=THREE,
        )
    finally:
        server.stop()
    rows = {
        r["task_id"]: r
        for r in (
            json.loads(ln)["row"] for ln in Path(s.journal_dir, "results.jsonl").read_text().splitlines()
        )
    }
    first = rows[order[0]]
    assert first["status"] in ("passed", "failed") and first["error_kind"] is None
    for task in order[1:]:
        assert (rows[task]["status"], rows[task]["error_kind"]) == ("error", "infra"), rows[task]
    assert s.errors_by_kind["infra"] == 2 and s.failed + s.passed == 1
    # each infra row was tried again (FAST_RETRY: 2 attempts), each attempt with its own trace id
    for entry in (json.loads(ln) for ln in Path(s.journal_dir, "results.jsonl").read_text().splitlines()):
        if entry["row"]["error_kind"] == "infra":
            attempts = entry["detail"]["attempts"]
            assert len(attempts) == 2 and attempts[0]["trace_id"] != attempts[1]["trace_id"]
            assert entry["row"]["trace_id"] == attempts[-1]["trace_id"]
            assert "cannot reach the gateway" in attempts[-1]["error"]
    failed_calls = [c for c in calls_of(s.journal_dir) if not c["ok"]]
    assert len(failed_calls) == 4 and all("cannot reach the gateway" in c["error"] for c in failed_calls)


ONE_CALL = """\
import json, os, urllib.request
env = os.environ
body = {"model": env["OPENAI_MODEL"], "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}
headers = {"Authorization": "Bearer " + env["OPENAI_API_KEY"], "Content-Type": "application/json"}
url = env["OPENAI_BASE_URL"] + "/chat/completions"
urllib.request.urlopen(urllib.request.Request(url, json.dumps(body).encode(), headers), timeout=300).read()
"""


def test_budget_stops_new_tasks_and_a_resume_finishes_them(
    goat_home: Path, tmp_path: Path, model_gateway: Gateway
) -> None:
    script = tmp_path / "one_call.py"
    script.write_text(ONE_CALL)
    agent = f"command:python {script}"  # one short call per task: the budget is what is tested
    s = benchmark(
        suite="smoke",
        model="smollm2-135m",
        agent=agent,
        gateway=model_gateway,
        parallel=1,
        budget_usd=1e-9,
        run_id="budgeted",
        task_ids=THREE,
    )
    assert s.n == 3 and s.errors_by_kind["budget"] == 2
    assert s.cost_usd > 1e-9 and s.budget_usd == 1e-9
    assert s.projected_cost_usd == pytest.approx(s.cost_usd * 3)
    again = benchmark(
        suite="smoke",
        model="smollm2-135m",
        agent=agent,
        gateway=model_gateway,
        parallel=1,
        run_id="budgeted",
        task_ids=THREE,
    )
    assert again.resumed and again.reused_rows == 1
    assert again.n == 3 and again.errors_by_kind["budget"] == 0 and again.cost_usd > s.cost_usd


AGENT_SCRIPT = '''\
"""A stand-in for an external agent binary (like goat-eval): talks to OPENAI_BASE_URL, writes code."""
import json, os, socket, sys, urllib.error, urllib.request

base, key, model = os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"], os.environ["OPENAI_MODEL"]
problems = []
if "sk-test-gateway-key" in json.dumps(dict(os.environ)):
    problems.append("the gateway's own key is in the sandbox")
s = socket.socket(); s.settimeout(2)
try:
    s.connect(("127.0.0.1", {llama_port})); problems.append("reached the model server directly")
except OSError:
    pass

def post(body, token=key, path="/chat/completions"):
    headers = {{"Authorization": "Bearer " + token, "Content-Type": "application/json"}}
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers=headers)
    return urllib.request.urlopen(req, timeout=300)

question = [{{"role": "user", "content": os.environ["GOAT_INSTRUCTION"]}}]
ask = {{"model": model, "messages": question, "max_tokens": 8}}
answer = json.load(post(ask))
if not answer["choices"][0]["message"]:
    problems.append("no answer")
streamed = post({{**ask, "stream": True}}).read().decode()
if "data:" not in streamed:
    problems.append("no stream")
for bad, code in [(dict(ask, model="gpt-5-mini"), 403), (ask, 401)]:
    try:
        post(bad, token=key if code == 403 else "sk-guessed")
        problems.append(f"expected HTTP {{code}}")
    except urllib.error.HTTPError as e:
        if e.code != code:
            problems.append(f"HTTP {{e.code}} instead of {{code}}")
for path in ("/completions", "/embeddings", "/../key/generate"):  # only chat and the model list pass
    try:
        post(ask, path=path)
        problems.append(f"{{path}} got through")
    except urllib.error.HTTPError as e:
        if e.code != 403:
            problems.append(f"HTTP {{e.code}} for {{path}}")
open("solution.py", "w").write(
    "def fizzbuzz(n):\\n"
    "    return ['FizzBuzz' if i % 15 == 0 else 'Fizz' if i % 3 == 0 else 'Buzz' if i % 5 == 0 else str(i)"
    " for i in range(1, n + 1)]\\n")
print("problems:", problems)
sys.exit(1 if problems else 0)
'''


def test_command_agent_reaches_only_the_gateway_relay(
    goat_home: Path, tmp_path: Path, model_gateway: Gateway, llama_server: LlamaServer
) -> None:
    script = tmp_path / "agent.py"
    script.write_text(AGENT_SCRIPT.format(llama_port=llama_server.port))
    s = benchmark(
        suite="smoke",
        model="smollm2-135m",
        agent=f"command:python {script}",
        gateway=model_gateway,
        task_ids=["fizzbuzz"],
        retry=FAST_RETRY,
    )
    entry = json.loads(Path(s.journal_dir, "results.jsonl").read_text().splitlines()[-1])
    row = entry["row"]
    assert (row["status"], row["error_kind"]) == ("passed", None), entry["detail"]
    assert "problems: []" in entry["detail"]["attempts"][-1]["notes"][-1]
    calls = [c for c in calls_of(s.journal_dir) if c["ok"]]
    assert len(calls) == 2 and {c["trace_id"] for c in calls} == {row["trace_id"]}
    assert row["steps"] == 2 and row["prompt_tokens"] > 0 and row["cost_usd"] > 0
    # the relay records the calls in the attempt's transcript: what the agent sent, what came back
    [attempt] = read_attempts(s.run_id, "fizzbuzz", 1)
    recorded = [e for e in attempt.events if e["type"] == "call"]
    assert [(c["step"], c["call_id"]) for c in recorded] == [(c["step"], c["call_id"]) for c in calls]
    plain, streamed = recorded
    assert [m["role"] for m in plain["request"]] == ["user"]
    assert plain["request"][0]["content"].startswith("Write a Python function `fizzbuzz")
    assert streamed["request"] == []  # the same conversation: nothing new to show
    for c in recorded:  # the answer, from a JSON body and from the SSE chunks put back together
        assert c["message"]["role"] == "assistant" and c["message"]["content"]
        assert c["finish_reason"] in ("stop", "length")

    failing = tmp_path / "fails.py"
    failing.write_text(
        textwrap.dedent("""\
        import sys
        print("giving up", file=sys.stderr)
        sys.exit(3)
    """)
    )
    s = benchmark(
        suite="smoke",
        model="smollm2-135m",
        agent=f"command:python {failing}",
        gateway=model_gateway,
        task_ids=["fizzbuzz"],
    )
    assert s.errors_by_kind["agent"] == 1


def test_through_the_litellm_proxy_costs_and_traces(
    goat_home: Path, llama_server: LlamaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default gateway: the managed LiteLLM proxy (routing) in front of the model; its cost
    header is used, and its trace sink holds every call the harness logged, by call id."""
    proxy_in_front_of(llama_server, monkeypatch)
    try:
        s = benchmark(
            suite="smoke",
            model="smollm2-135m",
            agent="builtin",
            task_ids=["fizzbuzz"],
            limits=QUICK,
            retry=FAST_RETRY,
        )
    finally:
        proxy.stop_proxy()
    assert s.errors == 0
    calls = calls_of(s.journal_dir)
    assert calls and all(c["ok"] and c["cost_source"] == "gateway" for c in calls)
    sink = [json.loads(ln) for ln in (goat_home / "traces" / f"{s.run_id}.jsonl").read_text().splitlines()]
    by_call = {t["call_id"]: t for t in sink}
    for c in calls:
        trace = by_call[c["call_id"]]
        assert trace["trace_id"] == c["trace_id"] and trace["run_id"] == s.run_id
        assert trace["prompt_tokens"] == c["prompt_tokens"] and trace["model"] == "smollm2-135m-local"
