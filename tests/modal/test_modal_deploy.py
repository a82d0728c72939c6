"""Deploy / find / health / cold start / stop, and the weights record.

Modal's cloud is unreachable here: the deploy and lookup calls go to `FakeCloud` (conftest), and the
"deployed app" is `StandInApp`, a real HTTP server on loopback behaving like a scaled-to-zero vLLM
server. The code under test (spec, app build, health polling, timing, records) is the real one.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import modal
import pytest

from goat_dagster.config import ConfigError
from goat_dagster.registry import load_registry
from goat_dagster.routing import modal_proxy as modal_services
from goat_dagster.routing.config import build_config, for_public_proxy
from goat_dagster.serving.endpoint import load_endpoint
from goat_dagster.serving.modal.cloud import ModalCloud, ModalUnavailable
from goat_dagster.serving.modal.deploy import ensure_modal_endpoint, ensure_modal_weights, stop_modal_endpoint
from goat_dagster.serving.modal.health import probe_app
from goat_dagster.serving.modal.plan import load_weights_record, save_weights_record, spec_for
from goat_dagster.serving.modal.weights_app import snapshot_inventory
from tests.modal.conftest import STAND_IN_KEY

REGISTRY = load_registry()
LOG = logging.getLogger("test-modal")


def test_deploy_wait_healthy_record_then_find(goat_home, fake_cloud, stand_in):
    entry = REGISTRY.get("qwen3-4b")
    spec = spec_for(entry)
    with stand_in(spec.served_names, start_s=1.5) as server:
        fake_cloud.urls[spec.app_name] = server.url

        ep = ensure_modal_endpoint(entry, LOG, cloud=fake_cloud)

        # deployed once, as the real app built from the registry
        assert len(fake_cloud.deployed) == 1
        deployed = fake_cloud.deployed[0]
        assert isinstance(deployed, modal.App) and deployed.name == "goat-vllm-qwen3-4b"
        assert fake_cloud.tags["goat-vllm-qwen3-4b"]["goat-spec"] == spec.digest
        # health waited for: the stand-in answered 503 for 1.5 s after the first request
        assert ep.healthy
        assert 1.5 <= ep.load_s < 8
        assert ep.load_s <= ep.cold_start_s < 10
        assert ep.detail["health_attempts"] >= 2
        assert ep.base_url == server.url + "/v1"
        assert ep.served_name == "Qwen/Qwen3-4B-Instruct-2507"
        assert ep.app_name == "goat-vllm-qwen3-4b" and ep.provider == "modal" and ep.engine == "vllm"
        assert ep.detail["gpu"] == "A10G" and ep.detail["usd_per_hour"] == 1.10
        assert ep.detail["models"] == spec.served_names
        assert ep.detail["deployed_now"] is True
        assert "VLLM_API_KEY" in ep.detail["auth"] and STAND_IN_KEY not in json.dumps(ep.detail)
        posted = [b for m, p, b in server.requests if m == "POST"]
        assert posted and posted[-1]["model"] == "Qwen/Qwen3-4B-Instruct-2507"
        assert load_endpoint("qwen3-4b") == ep  # saved for routing

        # again: the app is current (same spec tag), so it is found, not redeployed; warm now
        again = ensure_modal_endpoint(entry, LOG, cloud=fake_cloud)
        assert len(fake_cloud.deployed) == 1
        assert again.healthy and again.detail["deployed_now"] is False
        # ... so no cold start is claimed: the first answer's time is kept as such
        assert again.detail["warm"] is True and again.cold_start_s is None
        assert again.detail["first_answer_s"] < 1.5
        assert ep.detail["warm"] is False

        # a registry change redeploys
        changed = entry.model_copy(update={"engine_args": {**entry.engine_args, "max-model-len": 16384}})
        ensure_modal_endpoint(changed, LOG, cloud=fake_cloud)
        assert len(fake_cloud.deployed) == 2

        # stop = undeploy; the record says so
        assert stop_modal_endpoint(entry, LOG, cloud=fake_cloud) is True
        assert fake_cloud.stopped == ["goat-vllm-qwen3-4b"]
        stopped = load_endpoint("qwen3-4b")
        assert stopped.healthy is False and "stopped_at" in stopped.detail
        assert stop_modal_endpoint(entry, LOG, cloud=fake_cloud) is False


def test_probe_never_healthy_times_out_with_reason(stand_in):
    with stand_in(["m"], start_s=3600) as server:
        t0 = time.monotonic()
        res = probe_app(server.url, "m", timeout_s=1.0, poll_s=0.2)
    assert not res.healthy and res.health_s is None
    assert "did not answer 200 within 1s" in res.error and "HTTP 503" in res.error
    assert time.monotonic() - t0 < 5


def test_probe_health_up_but_model_missing(stand_in):
    with stand_in(["other"], start_s=0) as server:
        res = probe_app(server.url, "m", timeout_s=5.0, api_key=STAND_IN_KEY)
    assert not res.healthy and res.health_s is not None
    assert "chat completion failed" in res.error and "404" in res.error


def test_the_vllm_key_is_sent_and_required(goat_home, fake_cloud, stand_in, monkeypatch):
    """The apps' URLs are public, so vLLM runs with VLLM_API_KEY: /health is open, /v1 is not."""
    with stand_in(["m"], start_s=0) as server:
        assert probe_app(server.url, "m", timeout_s=5.0, api_key=STAND_IN_KEY).healthy
        wrong = probe_app(server.url, "m", timeout_s=5.0, api_key="not-the-key")
        assert not wrong.healthy and wrong.health_s is not None and "401" in wrong.error
        assert "not-the-key" not in wrong.error
    monkeypatch.delenv("VLLM_API_KEY")
    with pytest.raises(ValueError, match=r"VLLM_API_KEY is not set.*goat-vllm"):
        ensure_modal_endpoint(REGISTRY.get("qwen3-4b"), LOG, cloud=fake_cloud)
    assert fake_cloud.deployed == []  # nothing deployed that could not be asked


