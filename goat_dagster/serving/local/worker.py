"""One llama.cpp worker: a llama-cpp-python OpenAI server process serving one model.

The control plane binds the worker's listening socket itself (127.0.0.1, a free port) and hands the
descriptor to the child, so there is no port race. The child (`worker_main`) runs in its own process
group and session, asks the kernel to SIGKILL it when the control plane dies (PR_SET_PDEATHSIG), and
reports on a pipe once the model is loaded. Stopping kills the whole process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from goat_dagster.registry import ModelEntry
from goat_dagster.serving.local.memory import process_tree_rss_mb

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
    from llama_cpp.server.settings import ModelSettings
    from pydantic_settings import SettingsConfigDict

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


class WorkerStartError(RuntimeError):
    """The worker process exited or did not answer in time (message carries its log tail)."""


def log_tail(path: Path, lines: int = 12) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 8192))
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


class Worker:
    """A started worker process (use `await Worker.start(...)`)."""

    def __init__(self, spec: WorkerSpec, proc: subprocess.Popen, port: int, log_path: Path):
        self.spec = spec
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.started_at = time.time()
        self.ready_at: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def rss_mb(self) -> float | None:
        return process_tree_rss_mb(self.pid) if self.alive() else None

    @classmethod
    def spawn(cls, spec: WorkerSpec, log_path: Path) -> tuple[Worker, int]:
        """Start the process; returns the worker and the read end of its readiness pipe.

        Must run on the thread that stays alive as long as the worker should (the event loop's):
        PR_SET_PDEATHSIG fires when the *thread* that forked the child exits.
        """
        log_path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        port = sock.getsockname()[1]
        ready_r, ready_w = os.pipe()
        env = {k: v for k, v in os.environ.items() if k != "CONFIG_FILE"}
        cmd = [
            sys.executable,
            "-m",
            "goat_dagster.serving.local.worker_main",
            "--fd",
            str(sock.fileno()),
            "--ready-fd",
            str(ready_w),
            "--parent-pid",
            str(os.getpid()),
            "--spec",
            spec.model_dump_json(),
        ]
        try:
            with log_path.open("ab") as log:
                log.write(
                    f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} start {spec.model_key} "
                    f"on 127.0.0.1:{port}\n".encode()
                )
                log.flush()
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    pass_fds=(sock.fileno(), ready_w),
                    start_new_session=True,
                    close_fds=True,
                )
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            sock.close()
            os.close(ready_w)
        return cls(spec, proc, port, log_path), ready_r

    @classmethod
    async def start(cls, spec: WorkerSpec, log_path: Path, timeout_s: float) -> Worker:
        worker, ready_r = cls.spawn(spec, log_path)
        try:
            await worker._wait_ready(ready_r, timeout_s)
        except BaseException:
            await worker.stop()
            raise
        finally:
            os.close(ready_r)
        worker.ready_at = time.time()
        return worker

    async def _wait_ready(self, ready_r: int, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()

        def on_readable() -> None:
            try:
                data = os.read(ready_r, 64)
            except OSError:
                data = b""
            if not done.done():
                done.set_result(data)

        loop.add_reader(ready_r, on_readable)
        try:
            data = await asyncio.wait_for(done, timeout_s)
        except TimeoutError:
            raise WorkerStartError(
                f"{self.spec.model_key}: the worker did not load the model within {timeout_s:.0f}s "
                f"(log {self.log_path}):\n{log_tail(self.log_path)}"
            ) from None
        finally:
            loop.remove_reader(ready_r)
        if data != READY_LINE:
            for _ in range(50):  # the pipe closed: the process is exiting; let it finish
                if not self.alive():
                    break
                await asyncio.sleep(0.02)
            raise WorkerStartError(
                f"{self.spec.model_key}: the worker {describe_exit(self.returncode)} while loading "
                f"{self.spec.model_path} (log {self.log_path}):\n{log_tail(self.log_path)}"
            )

    async def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM the worker's process group, SIGKILL what is left after `grace_s`."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while self.alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        return self.returncode

    def kill_now(self) -> None:
        """Synchronous last resort (interpreter exit)."""
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)

    def _signal_group(self, sig: int) -> None:
        """Signal the worker's process group (start_new_session: pgid == pid). Only while the leader
        is not yet reaped: afterwards its pid, and so the group id, may belong to someone else."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
