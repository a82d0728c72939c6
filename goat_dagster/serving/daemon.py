"""Processes goat starts and leaves running: spawn one with its output in a log, wait until it is
ready, stop it (its whole process group), and the state file and lock through which several goat
processes agree on the one running instance.

Three kinds use it: `goat serve` started detached (`serving/local/client.py`), the managed LiteLLM
proxy (`routing/proxy.py`) and the llama.cpp worker of each loaded model (`serving/local/worker.py`).
Each runs in its own session, so a signal to its process group reaches what it started too, and a
Ctrl-C in the terminal that started it does not.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from goat_dagster import atomic

T = TypeVar("T")
# Handles of the processes this process started, so that Python does not warn about (or lose the
# exit status of) a child still running when its Popen object would be collected.
_children: list[subprocess.Popen] = []


class DaemonError(RuntimeError):
    """A process could not be started or did not become ready; the message ends with its log tail."""


def log_tail(path: Path, lines: int = 12) -> str:
    """The last `lines` lines of a log (read from its last 8 KiB)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"
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


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(FileNotFoundError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock (flock) on `path`: one starter at a time across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class StateFile:
    """The JSON record of a running instance (pid, address, ...), written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def write(self, data: Mapping[str, Any]) -> None:
        atomic.write_text(self.path, json.dumps(dict(data), indent=2))

    def remove(self, pid: int | None = None) -> None:
        """Remove the record; with `pid`, only if it is still that process's."""
        if pid is not None and (self.read() or {}).get("pid") != pid:
            return
        self.path.unlink(missing_ok=True)


def spawn(
    cmd: Sequence[str],
    *,
    log_path: Path,
    banner: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen:
    """Start `cmd` in its own session, output appended to `log_path` after a `banner` line."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _children[:] = [p for p in _children if p.poll() is None]
    with log_path.open("ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {banner}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd is not None else None,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
            close_fds=True,
        )
    _children.append(proc)
    return proc


def wait_until_ready(
    proc: subprocess.Popen,
    ready: Callable[[], T | None],
    *,
    what: str,
    log_path: Path,
    timeout_s: float,
    poll_s: float = 0.1,
    error: type[Exception] = DaemonError,
) -> T:
    """Poll `ready()` until it returns something; `error` if `proc` exits first (its log tail
    says why) or `timeout_s` passes (then the process group is stopped)."""

    def attempt() -> T | None:
        if proc.poll() is not None:
            raise error(
                f"{what} {describe_exit(proc.returncode)} while starting (log {log_path}):\n"
                f"{log_tail(log_path)}"
            )
        return ready()

    retrying = Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(poll_s),
        retry=retry_if_result(lambda value: value is None),
        reraise=True,
    )
    try:
        return retrying(attempt)  # type: ignore[return-value]
    except RetryError:
        stop_group(proc.pid)
        raise error(
            f"{what} did not answer within {timeout_s:.0f}s (log {log_path}):\n{log_tail(log_path)}"
        ) from None


def reap(pid: int) -> None:
    """Collect the exit status of `pid` if this process started it (a no-op otherwise)."""
    for proc in [p for p in _children if p.pid == pid]:
        if proc.poll() is not None:
            _children.remove(proc)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Whether `pid` exits within `timeout_s` (collecting it when it is our child)."""

    def gone() -> bool:
        reap(pid)
        return not pid_alive(pid)

    retrying = Retrying(
        stop=stop_after_delay(timeout_s), wait=wait_fixed(0.05), retry=retry_if_result(lambda g: not g)
    )
    try:
        return bool(retrying(gone))
    except RetryError:
        return False


def stop_group(pid: int, *, grace_s: float = 15.0) -> bool:
    """SIGTERM the process group of `pid` (a session leader we started), SIGKILL what is left after
    `grace_s`. Returns whether the process was running."""
    if not pid_alive(pid):
        reap(pid)
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    if not wait_gone(pid, grace_s):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        wait_gone(pid, 5.0)
    return True
