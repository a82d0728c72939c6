"""The per-attempt gateway relay forwards chat completions and the model list, and nothing else.

The relay talks to the real llama.cpp server (conftest) through a loopback TCP pass-through that
keeps a copy of every byte sent upstream, so the test can see what reached the gateway.
"""

from __future__ import annotations

import contextlib
import json
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from goat_dagster.bench.calls import CallContext, CallLog, CallMeter
from goat_dagster.bench.relay import GatewayRelay, usage_of
from goat_dagster.bench.usage import AgentLimits, Usage
from goat_dagster.routing.gateway import Gateway
from goat_dagster.tracing.schema import new_id

from .conftest import LlamaServer

pytestmark = pytest.mark.integration


class Tap:
    """A TCP pass-through to `port` on loopback that records what clients send through it."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sent = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self.pump, args=(conn, up, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(up, conn, False), daemon=True).start()

    def pump(self, a: socket.socket, b: socket.socket, record: bool) -> None:
        try:
            while data := a.recv(1 << 16):
                if record:
                    with self.lock:
                        self.sent += data
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def relay(goat_home: Path, llama_server: LlamaServer) -> Iterator[tuple[httpx.Client, Tap, str]]:
    tap = Tap(llama_server.port)
    gateway = Gateway(
        base_url=f"http://127.0.0.1:{tap.port}/v1", api_key="sk-test-gateway-key", model="smollm2-135m-local"
    )
    sock_dir = tempfile.mkdtemp(prefix="goat-relay-")  # a unix socket path must stay short
    relay = GatewayRelay(Path(sock_dir) / "gateway.sock", gateway, CallMeter(CallLog("relay-run"), gateway))
    token = "sk-relay-test"
    call = CallContext(
        run_id="relay-run",
        suite="smoke",
        model="smollm2-135m",
        task_id="fizzbuzz",
        epoch=1,
        trace_id=new_id(),
    )
    relay.activate(token, call, Usage(), AgentLimits())
    client = httpx.Client(
        transport=httpx.HTTPTransport(uds=str(relay.socket_path)),
        base_url="http://sandbox",
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )
    try:
        yield client, tap, token
    finally:
        client.close()
        relay.close()
        tap.close()
        Path(sock_dir).rmdir()


def test_only_chat_completions_and_the_model_list_get_through(relay) -> None:
    client, tap, _ = relay
    refused = [
        ("POST", "/v1/completions", {"model": "smollm2-135m-local", "prompt": "hi", "max_tokens": 2}),
        ("POST", "/v1/embeddings", {"model": "smollm2-135m-local", "input": "hi"}),
        ("POST", "/key/generate", {"models": ["gpt-5"]}),
        ("POST", "/v1/key/generate", {"models": ["gpt-5"]}),
        ("POST", "/model/new", {"model_name": "x", "litellm_params": {"model": "openai/x"}}),
        ("GET", "/key/info", None),
        ("GET", "/v1/models/../../key/list", None),
        ("POST", "/v1/models", {}),  # the right path with the wrong method
        ("GET", "/v1/chat/completions", None),
        ("DELETE", "/v1/models", None),
        ("PUT", "/v1/chat/completions", {}),
    ]
    head = client.head("/v1/models")  # no body in a HEAD answer, the connection stays usable
    assert head.status_code == 403 and head.content == b""
    for method, path, body in refused:
        res = client.request(method, path, json=body)
        assert res.status_code == 403, (method, path, res.text)
        assert res.json()["error"]["type"] == "permission", (method, path)
        assert "only POST /v1/chat/completions and GET /v1/models" in res.json()["error"]["message"]

    models = client.get("/v1/models")
    assert models.status_code == 200 and models.json()["data"]
    chat = client.post(
        "/v1/chat/completions",
        json={
            "model": "smollm2-135m-local",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2,
        },
    )
    assert chat.status_code == 200 and chat.json()["choices"]

    with tap.lock:
        upstream = bytes(tap.sent)
    lines = [ln for ln in upstream.split(b"\r\n") if ln.endswith(b" HTTP/1.1")]
    assert lines == [b"GET /v1/models HTTP/1.1", b"POST /v1/chat/completions HTTP/1.1"]
    assert b"/key/" not in upstream and b"/model/new" not in upstream and b"embeddings" not in upstream


def sse(*events: dict) -> bytes:
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


def test_a_stream_is_metered_by_its_usage_chunk_or_else_by_its_chunks() -> None:
    """The relay asks for `stream_options.include_usage`; goat serve (and OpenAI) then end the
    stream with the usage, which is what is counted. A gateway that ignores the option (a plain
    llama.cpp server) is counted otherwise: one completion token per chunk that carries text or
    tool-call arguments, as llama.cpp streams, never 0."""
    role = {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}
    words = [{"choices": [{"index": 0, "delta": {"content": w}}]} for w in ("One", ",", " two")]
    call = {
        "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]
    }
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {"choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 3, "total_tokens": 24}}
    assert usage_of(sse(role, *words, end, usage)) == (21, 3)
    assert usage_of(sse(role, *words, call, end)) == (0, 4)
    assert usage_of(json.dumps({"usage": {"prompt_tokens": 5, "completion_tokens": 2}}).encode()) == (5, 2)