def _hf_snapshot(root: Path, repo: str, commit: str, files: dict[str, bytes]) -> Path:
    """An HF hub cache layout (blobs + snapshot symlinks), as snapshot_download leaves it."""
    import hashlib

    repo_dir = root / "hub" / f"models--{repo.replace('/', '--')}"
    snap = repo_dir / "snapshots" / commit
    for name, data in files.items():
        etag = (
            hashlib.sha256(data).hexdigest()
            if name.endswith(".safetensors")
            else hashlib.sha1(data).hexdigest()
        )
        blob = repo_dir / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    return snap


def test_weights_record_resolves_a_branch(goat_home, fake_cloud, tmp_path, stand_in):
    entry = REGISTRY.get("qwen3-4b")
    loose = entry.model_copy(update={"weights": entry.weights.model_copy(update={"revision": "main"})})
    commit = "c" * 40
    snap = _hf_snapshot(
        tmp_path / "hf",
        entry.weights.repo,
        commit,
        {"config.json": b"{}", "model.safetensors": b"x" * 1000, "sub/tokenizer.json": b"[]"},
    )
    fake_cloud.snapshots[entry.weights.repo] = {
        "repo": entry.weights.repo,
        "revision": "main",
        **snapshot_inventory(snap),
    }
    record = ensure_modal_weights(loose, LOG, cloud=fake_cloud)
    assert fake_cloud.downloads == [(entry.weights.repo, "main", entry.weights.files)]
    assert record["commit"] == commit and record["pinned"] is False
    assert record["bytes"] == 1004 and record["n_files"] == 3
    safet = next(f for f in record["files"] if f["path"] == "model.safetensors")
    assert safet["sha256"] == safet["etag"] and len(safet["sha256"]) == 64
    assert next(f for f in record["files"] if f["path"] == "config.json")["sha256"] is None
    assert (
        record["path"]
        == f"/root/.cache/huggingface/hub/models--Qwen--Qwen3-4B-Instruct-2507/snapshots/{commit}"
    )
    assert load_weights_record("qwen3-4b") == json.loads(json.dumps(record))
    # the endpoint then serves exactly that commit
    spec = spec_for(loose, load_weights_record("qwen3-4b"))
    assert spec.revision == commit
    with stand_in(spec.served_names, start_s=0) as server:
        fake_cloud.urls[spec.app_name] = server.url
        ep = ensure_modal_endpoint(loose, LOG, cloud=fake_cloud)
    assert ep.detail["revision"] == commit


