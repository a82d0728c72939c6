"""A gateway that is down when the agent's time runs out is an infra error, not the agent's timeout.

The gateway here is a loopback port nothing listens on (connection refused), as when the proxy
dies in the middle of a run.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from goat_dagster.bench.agent import AgentContext
from goat_dagster.bench.calls import CallContext, CallLog, CallMeter
from goat_dagster.bench.command_agent import CommandAgent
from goat_dagster.bench.errors import AgentTimeout, InfraError
from goat_dagster.bench.llm_client import LLMClient
from goat_dagster.bench.local_sandbox import LocalSandboxPool
from goat_dagster.bench.relay import GatewayRelay
from goat_dagster.bench.suite import load_suite
from goat_dagster.bench.usage import AgentLimits, Usage
from goat_dagster.routing.gateway import Gateway
from goat_dagster.tracing.schema import new_id
from tests.conftest import free_port


def dead_gateway() -> Gateway:
    return Gateway(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="k", model="smollm2-135m-local")


def call_context(run_id: str) -> CallContext:
    return CallContext(
        run_id=run_id, suite="smoke", model="smollm2-135m", task_id="fizzbuzz", epoch=1, trace_id=new_id()
    )


def test_builtin_calls_to_a_gateway_down_at_the_deadline_are_infra_errors(goat_home: Path) -> None:
    log = CallLog("deadline-run")
    gateway = dead_gateway()
    client = LLMClient(gateway, CallMeter(log, gateway), retries=10, backoff_s=0.2)
    t0 = time.monotonic()
    # tries at ~0 s, 0.2 s and 0.6 s; the next pause (0.8 s) would end past the deadline
    with pytest.raises(InfraError, match=r"cannot reach the gateway.*no time to try again"):
        client.chat(call_context("deadline-run"), 1, [{"role": "user", "content": "hi"}], deadline=t0 + 1.0)
    assert time.monotonic() - t0 < 1.0  # it gave up instead of sleeping into the deadline
    [record] = log.read()
    assert not record["ok"] and "cannot reach the gateway" in record["error"]


AGENT = """\
import json, os, sys, time, urllib.error, urllib.request
if sys.argv[1] == "call":
    body = {"model": os.environ["OPENAI_MODEL"], "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"], "Content-Type": "application/json"}
    url = os.environ["OPENAI_BASE_URL"] + "/chat/completions"
    req = urllib.request.Request(url, json.dumps(body).encode(), headers)
    try:
        urllib.request.urlopen(req, timeout=30)
    except urllib.error.HTTPError as e:
        print("gateway said", e.code)
time.sleep(30)  # keeps waiting (or retrying) until the agent time limit
"""


@pytest.mark.parametrize(("mode", "error"), [("call", InfraError), ("think", AgentTimeout)])
def test_a_command_agent_timing_out_on_a_down_gateway_is_an_infra_error(
    goat_home: Path, pool: LocalSandboxPool, mode: str, error: type[Exception]
) -> None:
    gateway = dead_gateway()
    task = load_suite("smoke").task("fizzbuzz")
    limits = AgentLimits(max_seconds=1.5)
    with pool.session() as sb:
        relay = GatewayRelay(
            sb.relay_dir / "gateway.sock", gateway, CallMeter(CallLog("cmd-deadline"), gateway)
        )
        try:
            sb.write_files({"agent.py": AGENT})
            ctx = AgentContext(
                task=task,
                sandbox=sb,
                call=call_context("cmd-deadline"),
                limits=limits,
                deadline=time.monotonic() + limits.max_seconds,
                usage=Usage(),
                gateway=gateway,
                relay=relay,
            )
            with pytest.raises(error) as raised:
                CommandAgent(f"python agent.py {mode}").run(ctx)
        finally:
            relay.close()
    if mode == "call":  # its last call failed at the gateway: infra
        assert "last model call failed: gateway unreachable" in str(raised.value)
        assert ctx.usage.gateway_errors == 1
    else:  # nothing failed but the agent's own pace: its timeout
        assert "ran past the agent time limit" in str(raised.value)
