"""Every Modal app builds from models.yaml with the right GPU, volumes, timeouts, image and vLLM
command line. Apps are built for real and inspected offline (see conftest); nothing is deployed."""

from __future__ import annotations

import importlib
import json
import sys

import modal
import pytest
from modal._utils.async_utils import synchronizer

from goat_dagster.registry import load_registry
from goat_dagster.routing import modal_proxy as modal_services
from goat_dagster.serving import modal_gpt_oss, modal_vllm
from goat_dagster.serving.modal import weights_app as modal_weights
from goat_dagster.serving.modal.deploy import build_app_for
from goat_dagster.serving.modal.plan import cost_table, spec_for, spec_for_key
from goat_dagster.serving.modal.spec import (
    SPEC_ENV,
    VLLM_VERSION,
    ServeSpec,
    app_name_for,
    fits_message,
    url_label,
    vllm_command,
)

REGISTRY = load_registry()
MODAL_MODELS = [m for m in REGISTRY.models.values() if m.provider == "modal"]


def test_registry_has_the_seed_models_on_modal():
    keys = {m.key for m in MODAL_MODELS}
    assert {
        "llama-3.1-8b",
        "qwen3-4b",
        "qwen3-30b-a3b",
        "qwen3-235b-fp8",
        "gpt-oss-20b",
        "gpt-oss-120b",
    } <= keys
    # every Modal model is pinned to a commit (no `main` left)
    assert all(m.weights.pinned for m in MODAL_MODELS), [m.key for m in MODAL_MODELS if not m.weights.pinned]


@pytest.mark.parametrize("entry", MODAL_MODELS, ids=lambda m: m.key)
def test_app_from_registry_entry(entry, inspect_function, layers):
    spec = spec_for(entry)
    app, fn = build_app_for(spec)
    d = inspect_function(fn)

    assert app.name == app_name_for(entry.key) == "goat-vllm-" + entry.key.replace(".", "-")
    assert "." not in app.name
    assert d["tag"] == "serve"
    assert d["gpus"] == [(entry.gpu, entry.modal.n_gpu)]
    assert d["scaledown_window"] == entry.modal.scaledown_window_s == 300
    assert d["max_concurrent_inputs"] == entry.modal.max_concurrent_inputs
    assert d["timeout"] == entry.modal.timeout_s
    assert d["startup_timeout"] == entry.modal.startup_timeout_s
    assert d["web_server_port"] == 8000
    assert d["web_server_startup_timeout"] == entry.modal.startup_timeout_s
    assert d["secrets"] == [  # always attached; vLLM reads VLLM_API_KEY from goat-vllm
        "modal.Secret.from_name('goat-hf-token')",
        "modal.Secret.from_name('goat-vllm')",
    ]
    expected_volumes = {
        "/root/.cache/huggingface": "goat-model-cache",
        "/root/.cache/vllm": "goat-vllm-cache",
    }
    if entry.engine == "vllm-gpt-oss":
        expected_volumes["/root/.cache/flashinfer"] = "goat-flashinfer-cache"
    assert d["volumes"] == expected_volumes

    cmds = layers(d["image"])
    text = "\n".join(cmds)
    assert f"vllm=={VLLM_VERSION}" in text and "huggingface_hub[hf_transfer]==0.36.0" in text
    env_lines = [c for c in cmds if c.startswith("ENV ")]
    assert any("HF_HOME=/root/.cache/huggingface" in c for c in env_lines)
    assert any("VLLM_CACHE_ROOT=/root/.cache/vllm" in c for c in env_lines)
    baked = next(c for c in env_lines if c.startswith(f"ENV {SPEC_ENV}="))
    assert json.loads(baked.split("=", 1)[1].strip("'")) == json.loads(spec.to_json())
    if entry.engine == "vllm-gpt-oss":
        assert any(c.startswith("FROM nvidia/cuda:12.8.1-devel-ubuntu22.04") for c in cmds)
    else:
        assert not any("nvidia/cuda" in c for c in cmds)

    cmd = vllm_command(spec)
    w = entry.weights
    assert cmd[:3] == ["vllm", "serve", w.repo]
    assert cmd[cmd.index("--revision") + 1] == w.revision
    names = cmd.index("--served-model-name")
    assert cmd[names + 1 : names + 3] == [w.repo, entry.key]
    assert cmd[cmd.index("--tensor-parallel-size") + 1] == str(entry.modal.n_gpu)
    assert cmd[cmd.index("--port") + 1] == "8000"
    # the key comes from the goat-vllm secret at run time: never in the command line or the image
    assert "--api-key" not in cmd and "VLLM_API_KEY" not in text
    for k, v in entry.engine_args.items():
        flag = "--" + k
        assert flag in cmd, flag
        if v is not True:
            assert cmd[cmd.index(flag) + 1] == str(v)