def test_gpt_oss_weights_bring_the_speculator(goat_home, fake_cloud, tmp_path):
    entry = REGISTRY.get("gpt-oss-20b")
    main = _hf_snapshot(tmp_path / "hf", entry.weights.repo, entry.weights.revision, {"config.json": b"{}"})
    draft_commit = "d" * 40
    draft = _hf_snapshot(
        tmp_path / "hf", "RedHatAI/gpt-oss-20b-speculator.eagle3", draft_commit, {"config.json": b"{}"}
    )
    fake_cloud.snapshots[entry.weights.repo] = {
        "repo": entry.weights.repo,
        "revision": entry.weights.revision,
        **snapshot_inventory(main),
    }
    fake_cloud.snapshots["RedHatAI/gpt-oss-20b-speculator.eagle3"] = {
        "repo": "RedHatAI/gpt-oss-20b-speculator.eagle3",
        "revision": "main",
        **snapshot_inventory(draft),
    }
    record = ensure_modal_weights(entry, LOG, cloud=fake_cloud)
    assert record["extra"][0]["commit"] == draft_commit
    spec = spec_for(entry, record)
    assert spec.engine_args["speculative-config"]["revision"] == draft_commit


def test_endpoint_refuses_weights_that_cannot_fit(goat_home, fake_cloud):
    entry = REGISTRY.get("qwen3-4b")

    save_weights_record(
        {
            "model_key": "qwen3-4b",
            "repo": entry.weights.repo,
            "revision": entry.weights.revision,
            "commit": entry.weights.revision,
            "bytes": 61 * 10**9,
            "extra": [],
        }
    )
    with pytest.raises(ValueError, match="do not fit 1x A10G"):
        ensure_modal_endpoint(entry, LOG, cloud=fake_cloud)
    assert fake_cloud.deployed == []


