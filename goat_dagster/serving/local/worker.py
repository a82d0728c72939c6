"""One worker process serving one model (the command comes from `engine.worker_command`).

The control plane binds the worker's listening socket itself (127.0.0.1, a free port) and hands the
descriptor to the child, so there is no port race. The child runs in its own process group and
session (`daemon.spawn`), dies with the control plane (PR_SET_PDEATHSIG, see `worker_main`) and
reports on a pipe once its model is loaded. Stopping kills the whole process group; a worker that
died on its own says how (`exit`) and what its log last said (`log_tail`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from goat_dagster.serving import daemon
from goat_dagster.serving.local.engine import READY_LINE, WorkerSpec, worker_command
from goat_dagster.serving.local.engine_build import crash_cause
from goat_dagster.serving.local.memory import process_tree_rss_mb
from goat_dagster.serving.local.threads import WORKER_ENV


class WorkerStartError(RuntimeError):
    """The worker process exited or did not answer in time (message carries its log tail)."""


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

    def exit(self) -> str:
        """How the process ended ("exited with code 1", "killed by SIGKILL") or "running"."""
        return daemon.describe_exit(self.returncode)

    def cause(self) -> str | None:
        """What the exit says, in one line, when it says something about the engine (SIGILL)."""
        return crash_cause(self.returncode)

    def log_tail(self, lines: int = 12) -> str:
        return daemon.log_tail(self.log_path, lines)

    def rss_mb(self) -> float | None:
        return process_tree_rss_mb(self.pid) if self.alive() else None

    @classmethod
    def spawn(cls, spec: WorkerSpec, log_path: Path) -> tuple[Worker, int]:
        """Start the process; returns the worker and the read end of its readiness pipe.

        Must run on the thread that stays alive as long as the worker should (the event loop's):
        PR_SET_PDEATHSIG fires when the *thread* that forked the child exits.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        port = sock.getsockname()[1]
        ready_r, ready_w = os.pipe()
        cmd = worker_command(spec, listen_fd=sock.fileno(), ready_fd=ready_w, parent_pid=os.getpid())
        env = {k: v for k, v in os.environ.items() if k != "CONFIG_FILE"}  # llama-cpp-python reads it
        env = {**WORKER_ENV, **env}  # OpenMP threads of a waiting worker sleep (unless set otherwise)
        try:
            proc = daemon.spawn(
                cmd,
                log_path=log_path,
                banner=f"start {spec.model_key} on 127.0.0.1:{port}",
                env=env,
                pass_fds=(sock.fileno(), ready_w),
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
                f"(log {self.log_path}):\n{self.log_tail()}"
            ) from None
        finally:
            loop.remove_reader(ready_r)
        if data != READY_LINE:
            for _ in range(50):  # the pipe closed: the process is exiting; let it finish
                if not self.alive():
                    break
                await asyncio.sleep(0.02)
            cause = self.cause()
            raise WorkerStartError(
                f"{self.spec.model_key}: the worker {self.exit()} while loading "
                f"{self.spec.model_path}{': ' + cause if cause else ''} (log {self.log_path}):\n"
                f"{self.log_tail()}"
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
        """Signal the worker's process group (its own session: pgid == pid). Only while the leader
        is not yet reaped: afterwards its pid, and so the group id, may belong to someone else."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