def test_gpt_oss_recipe():
    spec = spec_for(REGISTRY.get("gpt-oss-120b"))
    cmd = vllm_command(spec)
    spec_cfg = json.loads(cmd[cmd.index("--speculative-config") + 1])
    assert spec_cfg == {
        "model": "RedHatAI/gpt-oss-120b-speculator.eagle3",
        "method": "eagle3",
        "num_speculative_tokens": 7,
    }
    assert json.loads(cmd[cmd.index("--compilation-config") + 1])["pass_config"]["fuse_allreduce_rms"] is True
    for flag in ("--async-scheduling", "--no-enforce-eager"):
        assert flag in cmd
    assert cmd[cmd.index("--kv-cache-dtype") + 1] == "fp8"
    assert cmd[cmd.index("--max-cudagraph-capture-size") + 1] == "32"
    # registry engine_args come last and win
    assert cmd[cmd.index("--tool-call-parser") + 1] == "openai"
    assert "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8" not in spec.extra_env  # Blackwell-only kernels, H100 here


def test_registry_engine_args_override_gpt_oss_defaults():
    entry = REGISTRY.get("gpt-oss-20b")
    changed = entry.model_copy(
        update={"engine_args": {**entry.engine_args, "speculative-config": None, "kv-cache-dtype": "auto"}}
    )
    cmd = vllm_command(spec_for(changed))
    assert "--speculative-config" not in cmd
    assert cmd[cmd.index("--kv-cache-dtype") + 1] == "auto"


def test_branch_revision_is_served_at_the_recorded_commit():
    entry = REGISTRY.get("qwen3-4b")
    loose = entry.model_copy(update={"weights": entry.weights.model_copy(update={"revision": "main"})})
    record = {"repo": entry.weights.repo, "revision": "main", "commit": "a" * 40}
    assert spec_for(loose, record).revision == "a" * 40
    assert spec_for(loose, None).revision == "main"
    # a record of another repo or revision is not used
    assert spec_for(loose, {**record, "repo": "x/y"}).revision == "main"
    assert spec_for(entry, record).revision == entry.weights.revision


def test_names_and_url_labels():
    assert app_name_for("llama-3.1-8b") == "goat-vllm-llama-3-1-8b"
    assert url_label(app_name_for("llama-3.1-8b")) == "goat-vllm-llama-3-1-8b-serve"
    assert url_label("goat-services", "proxy") == "goat-services-proxy"
    for m in MODAL_MODELS:
        label = url_label(app_name_for(m.key))
        assert len(label) <= 63 and label == label.lower() and "." not in label


def test_weights_fit_the_gpus():
    for m in MODAL_MODELS:
        spec = spec_for(m)
        assert fits_message(spec, 10 * 10**9) is None
    # 61 GB of weights (Qwen3-30B-A3B in BF16) on one 24 GB A10G is refused before a GPU is paid for
    small = spec_for(REGISTRY.get("qwen3-4b"))
    msg = fits_message(small, 61 * 10**9)
    assert msg and "do not fit 1x A10G" in msg and "n_gpu" in msg


# the app modules, what they import, and the DESIGN-path modules that hand them on
MODAL_MODULES = ("goat_dagster.serving.modal.", "goat_dagster.serving.modal_")


def test_container_reimport_rebuilds_the_same_function(monkeypatch, inspect_function, layers):
    """Seed 002: Modal re-imports the module in the container, where only the image env exists.
    The function rebuilt there must have the same dependencies (secret, image, volumes) as the
    deployed one, or Modal rejects it ("dep count mismatch")."""
    for key, module in (
        ("qwen3-4b", "goat_dagster.serving.modal.vllm_app"),
        ("gpt-oss-20b", "goat_dagster.serving.modal.gpt_oss_app"),
    ):
        spec = spec_for(REGISTRY.get(key))
        _, local_fn = build_app_for(spec)
        monkeypatch.setenv(SPEC_ENV, spec.to_json())
        monkeypatch.setattr(modal, "is_local", lambda: False)
        saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k.startswith(MODAL_MODULES)}
        try:
            mod = importlib.import_module(module)
            remote_fn = mod.serve
            assert isinstance(remote_fn, modal.Function)
            assert mod.app.name == spec.app_name
            local_deps = synchronizer._translate_in(local_fn)._deps_(only_explicit_mounts=True)
            remote_deps = synchronizer._translate_in(remote_fn)._deps_(only_explicit_mounts=True)
            assert len(local_deps) == len(remote_deps)
            assert [type(d).__name__ for d in local_deps] == [type(d).__name__ for d in remote_deps]
            a, b = inspect_function(local_fn), inspect_function(remote_fn)
            assert layers(a.pop("image")) == layers(b.pop("image"))
            assert a == b
        finally:
            for k in [k for k in sys.modules if k.startswith(MODAL_MODULES)]:
                del sys.modules[k]
            sys.modules.update(saved)
        monkeypatch.undo()


