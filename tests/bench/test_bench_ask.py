"""`goat ask` as a user runs it: the real CLI brings up `goat serve` (real SmolLM2) and the managed
LiteLLM proxy, streams the answer through the proxy, and the proxy's trace sink records the call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from goat_dagster.tracing.sink_store import read_sink

pytestmark = [pytest.mark.integration, pytest.mark.slow]
GOAT = str(Path(sys.executable).with_name("goat"))


def test_ask_streams_through_the_proxy_with_its_trace(stack_env) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGFUSE_")}  # the sink is the source
    env.update(stack_env.env)

    def goat(*args: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([GOAT, *args], env=env, capture_output=True, text=True, timeout=600)
        assert "Traceback" not in res.stderr, res.stderr
        return res

    try:
        res = goat("ask", "--model", "smollm2-135m", "Name a colour.", "--max-tokens", "24", "--json")
        assert res.returncode == 0, res.stderr[-3000:]
        answer = json.loads(res.stdout)
        assert answer["text"].strip() and answer["chunks"] > 1  # it came in pieces: a stream
        assert answer["gateway_model"] == "smollm2-135m-local" and answer["completion_tokens"] > 0
        assert 0 < answer["ttft_s"] <= answer["latency_s"]
        assert (answer["trace_recorded"], answer["trace_source"]) == (True, "sink")
        session = answer["session_id"]
        assert session.startswith("ask-") and "smollm2-135m" in session

        # the proxy's trace sink has the call, under the ask's session, with its ids and its answer
        [trace] = [t for t in read_sink(session) if t.call_id == answer["call_id"]]
        assert trace.trace_id == answer["trace_id"] and trace.status == "success"
        assert trace.model == "smollm2-135m-local" and trace.completion_tokens == answer["completion_tokens"]
        # the sink's `output` is the response as JSON text: the answer is in it JSON-escaped (a newline as \n)
        head = answer["text"].strip()[:20]
        forms = (head, json.dumps(head, ensure_ascii=False)[1:-1])
        assert any(form in (trace.output or "") for form in forms), (head, trace.output)
        verify = goat("traces", "verify", session, "--json")
        assert verify.returncode == 0 and json.loads(verify.stdout)["found"] == 1

        # as text: the answer on stdout as it streams, the call's numbers and its trace on stderr
        res = subprocess.run(
            [GOAT, "ask", "-m", "smollm2-135m", "-", "--max-tokens", "16"],
            input="Say hello.", env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
        assert res.stdout.strip() and "recorded (session ask-" in res.stderr and "tokens" in res.stderr

        res = goat("ask", "--model", "no-such-model", "hi")
        assert res.returncode == 1 and "model 'no-such-model' is not in" in res.stderr
    finally:
        subprocess.run([GOAT, "stop"], env=env, check=False, timeout=120)
