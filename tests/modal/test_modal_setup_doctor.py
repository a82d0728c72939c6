"""`goat setup` (plan from a sample .env, values never printed) and `goat doctor` with Modal
unreachable or not logged in (a clear failure per phase, exit 1, no traceback).

The CLI runs as a subprocess of the installed `goat` entry point with HOME / MODAL_CONFIG_PATH in a
tmp dir, so no real Modal profile is read. Modal's server is a closed loopback port (unreachable).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from goat_dagster.registry import load_registry
from goat_dagster.serving.modal.setup import SetupError, apply_plan, build_plan
from tests.conftest import PROJECT

REGISTRY = load_registry(PROJECT / "models.yaml")

GOAT = str(Path(sys.executable).with_name("goat"))

SECRET_VALUES = {
    "AZURE_API_KEY": "azk-SECRET-7f3e9c1d2b",
    "AZURE_API_BASE": "https://secret-deployment-8841.openai.azure.com/q9z8",
    "GROQ_API_KEY": "gsk_SECRET_0a9b8c7d",
    "LITELLM_MASTER_KEY": "sk-master-SECRET-5e6f",
    "LANGFUSE_PUBLIC_KEY": "pk-lf-SECRET-1111",
    "LANGFUSE_SECRET_KEY": "sk-lf-SECRET-2222",
    "HF_TOKEN": "hf_SECRET_abcdefghijkl",
    "VLLM_API_KEY": "vllm-SECRET-9d8c7b6a",
}


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _write_env(path: Path, values: dict[str, str]) -> Path:
    lines = (
        ["# sample .env for goat setup", "export HF_TOKEN=" + values["HF_TOKEN"]]
        if "HF_TOKEN" in values
        else []
    )
    lines += [
        f'{k}="{v}"' if i % 2 else f"{k}={v}" for i, (k, v) in enumerate(values.items()) if k != "HF_TOKEN"
    ]
    lines += ["EMPTY_ONE=", "GOAT_MODAL_ENVIRONMENT=goat-test"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "LITELLM_", "LANGFUSE_", "GOAT_"))
    }
    env.update(
        HOME=str(tmp_path / "home"),
        MODAL_CONFIG_PATH=str(tmp_path / "home" / ".modal.toml"),
        GOAT_HOME=str(tmp_path / "goat"),
        GOAT_LITELLM_URL=f"http://127.0.0.1:{_closed_port()}",
        GOAT_DOCTOR_TRACE_WAIT_S="1",
    )
    (tmp_path / "home").mkdir()
    return env


def _goat(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([GOAT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_setup_dry_run_shows_the_plan_masked(tmp_path, cli_env):
    _write_env(tmp_path / ".env", SECRET_VALUES)
    r = _goat(["setup", "--dry-run"], cli_env, tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Traceback" not in out
    for value in SECRET_VALUES.values():
        assert value not in out
        assert value[-6:] not in out  # not even a tail
    assert "environment  goat-test" in out
    assert "Modal not checked: Modal not logged in" in out
    for name in ("goat-llm-providers", "goat-litellm", "goat-langfuse", "goat-hf-token", "goat-vllm"):
        assert name in out
    for vol in ("goat-model-cache", "goat-vllm-cache", "goat-flashinfer-cache", "goat-results"):
        assert vol in out
    assert "AZURE_API_KEY          set" in out and "HF_TOKEN               set" in out
    assert "OPENAI_API_KEY         not in .env" in out
    assert "EMPTY_ONE" not in out


def test_setup_needs_the_master_key_the_vllm_key_and_an_env_file(tmp_path, cli_env):
    _write_env(
        tmp_path / ".env",
        {k: v for k, v in SECRET_VALUES.items() if k not in ("LITELLM_MASTER_KEY", "VLLM_API_KEY")},
    )
    r = _goat(["setup", "--dry-run"], cli_env, tmp_path)
    assert r.returncode == 1
    assert "error: goat-litellm: LITELLM_MASTER_KEY is required" in r.stdout
    assert "error: goat-vllm: VLLM_API_KEY is required" in r.stdout  # the vLLM URLs are public
    r = _goat(["setup", "--dry-run", "--env-file", "nope.env"], cli_env, tmp_path)
    assert r.returncode == 1 and "no env file at" in r.stderr and "Traceback" not in r.stderr


def test_setup_without_modal_refuses_to_apply(tmp_path, cli_env):
    _write_env(tmp_path / ".env", SECRET_VALUES)
    env = {
        **cli_env,
        "MODAL_TOKEN_ID": "ak-test",
        "MODAL_TOKEN_SECRET": "as-test",
        "MODAL_SERVER_URL": f"http://127.0.0.1:{_closed_port()}",
    }
    r = _goat(["setup", "--yes"], env, tmp_path)
    assert r.returncode == 1
    assert "goat setup: Modal unreachable" in r.stderr and "Traceback" not in r.stderr


class RecordingCloud:
    """What `apply_plan` asks of Modal, recorded (Modal's cloud is unreachable here)."""

    environment = "goat-test"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def create_environment(self) -> None:
        self.calls.append(("environment",))

    def put_secret(self, name: str, values: dict[str, str], *, exists: bool) -> None:
        self.calls.append(("secret", name, dict(values), exists))

    def create_volume(self, name: str) -> None:
        self.calls.append(("volume", name))


def test_plan_against_existing_state_and_apply(tmp_path):
    env_file = _write_env(
        tmp_path / ".env", {k: v for k, v in SECRET_VALUES.items() if not k.startswith(("LANGFUSE", "HF_"))}
    )
    state = {
        "environments": {"main", "goat-test"},
        "secrets": {"goat-llm-providers"},
        "volumes": {"goat-model-cache"},
    }
    plan = build_plan(env_file, state, registry=REGISTRY)
    assert plan.checked and plan.environment_action == "exists"
    actions = {s.name: s.action for s in plan.secrets}
    assert actions == {
        "goat-llm-providers": "update",
        "goat-litellm": "create",
        "goat-langfuse": "create",
        "goat-hf-token": "create",
        "goat-vllm": "create",
    }
    assert (
        dict(plan.volumes)["goat-model-cache"] == "exists" and dict(plan.volumes)["goat-results"] == "create"
    )
    assert any("no HF_TOKEN" in w for w in plan.warnings)
    text = plan.render()
    assert all(v not in text for v in SECRET_VALUES.values())
    assert "placeholder" in text

    cloud, echoed = RecordingCloud(), []
    apply_plan(plan, cloud, echoed.append)
    secrets = {c[1]: (c[2], c[3]) for c in cloud.calls if c[0] == "secret"}
    assert secrets["goat-llm-providers"] == (
        {k: SECRET_VALUES[k] for k in ("AZURE_API_KEY", "AZURE_API_BASE", "GROQ_API_KEY")},
        True,
    )
    assert secrets["goat-litellm"] == ({"LITELLM_MASTER_KEY": SECRET_VALUES["LITELLM_MASTER_KEY"]}, False)
    assert secrets["goat-vllm"] == ({"VLLM_API_KEY": SECRET_VALUES["VLLM_API_KEY"]}, False)
    # always created, never with an empty value
    assert secrets["goat-hf-token"] == ({"GOAT_HF_TOKEN_SET": "0"}, False)
    assert secrets["goat-langfuse"] == ({"GOAT_LANGFUSE_SET": "0"}, False)
    assert ("environment",) not in cloud.calls
    assert [c[1] for c in cloud.calls if c[0] == "volume"] == [
        "goat-vllm-cache",
        "goat-flashinfer-cache",
        "goat-results",
    ]
    assert all(v not in line for line in echoed for v in SECRET_VALUES.values())

    missing = build_plan(_write_env(tmp_path / "b.env", {"GROQ_API_KEY": "x"}), state, registry=REGISTRY)
    with pytest.raises(SetupError, match="LITELLM_MASTER_KEY is required"):
        apply_plan(missing, RecordingCloud(), echoed.append)


@pytest.mark.parametrize("logged_in", [True, False], ids=["unreachable", "not-logged-in"])
def test_doctor_without_modal(tmp_path, cli_env, logged_in):
    env = dict(cli_env)
    if logged_in:
        env.update(
            MODAL_TOKEN_ID="ak-test",
            MODAL_TOKEN_SECRET="as-test",
            MODAL_SERVER_URL=f"http://127.0.0.1:{_closed_port()}",
        )
    r = _goat(["doctor", "--cloud"], env, tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Traceback" not in out
    reason = "Modal unreachable" if logged_in else "Modal not logged in"
    for phase in ("secrets", "services"):
        assert f"[{phase}] FAILED" in out
    assert out.count(f"FAIL  Modal: {reason}") == 2
    assert "fix: " in out
    assert "[config] ok" in out if logged_in else "[config] FAILED" in out
    assert "[proxy] FAILED" in out and "no LiteLLM proxy at" in out
    assert "[traces] skipped" in out

    r = _goat(["doctor", "--json", "--cloud"], env, tmp_path)
    assert r.returncode == 1
    result = json.loads(r.stdout)
    assert result["ok"] is False
    by_phase = {c["phase"]: c for c in result["checks"] if c["status"] == "fail"}
    assert {"secrets", "services", "proxy"} <= set(by_phase)
    assert by_phase["secrets"]["fix"]


def test_doctor_skips_modal_on_a_local_only_machine(tmp_path, cli_env):
    """No enabled model on Modal, no Modal token, the proxy local: the Modal phases say why they
    were skipped instead of failing a machine that only benchmarks local models."""
    env = {k: v for k, v in cli_env.items() if not k.startswith("MODAL_") and k != "GOAT_LITELLM_URL"}
    env["GOAT_LITELLM_PORT"] = str(_closed_port())  # the managed proxy, not running
    r = _goat(["doctor", "--json"], env, tmp_path)
    result = json.loads(r.stdout)
    by_phase = {c["phase"]: c for c in result["checks"]}
    for phase in ("secrets", "services"):
        assert by_phase[phase]["status"] == "skip" and "--cloud" in by_phase[phase]["detail"]
    assert not any(c["name"] == "Modal credentials" for c in result["checks"])


def test_doctor_wants_the_vllm_key_when_a_model_runs_on_modal(tmp_path, cli_env):
    """An enabled Modal model without VLLM_API_KEY here: its /v1 would answer 401 to everything."""
    models = (PROJECT / "models.yaml").read_text()
    on_a10g = "description: Qwen3 4B Instruct 2507 on an A10G\n    enabled: "
    models = models.replace(on_a10g + "false", on_a10g + "true", 1)
    assert models != (PROJECT / "models.yaml").read_text()
    (tmp_path / "models.yaml").write_text(models)
    env = {k: v for k, v in cli_env.items() if k != "VLLM_API_KEY"}
    env["GOAT_MODELS_FILE"] = str(tmp_path / "models.yaml")
    result = json.loads(_goat(["doctor", "--json"], env, tmp_path).stdout)
    check = next(c for c in result["checks"] if c["name"] == "VLLM_API_KEY")
    assert check["phase"] == "config" and check["status"] == "fail"
    assert "qwen3-4b" in check["detail"] and "goat-vllm" in check["fix"]
    env["VLLM_API_KEY"] = SECRET_VALUES["VLLM_API_KEY"]
    r = _goat(["doctor", "--json"], env, tmp_path)
    check = next(c for c in json.loads(r.stdout)["checks"] if c["name"] == "VLLM_API_KEY")
    assert check["status"] == "pass" and SECRET_VALUES["VLLM_API_KEY"] not in r.stdout + r.stderr


def test_the_plan_names_the_environment_setup_writes_to(tmp_path, monkeypatch):
    """.env wins; without it there, the shell's GOAT_MODAL_ENVIRONMENT, as ModalCloud resolves it —
    never a plan for `goat` while the secrets go to another environment."""
    from goat_dagster.serving.modal.cloud import ModalCloud

    env_file = tmp_path / ".env"
    env_file.write_text("GROQ_API_KEY=x\n")
    monkeypatch.setenv("GOAT_MODAL_ENVIRONMENT", "from-shell")
    assert (
        build_plan(env_file, None, registry=REGISTRY).environment == ModalCloud().environment == "from-shell"
    )
    env_file.write_text("GROQ_API_KEY=x\nGOAT_MODAL_ENVIRONMENT=from-dotenv\n")
    assert (
        build_plan(env_file, None, registry=REGISTRY).environment
        == ModalCloud("from-dotenv").environment
        == "from-dotenv"
    )
    monkeypatch.delenv("GOAT_MODAL_ENVIRONMENT")
    env_file.write_text("GROQ_API_KEY=x\n")
    assert build_plan(env_file, None, registry=REGISTRY).environment == ModalCloud().environment == "goat"