def test_cli_module_needs_goat_model(monkeypatch):
    monkeypatch.delenv("GOAT_MODEL", raising=False)
    with pytest.raises(AttributeError, match="GOAT_MODEL=<key"):
        _ = modal_vllm.app
    with pytest.raises(AttributeError, match="GOAT_MODEL=gpt-oss-20b"):
        _ = modal_gpt_oss.app


def test_goat_model_selects_the_app_and_the_right_module(monkeypatch):
    monkeypatch.setenv("GOAT_MODEL", "qwen3-4b")
    names = ("goat_dagster.serving.modal_vllm", "goat_dagster.serving.modal.vllm_app")
    saved = {name: sys.modules.pop(name) for name in names}
    try:
        mod = importlib.import_module("goat_dagster.serving.modal_vllm")  # what `modal deploy -m` imports
        assert mod.app.name == "goat-vllm-qwen3-4b"
        assert isinstance(mod.serve, modal.Function)
    finally:
        sys.modules.update(saved)
    with pytest.raises(ValueError, match="modal_gpt_oss"):
        spec_for_key(REGISTRY, "gpt-oss-20b", expect_engine="vllm")
    with pytest.raises(ValueError, match="only provider: modal"):
        spec_for_key(REGISTRY, "smollm2-135m")


def test_spec_roundtrip():
    spec = spec_for(REGISTRY.get("qwen3-235b-fp8"))
    assert ServeSpec.from_json(spec.to_json()) == spec
    assert spec.gpu_request == "A100-80GB:4"
    assert len(spec.digest) == 32


def test_digest_covers_the_attached_secrets(monkeypatch):
    """An app deployed before a secret was attached (goat-vllm) is not current: it is redeployed."""
    spec = spec_for(REGISTRY.get("qwen3-4b"))
    now = spec.digest
    # the module the property was defined in (an earlier test re-imports the app modules)
    monkeypatch.setitem(type(spec).digest.fget.__globals__, "SERVE_SECRETS", ("goat-hf-token",))
    assert spec.digest != now


def test_weights_app(inspect_function, layers):
    d = inspect_function(modal_weights.download)
    assert modal_weights.app.name == "goat-weights"
    assert d["gpus"] == []
    assert d["volumes"] == {"/root/.cache/huggingface": "goat-model-cache"}
    assert d["secrets"] == ["modal.Secret.from_name('goat-hf-token')"]
    assert d["timeout"] == modal_weights.DOWNLOAD_TIMEOUT_S
    text = "\n".join(layers(d["image"]))
    assert "huggingface_hub[hf_transfer]==0.36.0" in text and "HF_HOME=/root/.cache/huggingface" in text


def test_services_app(inspect_function, layers):
    cfg = {
        "model_list": [
            {
                "model_name": "gpt-5-nano",
                "litellm_params": {
                    "model": "azure/gpt-5-nano",
                    "api_key": "os.environ/AZURE_API_KEY",
                    "api_base": "os.environ/AZURE_API_BASE",
                },
            }
        ]
    }
    spec, dropped = modal_services.services_spec(cfg)
    assert dropped == []
    app, fn = modal_services.build_services_app(spec)
    d = inspect_function(fn)
    assert app.name == "goat-services" and d["tag"] == "proxy"
    assert d["web_server_port"] == 4000
    assert sorted(d["secrets"]) == sorted(
        f"modal.Secret.from_name('{s}')"
        for s in ("goat-llm-providers", "goat-litellm", "goat-langfuse", "goat-vllm")
    )
    assert d["volumes"] == {"/goat": "goat-results"}
    assert d["gpus"] == []
    text = "\n".join(layers(d["image"]))
    assert f"litellm[proxy]=={modal_services.litellm_version()}" in text
    assert "GOAT_HOME=/goat" in text
    assert spec.config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    # the config's trace-sink callback and custom_auth live in goat_dagster: the image ships it
    assert "goat_dagster" in synchronizer._translate_in(d["image"])._added_python_source_set


def test_readme_cost_table_matches_the_registry():
    from goat_dagster.config import project_dir

    readme = (project_dir() / "README.md").read_text()
    start, end = "<!-- cost-table:start -->\n", "\n<!-- cost-table:end -->"
    assert readme[readme.index(start) + len(start) : readme.index(end)] == cost_table(REGISTRY)
