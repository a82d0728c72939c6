"""`GoatSettings`: every environment variable goat reads, the README's tables generated from it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from goat_dagster import config
from goat_dagster.config import ConfigError, GoatSettings, settings, settings_table

ROOT = Path(__file__).resolve().parents[2]
MARKERS = "<!-- settings:{group}:start -->\n", "\n<!-- settings:{group}:end -->"

# GOAT_* names the package writes for others and never reads as settings, and why.
NOT_SETTINGS = {
    # what a `command:` agent finds in its sandbox (README: Agents)
    "GOAT_INSTRUCTION", "GOAT_WORKDIR", "GOAT_RUN_ID", "GOAT_TASK_ID", "GOAT_EPOCH", "GOAT_TRACE_ID",
    "GOAT_MAX_STEPS", "GOAT_SANDBOX", "GOAT_TASK_PROCESS",
    # baked into Modal images, read by the container side (stdlib only, no settings there)
    "GOAT_MODAL_SPEC", "GOAT_SERVICES_SPEC",
    # internal flag between goat processes sharing the embedded PostgreSQL
    "GOAT_PG_EMBEDDED",
    # an env_prefix that matches nothing: llama-cpp-python's settings must not read the environment
    "GOAT_LLAMA_NOT_FROM_ENV_",
    # placeholder keys `goat setup` stores in Modal secrets whose value is missing
    "GOAT_HF_TOKEN_SET", "GOAT_LANGFUSE_SET",
}  # fmt: skip


def _readme_table(readme: str, group: str) -> str:
    start, end = (m.format(group=group) for m in MARKERS)
    return readme[readme.index(start) + len(start) : readme.index(end)]


@pytest.mark.parametrize("group", ["core", "modal"])
def test_readme_tables_are_generated_from_goat_settings(group):
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text()
    want = settings_table(group)
    if os.environ.get("GOAT_UPDATE_SNAPSHOTS") == "1":
        start, end = (m.format(group=group) for m in MARKERS)
        head, rest = readme.split(start, 1)
        readme_path.write_text(head + start + want + end + rest.split(end, 1)[1])
        readme = readme_path.read_text()
    assert _readme_table(readme, group) == want, "rerun with GOAT_UPDATE_SNAPSHOTS=1 and review the diff"


def test_every_goat_variable_in_the_package_is_a_setting():
    names: set[str] = set()
    for path in (ROOT / "goat_dagster").rglob("*.py"):
        names |= set(re.findall(r"\bGOAT_[A-Z0-9_]*[A-Z0-9_]", path.read_text()))
    settings_names = {GoatSettings.env_name(f) for f in GoatSettings.model_fields}
    unknown = sorted(n for n in names - settings_names - NOT_SETTINGS if not n.endswith("_"))
    assert not unknown, f"read as settings? add them to GoatSettings: {unknown}"
    documented = {GoatSettings.env_name(f) for f in GoatSettings.model_fields}
    assert all(GoatSettings.model_fields[f].description for f in GoatSettings.model_fields)
    assert documented >= {"GOAT_HOME", "GOAT_SERVE_PORT", "GOAT_LITELLM_URL", "GOAT_SANDBOX_BWRAP"}


def test_values_are_read_afresh_and_validated(monkeypatch):
    monkeypatch.setenv("GOAT_SERVE_PORT", "8123")
    monkeypatch.setenv("GOAT_SANDBOX_BWRAP", "0")
    monkeypatch.setenv("GOAT_LITELLM_URL", "")  # empty counts as unset
    s = settings()
    assert s.serve_port == 8123 and s.sandbox_bwrap is False and s.litellm_url is None
    assert not s.litellm_external
    monkeypatch.setenv("GOAT_LITELLM_URL", "https://proxy.example")
    assert settings().litellm_external
    monkeypatch.setenv("GOAT_SERVE_PORT", "eighty")
    with pytest.raises(ConfigError, match="GOAT_SERVE_PORT='eighty'"):
        settings()


def test_secrets_stay_secret(monkeypatch):
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-very-secret")
    s = settings()
    assert "sk-very-secret" not in repr(s) and s.litellm_master_key.get_secret_value() == "sk-very-secret"


def test_paths_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GOAT_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("GOAT_MODELS_FILE", str(tmp_path / "m.yaml"))
    assert config.paths().home == tmp_path / "h"
    assert config.models_file() == tmp_path / "m.yaml"
