"""The seeds' own API on the real control plane (seed 003's modeld): `POST /infer` as NDJSON, `GET
/models`, and `goat serve --models-dir` serving GGUFs that have no registry entry."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from goat_dagster.serving.local.models_dir import model_name, scan_models_dir
from tests.serving.plane_helpers import start_plane

pytestmark = pytest.mark.integration
PROMPT = "Name three colours."


def infer_lines(root: str, **body) -> tuple[httpx.Response, list[dict]]:
    with httpx.stream("POST", f"{root}/infer", json=body, timeout=120) as r:
        if r.status_code != 200:
            r.read()
            return r, []
        lines = [json.loads(line) for line in r.iter_lines() if line.strip()]
    return r, lines


def test_infer_streams_ndjson_tokens_then_stats(plane):
    r, lines = infer_lines(plane.root, model="smol-a", prompt=PROMPT, max_tokens=12, temperature=0)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    *tokens, last = lines
    assert tokens and all(set(t) == {"token", "done"} and t["done"] is False for t in tokens)
    assert last["done"] is True and "token" not in last
    stats = last["stats"]
    assert stats["duration_ms"] > 0 and stats["tokens"] == len(tokens) <= 12
    assert 0 < stats["first_token_ms"] <= stats["duration_ms"]
    assert stats["finish_reason"] in ("stop", "length") and stats["model"] == "smol-a"

    # the same prompt through the OpenAI route gives the same text, token for token
    chat = plane.chat("smol-a", PROMPT, max_tokens=12, temperature=0).json()
    assert "".join(t["token"] for t in tokens) == chat["choices"][0]["message"]["content"]


def test_infer_without_stream_answers_one_object(plane):
    r = httpx.post(
        f"{plane.root}/infer",
        json={"model": "smol-a", "prompt": PROMPT, "stream": False, "max_tokens": 6, "stop": ["\n\n"]},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["done"] is True and data["text"].strip()
    assert data["stats"]["tokens"] <= 6 and data["stats"]["duration_ms"] > 0


def test_infer_errors_name_the_problem(plane):
    several = httpx.post(f"{plane.root}/infer", json={"prompt": "hi"}, timeout=10)
    assert several.status_code == 400
    assert "needs a 'model'" in several.json()["error"]["message"]
    assert "smol-a" in several.json()["error"]["message"]

    unknown = httpx.post(f"{plane.root}/infer", json={"model": "nope", "prompt": "hi"}, timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "model_not_found"

    typo = httpx.post(f"{plane.root}/infer", json={"model": "smol-a", "promt": "hi"}, timeout=10)
    assert typo.status_code == 400
    assert "promt" in typo.json()["error"]["message"] and "prompt" in typo.json()["error"]["message"]

    hot = httpx.post(
        f"{plane.root}/infer", json={"model": "smol-a", "prompt": "hi", "temperature": 9}, timeout=10
    )
    assert hot.status_code == 400 and "temperature" in hot.json()["error"]["message"]


def test_seed_routes_are_in_the_openapi_document(plane):
    doc = httpx.get(f"{plane.root}/openapi.json", timeout=10).json()
    infer = doc["paths"]["/infer"]["post"]
    schema = infer["requestBody"]["content"]["application/json"]["schema"]
    ref = schema["$ref"].rsplit("/", 1)[1]
    assert {"prompt", "model", "stream", "max_tokens", "temperature", "top_p", "stop"} == set(
        doc["components"]["schemas"][ref]["properties"]
    )
    assert "application/x-ndjson" in infer["responses"]["200"]["content"]
    models = httpx.get(f"{plane.root}/models", timeout=10).json()["models"]
    assert {m["id"] for m in models} == {"smol-a", "smol-b", "smol-huge"}
    assert {m["source"] for m in models} == {"registry"}


# ---- --models-dir ----------------------------------------------------------------------------------


def test_models_dir_names(tmp_path: Path):
    for name in ("TinyLlama-Q4.gguf", "big-00001-of-00002.gguf", "big-00002-of-00002.gguf", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "tinyllama-q4.gguf").write_bytes(b"")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "secret.gguf").write_bytes(b"")
    assert model_name(Path("x-00002-of-00003.gguf")) is None
    entries = {e.key: e for e in scan_models_dir(tmp_path)}
    assert set(entries) == {"tinyllama-q4", "big", "sub-tinyllama-q4"}
    big = entries["big"]
    assert big.provider == "local" and big.weights.path.endswith("big-00001-of-00002.gguf")


def test_serve_models_dir_without_registry_entries(tmp_path: Path, smollm2: Path):
    folder = tmp_path / "gguf"
    folder.mkdir()
    (folder / "tinyllama-q4.gguf").symlink_to(smollm2)
    home = tmp_path / "home"
    # no models.yaml at all: the folder is everything this control plane serves
    p = start_plane(home, tmp_path / "absent-models.yaml", "--models-dir", str(folder))
    try:
        models = httpx.get(f"{p.base_url}/models", timeout=10).json()["data"]
        assert [m["id"] for m in models] == ["tinyllama-q4"]
        r, lines = infer_lines(p.root, prompt="Say hi.", max_tokens=4)  # the only model: no name needed
        assert r.status_code == 200, r.text
        assert lines[-1]["done"] and lines[-1]["stats"]["model"] == "tinyllama-q4"
        status = p.status()
        assert status["models_dir"] == str(folder.resolve())
        assert p.instance("tinyllama-q4")["state"] == "ready"

        # a GGUF copied in later is served without a restart
        shutil.copy(smollm2, folder / "second.gguf")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seed_models = httpx.get(f"{p.root}/models", timeout=10).json()["models"]
            if {m["id"] for m in seed_models} == {"tinyllama-q4", "second"}:
                break
            time.sleep(0.5)
        assert {m["id"] for m in seed_models} == {"tinyllama-q4", "second"}
        assert {m["source"] for m in seed_models} == {"models-dir"}
        answer = p.chat("second", "Say hi.", max_tokens=4)
        assert answer.status_code == 200, answer.text
    finally:
        p.stop()
