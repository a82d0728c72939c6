"""The host's end of a local sandbox worker: the `sandbox_worker.py` process of one slot, and the
JSON-lines pipe the harness asks it through (one request, one answer; the worker's side of the
protocol is in sandbox_worker.py). A worker that died is started again by the next request.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO

from goat_dagster.bench.sandbox import SandboxError


class WorkerExited(SandboxError):
    """The worker process went away while the host waited for its answer."""


class WorkerProcess:
    """One worker process (`sandbox_worker.py`, started by `argv`) and its request/response pipe."""

    def __init__(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        spawn: Callable[[Callable[[], subprocess.Popen[bytes]]], subprocess.Popen[bytes]],
    ) -> None:
        self.argv, self.env, self.cwd, self.log_path, self.spawn = argv, env, cwd, log_path, spawn
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr: BinaryIO | None = None  # its worker.log, open while it runs
        self.lock = threading.Lock()
        self.buf = bytearray()

    def start(self) -> None:
        """(Re)start the worker and wait until it is ready."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the worker process, through `spawn` (the pool's spawner thread: see
        `LocalSandboxPool.spawn`), without waiting for it: a pool launches all its slots' workers
        first, then waits for each (`wait_ready`), so they start side by side."""
        self.kill()  # whatever is left of a previous one: its process, pipes and log handle
        argv = self.argv
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives with the process
        try:
            self.proc = self.spawn(
                lambda: subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log_file,
                    bufsize=0,
                    env=self.env,
                    cwd=str(self.cwd),
                    start_new_session=True,
                    close_fds=True,
                )
            )
        except OSError as exc:
            log_file.close()
            raise SandboxError(f"cannot start the sandbox worker ({argv[0]}): {exc}") from exc
        except BaseException:
            log_file.close()
            raise
        self.stderr = log_file
        self.buf = bytearray()

    def wait_ready(self) -> None:
        """Wait for the launched worker's ready line (SandboxError if it does not come)."""
        try:
            first = self._readline(timeout=30)
        except WorkerExited as exc:
            raise SandboxError(f"sandbox worker did not start: {exc}") from None
        if not first.get("ready"):
            self.kill()
            raise SandboxError(f"sandbox worker did not start: {first}")

    def _readline(self, timeout: float) -> dict[str, Any]:
        """One JSON line from the worker, waiting at most `timeout` seconds."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            if not ready:
                self.kill()
                raise SandboxError(f"sandbox worker did not answer within {timeout:.0f}s; restarted")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                self.kill()
                raise WorkerExited(f"sandbox worker exited: {self.log_tail() or 'no output'}")
            self.buf += chunk
        line, _, rest = bytes(self.buf).partition(b"\n")
        self.buf = bytearray(rest)
        return json.loads(line)

    def request(self, req: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        """Send one request and wait for its answer, starting a new worker if the last one died.

        Raises WorkerExited when the worker dies before it answers this request.
        """
        line = json.dumps(req).encode() + b"\n"
        with self.lock:
            for tries in (1, 2):
                if self.proc is None or self.proc.poll() is not None:
                    self.start()
                assert self.proc is not None and self.proc.stdin is not None
                try:
                    self.proc.stdin.write(line)
                    self.proc.stdin.flush()
                    break
                except OSError as exc:  # it died after its last answer (e.g. killed by a task's leftover)
                    self.kill()
                    if tries == 2:
                        raise SandboxError(f"sandbox worker is gone: {exc}; {self.log_tail()}") from exc
            return self._readline(timeout)

    def kill(self) -> None:
        # taken first: the pool's close (another thread) and a request that saw the worker die
        # may both kill it
        stderr, self.stderr = self.stderr, None
        proc, self.proc = self.proc, None
        if stderr is not None:
            stderr.close()
        if proc is not None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, 9)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    with suppress(OSError):
                        f.close()

    def log_tail(self, n: int = 800) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-n:].strip()
