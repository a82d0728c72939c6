"""Config generation: every provider kind of the shipped models.yaml (snapshot), key references only,
validation, LiteLLM's own validator, router settings and callbacks."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import yaml

from goat_dagster.config import ConfigError, project_dir
from goat_dagster.registry import load_registry, parse_registry
from goat_dagster.routing import proxy
from goat_dagster.routing.config import (
    build_config,
    config_yaml,
    validate_config,
    validate_with_litellm,
    write_config,
)
from goat_dagster.serving.endpoint import Endpoint

from .conftest import FAKE_KEYS, TEST_MODELS_YAML

SNAPSHOT = Path(__file__).parent / "data" / "litellm_config.snapshot.yaml"


def _endpoints() -> dict[str, Endpoint]:
    return {
        "smollm2-135m": Endpoint(
            model_key="smollm2-135m",
            provider="local",
            engine="llama.cpp",
            base_url="http://127.0.0.1:8100/v1",
            served_name="smollm2-135m",
            healthy=True,
        ),
        "qwen3-4b": Endpoint(
            model_key="qwen3-4b",
            provider="modal",
            engine="vllm",
            base_url="https://goat--goat-vllm-qwen3-4b-serve.modal.run/v1",
            served_name="Qwen/Qwen3-4B-Instruct-2507",
            healthy=True,
            app_name="goat-vllm-qwen3-4b",
        ),
    }


@pytest.fixture
def shipped(monkeypatch: pytest.MonkeyPatch):
    for k in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_HOST"):
        monkeypatch.delenv(k, raising=False)
    for k, v in FAKE_KEYS.items():
        monkeypatch.setenv(k, v)
    return build_config(load_registry(project_dir() / "models.yaml"), _endpoints(), include_disabled=True)


def test_snapshot_of_every_provider_kind(shipped):
    text = shipped.text
    if os.environ.get("GOAT_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text(), (
        "config changed: rerun with GOAT_UPDATE_SNAPSHOTS=1 and review the diff"
    )


def test_provider_kinds_map_to_litellm(shipped):
    deps = {d["model_name"]: d["litellm_params"] for d in shipped.config["model_list"]}
    # local (goat serve) and modal (vLLM) -> <key>-local on the endpoint's base_url + served name
    assert deps["smollm2-135m-local"]["model"] == "openai/smollm2-135m"
    assert deps["smollm2-135m-local"]["api_base"] == "http://127.0.0.1:8100/v1"
    assert deps["qwen3-4b-local"]["model"] == "openai/Qwen/Qwen3-4B-Instruct-2507"
    for name in ("smollm2-135m-local", "qwen3-4b-local"):
        assert deps[name]["temperature"] == 0.3 and deps[name]["tool_choice"] == "auto"
    # cloud: by key, provider prefix, keys and bases as os.environ/ references
    assert deps["gpt-5-nano"] == {
        "model": "azure/gpt-5-nano",
        "api_key": "os.environ/AZURE_API_KEY",
        "api_base": "os.environ/AZURE_API_BASE",
        "api_version": "2025-04-01-preview",
    }
    assert deps["llama-3.3-70b"] == {
        "model": "groq/llama-3.3-70b-versatile",
        "api_key": "os.environ/GROQ_API_KEY",
    }
    assert "temperature" not in deps["gpt-5-nano"]
    # any OpenAI-compatible base URL
    assert deps["tinyllama-ollama"]["model"] == "openai/tinyllama"
    assert deps["tinyllama-ollama"]["api_base"] == "http://127.0.0.1:11434/v1"
    # RunPod / Vast.ai / Fly: base URL and key both only as names of variables
    assert deps["qwen3-4b-runpod"] == {
        "model": "openai/Qwen/Qwen3-4B-Instruct-2507",
        "api_base": "os.environ/RUNPOD_VLLM_BASE_URL",
        "api_key": "os.environ/RUNPOD_API_KEY",
        "temperature": 0.3,
        "tool_choice": "auto",
    }
    assert deps["qwen3-4b-vastai"]["api_base"] == "os.environ/VASTAI_VLLM_BASE_URL"
    assert deps["tinyllama-fly"]["api_key"] == "os.environ/FLY_TINYLLAMA_API_KEY"
    assert deps["gpt-4.1-mini"] == {"model": "openai/gpt-4.1-mini", "api_key": "os.environ/OPENAI_API_KEY"}
    assert deps["claude-haiku-4.5"]["model"] == "anthropic/claude-haiku-4-5"
    # modal models without an endpoint record are not routable yet, and say so
    skipped = {s["model"]: s["reason"] for s in shipped.skipped}
    assert "llama-3.1-8b-local" in skipped and "serving_endpoint" in skipped["llama-3.1-8b-local"]
    assert "qwen3-4b-local" not in skipped


def test_router_settings_and_callbacks(shipped, monkeypatch: pytest.MonkeyPatch):
    r = shipped.config["router_settings"]
    assert r["routing_strategy"] == "simple-shuffle" and r["num_retries"] == 2 and r["cooldown_time"] == 30
    assert r["fallbacks"] == [{"gpt-5-nano": ["gpt-5-mini"]}, {"tinyllama-fly": ["gpt-4.1-mini"]}]
    assert shipped.config["litellm_settings"]["callbacks"] == ["goat_dagster.tracing.sink.trace_sink"]
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-x")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-x")
    monkeypatch.setenv("LANGFUSE_HOST", "http://127.0.0.1:1")
    with_lf = build_config(load_registry(project_dir() / "models.yaml"), _endpoints())
    assert with_lf.config["litellm_settings"]["callbacks"][-1] == "langfuse_otel"
    # only enabled models by default; fallbacks to models that are not routed are dropped
    assert {d["model_name"] for d in with_lf.config["model_list"]} == {"smollm2-135m-local"}
    assert "fallbacks" not in with_lf.config["router_settings"]


def test_seed_strategies_map_to_router_settings():
    reg = parse_registry(TEST_MODELS_YAML.replace("simple-shuffle", "latency-based-routing"))
    built = build_config(reg, _endpoints())
    assert built.config["router_settings"]["routing_strategy"] == "latency-based-routing"
    assert built.config["router_settings"]["fallbacks"] == [{"gpt-5-nano": ["llama-3.3-70b"]}]


def test_route_groups_put_several_deployments_under_one_name():
    reg = parse_registry(TEST_MODELS_YAML.replace("simple-shuffle", "latency-based-routing"))
    built = build_config(reg, _endpoints())
    group = [d for d in built.config["model_list"] if d["model_name"] == "any-small"]
    assert [d["model_info"]["id"] for d in group] == ["any-small/smollm2-135m", "any-small/tinyllama-ollama"]
    assert [d["litellm_params"]["weight"] for d in group] == [1.0, 0.000001]
    own = {d["model_name"]: d for d in built.config["model_list"]}
    for d in group:  # the member's own deployment, params and prices included, under the group's name
        member = own[reg.get(d["model_info"]["goat_key"]).gateway_name]
        assert {k: v for k, v in d["litellm_params"].items() if k != "weight"} == member["litellm_params"]
    assert built.config["router_settings"]["routing_strategy"] == "latency-based-routing"
    assert any(r["model_name"] == "any-small" and r["provider"] == "group" for r in built.routed)
    # a member not routable yet is left out and said so; a group with none routable is not routed
    only_cloud = build_config(reg, {})
    members = [
        d["model_info"]["id"] for d in only_cloud.config["model_list"] if d["model_name"] == "any-small"
    ]
    assert members == ["any-small/tinyllama-ollama"]
    assert {"model": "any-small", "reason": "member smollm2-135m is not routable yet"} in only_cloud.skipped
    # the shipped group's members are disabled by default: left out without a word
    shipped_reg = load_registry(project_dir() / "models.yaml")
    assert "fast-cloud" in shipped_reg.router.groups
    assert not [x for x in build_config(shipped_reg, {}).skipped if x["model"] == "fast-cloud"]


def test_no_key_values_anywhere(shipped, tmp_path):
    path = tmp_path / "config.yaml"
    write_config(shipped.config, path, litellm_check=False)
    text = path.read_text()
    for name, value in FAKE_KEYS.items():
        assert value not in text, name
    for dep in yaml.safe_load(text)["model_list"]:
        key = dep["litellm_params"].get("api_key")
        assert key is None or key == "no-key" or key.startswith("os.environ/")


def test_validation_rejects_literal_keys_and_unknown_fallbacks(shipped):
    bad = yaml.safe_load(config_yaml(shipped.config))
    bad["model_list"][0]["litellm_params"]["api_key"] = "sk-live-literal"
    bad["router_settings"]["fallbacks"] = [{"gpt-5-nano": ["no-such-model"]}]
    bad["general_settings"]["master_key"] = "sk-1234"
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    msg = str(err.value)
    assert "litellm_params.api_key: must be an os.environ/NAME reference" in msg
    assert "'no-such-model' is not a model_name" in msg
    assert "general_settings.master_key" in msg


def test_write_reports_change(shipped, tmp_path):
    path = tmp_path / "c.yaml"
    assert write_config(shipped.config, path, litellm_check=False) is True
    assert write_config(shipped.config, path, litellm_check=False) is False


def test_litellm_accepts_the_generated_config(shipped, tmp_path):
    """LiteLLM's own `--validate_config` loads it, trace-sink callback and custom auth included (~10 s)."""
    path = tmp_path / "config.yaml"
    write_config(shipped.config, path)  # checked by LiteLLM on the way
    validate_with_litellm(path)


def test_a_proxy_that_does_not_come_up_on_a_new_config_leaves_the_previous_file(shipped, tmp_path):
    """No proxy runs: the config is written without `--validate_config` and the proxy's own start
    checks it; when the proxy does not come up (here: its port is taken), the previous file is
    back, or none when there was none."""
    path = tmp_path / "config.yaml"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(proxy.ProxyError, match="in use"):
            proxy._start_on_new_config(shipped.config, path, "sha", "127.0.0.1", port, 5.0)
        assert not path.exists()
        path.write_text("# the previous config\n")
        with pytest.raises(proxy.ProxyError, match="in use"):
            proxy._start_on_new_config(shipped.config, path, "sha", "127.0.0.1", port, 5.0)
        assert path.read_text() == "# the previous config\n"