def test_services_config_for_modal(goat_home, fake_cloud):
    cfg = {
        "model_list": [
            {
                "model_name": "smollm2-135m-local",
                "litellm_params": {"model": "openai/smollm2-135m", "api_base": "http://127.0.0.1:8100/v1"},
            },
            {
                "model_name": "qwen3-4b-local",
                "litellm_params": {
                    "model": "hosted_vllm/Qwen/Qwen3-4B-Instruct-2507",
                    "api_base": "https://ws--goat-vllm-qwen3-4b-serve.modal.run/v1",
                },
            },
            {
                "model_name": "gpt-5-nano",
                "litellm_params": {"model": "azure/gpt-5-nano", "api_key": "os.environ/AZURE_API_KEY"},
            },
        ],
        "router_settings": {
            "fallbacks": [
                {"gpt-5-nano": ["smollm2-135m-local", "qwen3-4b-local"]},
                {"smollm2-135m-local": ["gpt-5-nano"]},
            ]
        },
    }
    out, dropped = for_public_proxy(cfg)
    assert dropped == ["smollm2-135m-local"]
    assert [m["model_name"] for m in out["model_list"]] == ["qwen3-4b-local", "gpt-5-nano"]
    assert out["router_settings"]["fallbacks"] == [{"gpt-5-nano": ["qwen3-4b-local"]}]
    assert out["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert cfg["model_list"][0]["model_name"] == "smollm2-135m-local"  # input untouched

    leaky = {
        "model_list": [{"model_name": "x", "litellm_params": {"model": "azure/x", "api_key": "sk-live-123"}}]
    }
    with pytest.raises(ConfigError, match=r"model_list\[0\].litellm_params.api_key") as err:
        for_public_proxy(leaky)
    assert "sk-live-123" not in str(err.value)
    with pytest.raises(ConfigError, match="loopback"):
        for_public_proxy({"model_list": cfg["model_list"][:1]})

    fake_cloud.urls["goat-services"] = "https://ws--goat-services-proxy.modal.run"
    url = modal_services.ensure_modal_proxy(cfg, fake_cloud, LOG)
    assert url == "https://ws--goat-services-proxy.modal.run"
    assert fake_cloud.deployed[0].name == "goat-services"
    rec = json.loads((goat_home / "modal" / "services.json").read_text())
    assert rec["models"] == ["qwen3-4b-local", "gpt-5-nano"] and rec["dropped"] == ["smollm2-135m-local"]
    modal_services.ensure_modal_proxy(cfg, fake_cloud, LOG)
    assert len(fake_cloud.deployed) == 1  # current: found, not redeployed


def test_every_shipped_model_enabled_passes_to_the_modal_proxy():
    """models.yaml's disabled entries, all enabled at once: the config for the proxy on Modal is
    accepted (the key-less local Ollama's `no-key` placeholder is no credential) and drops exactly
    the deployments on this machine's loopback."""
    cfg = build_config(REGISTRY, {}, include_disabled=True, langfuse=False).config
    out, dropped = for_public_proxy(cfg)
    loopback = [m for m in REGISTRY.models.values() if (m.api_base or "").startswith("http://127.")]
    assert loopback and set(dropped) == {m.gateway_name for m in loopback}
    kept = {m["model_name"] for m in out["model_list"]}
    assert kept and not kept & set(dropped)
    for m in out["model_list"]:
        key = m["litellm_params"].get("api_key")
        assert key is None or key == "no-key" or key.startswith("os.environ/"), m


def test_real_edge_reports_modal_unreachable_quickly(monkeypatch):
    """The real ModalCloud against a closed loopback port: a clear error, fast, no traceback text."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("MODAL_SERVER_URL", f"http://127.0.0.1:{port}")
    cloud = ModalCloud("goat-test", token_id="ak-test", token_secret="as-test")
    t0 = time.monotonic()
    with pytest.raises(ModalUnavailable) as err:
        cloud.check()
    assert err.value.reason == "unreachable" and f"127.0.0.1:{port}" in err.value.detail
    assert time.monotonic() - t0 < 5
    with pytest.raises(ModalUnavailable) as err:
        ensure_modal_endpoint(REGISTRY.get("qwen3-4b"), LOG, cloud=ModalCloud("goat-test", timeout_s=2))
    assert err.value.reason in ("unreachable", "not logged in")


def test_resource_builds_the_edge_from_env(monkeypatch):
    from dagster import EnvVar

    from goat_dagster.resources.modal import ModalResource, modal_resource_from_env

    monkeypatch.setenv("GOAT_MODAL_ENVIRONMENT", "goat-ci")
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-ci")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-ci")
    res = ModalResource(
        environment=EnvVar("GOAT_MODAL_ENVIRONMENT"),
        token_id=EnvVar("MODAL_TOKEN_ID"),
        token_secret=EnvVar("MODAL_TOKEN_SECRET"),
    )
    cloud = res.process_config_and_initialize().cloud()
    assert cloud.environment == "goat-ci" and cloud.credentials_present()
    assert cloud._token == ("ak-ci", "as-ci")
    assert modal_resource_from_env().process_config_and_initialize().cloud().environment == "goat-ci"
    for var in ("GOAT_MODAL_ENVIRONMENT", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        monkeypatch.delenv(var)
    default = modal_resource_from_env().process_config_and_initialize()
    assert default.environment == "goat" and default.token_id is None
