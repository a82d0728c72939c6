"""The engine inside each local worker: llama-cpp-python's OpenAI server (`worker_main`).

Everything engine-specific about a worker is here — which settings a registry entry turns into
(`WorkerSpec`, validated against llama-cpp-python's `ModelSettings`) and the command that starts
one (`worker_command`); `worker.Worker` runs any such command (socket handed over, readiness
reported on a pipe, process group stopped), and the manager only sees `WorkerSpec`.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_settings import SettingsConfigDict

from goat_dagster import config
from goat_dagster.registry import ModelEntry

READY_LINE = b"goat-worker-ready\n"
DEFAULT_N_CTX = 4096
# Defaults that differ from llama-cpp-python's server: no logits for every position (saves
# n_ctx x n_vocab x 4 bytes; only logprobs need them) and quiet per-token timings.
_WORKER_DEFAULTS: dict[str, Any] = {"logits_all": False, "verbose": False}
# Fields a worker sets itself; models.yaml engine_args must not override them.
_RESERVED = {"model", "model_alias", "n_ctx"}


class WorkerSpec(BaseModel):
    """How to start a worker for one registry model."""

    model_config = ConfigDict(frozen=True)

    model_key: str
    served_model: str
    model_path: str
    n_ctx: int
    settings: dict[str, Any]  # llama-cpp-python ModelSettings fields (chat_format, n_threads, ...)

    @property
    def threads(self) -> int:
        """The cores a busy worker keeps busy: its prompt (n_threads_batch) or generation (n_threads)
        threads, whichever are more (llama-cpp-python's defaults: half the CPUs, all of them)."""
        cpus = os.cpu_count() or 1
        n = int(self.settings.get("n_threads") or max(cpus // 2, 1))
        n_batch = int(self.settings.get("n_threads_batch") or cpus)
        return max(cpus if n == -1 else n, cpus if n_batch == -1 else n_batch)

    def model_settings_kwargs(self) -> dict[str, Any]:
        return {
            **self.settings,
            "model": self.model_path,
            "model_alias": self.served_model,
            "n_ctx": self.n_ctx,
        }


class EngineArgsError(ValueError):
    """engine_args of a registry entry that llama-cpp-python does not accept."""


def isolated_model_settings() -> type:
    """llama-cpp-python's ModelSettings, minus reading the environment (it is a pydantic
    BaseSettings: a stray `CACHE=...` or `MODEL=...` in the env would change or break workers)."""
    # imported when a worker is prepared, not with this module: llama_cpp loads its native library
    # at import, which the CLI and the asset processes that only look at specs never need
    from llama_cpp.server.settings import ModelSettings

    class WorkerModelSettings(ModelSettings):
        model_config = SettingsConfigDict(env_prefix="GOAT_LLAMA_NOT_FROM_ENV_", extra="forbid")

    return WorkerModelSettings


def worker_spec(entry: ModelEntry, gguf_path: Path | str) -> WorkerSpec:
    """The worker spec of a local registry model; engine_args are validated against llama-cpp-python."""
    args = dict(entry.engine_args)
    bad = sorted(k for k in args if k in _RESERVED)
    n_ctx = int(args.pop("n_ctx", 0) or entry.context_length or DEFAULT_N_CTX)
    bad = [k for k in bad if k != "n_ctx"]
    if bad:
        raise EngineArgsError(f"model {entry.key!r}: engine_args.{bad[0]} is set by goat serve; remove it")
    settings = {**_WORKER_DEFAULTS, **args}
    spec = WorkerSpec(
        model_key=entry.key,
        served_model=entry.served_model,
        model_path=str(gguf_path),
        n_ctx=n_ctx,
        settings=settings,
    )
    try:
        isolated_model_settings()(**spec.model_settings_kwargs())
    except Exception as exc:  # pydantic ValidationError: name the first field
        errors = getattr(exc, "errors", None)
        if callable(errors):
            first = errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ()))
            raise EngineArgsError(f"model {entry.key!r}: engine_args.{field}: {first.get('msg')}") from None
        raise EngineArgsError(f"model {entry.key!r}: engine_args: {exc}") from None
    return spec


def worker_command(spec: WorkerSpec, *, listen_fd: int, ready_fd: int, parent_pid: int) -> list[str]:
    """The command of a worker serving `spec` on the socket `listen_fd`, reporting `READY_LINE` on
    `ready_fd` once its model is loaded, and dying with `parent_pid`."""
    return [
        sys.executable,
        "-m",
        "goat_dagster.serving.local.worker_main",
        "--fd",
        str(listen_fd),
        "--ready-fd",
        str(ready_fd),
        "--parent-pid",
        str(parent_pid),
        "--spec",
        spec.model_dump_json(),
    ]


# ---- what the engine is, for a run's manifest ------------------------------------------------------

ENGINE_PACKAGE = "llama-cpp-python"
# What `make install` builds (the venv's `.installed` says so): `portable`, with the cmake args of
# [tool.uv.config-settings-package.llama-cpp-python] in pyproject.toml. A venv of an older install
# may say `native` (a -march=native build, since removed): its cmake args are then not known here.
_PROBE = """
import importlib.metadata as md, json, pathlib, llama_cpp
lib = pathlib.Path(llama_cpp.__file__).parent / "lib"
ggml = sorted(p.name.removeprefix("libggml.so.") for p in lib.glob("libggml.so.*.*"))
print(json.dumps({"version": md.version("llama-cpp-python"), "ggml": ggml[-1] if ggml else None,
                  "system_info": llama_cpp.llama_print_system_info().decode().strip()}))
"""


def pyproject_cmake_args(project: Path | None = None) -> list[str] | None:
    """The engine's cmake args as pyproject.toml's [tool.uv] gives them (None: no such file/table)."""
    try:
        data = tomllib.loads(((project or config.project_dir()) / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    table = data.get("tool", {}).get("uv", {}).get("config-settings-package", {}).get(ENGINE_PACKAGE, {})
    args = table.get("cmake.args")
    return list(args) if isinstance(args, list) else None


@functools.lru_cache(maxsize=1)
def engine_info() -> dict[str, Any]:
    """The engine the workers run — this interpreter's llama-cpp-python (a worker is started with
    `sys.executable`): version, the ggml library, the CPU features it was compiled with
    (`llama_print_system_info`), which build `make install` made and its cmake args. Asked of a
    child interpreter once: loading llama.cpp's libraries is the workers' business, not this process's."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {
            "engine": "llama.cpp",
            "package": ENGINE_PACKAGE,
            "error": f"cannot load llama_cpp: {tail[0]}",
        }
    found = json.loads(proc.stdout)
    stamp = Path(sys.prefix) / ".installed"
    flavour = stamp.read_text().strip() if stamp.is_file() else "unknown"
    return {
        "engine": "llama.cpp",
        "package": ENGINE_PACKAGE,
        "version": found["version"],
        "ggml": found["ggml"],
        "system_info": found["system_info"],
        "build": flavour,
        "cmake_args": pyproject_cmake_args() if flavour == "portable" else None,
    }
