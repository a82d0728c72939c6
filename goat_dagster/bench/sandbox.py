"""What a sandbox is to the rest of the harness: run a command, move files, list the work dir.

Two backends implement it: `local` (local_sandbox.py: warm bubblewrap'd workers on this machine)
and `modal` (modal_sandbox.py: one `modal.Sandbox` per task); `sandboxes.make_pool` picks one by
name. Agents and the runner only see `Sandbox` (one task attempt's live sandbox) and `SandboxPool`
(where sessions come from).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

# Host variables a sandbox may inherit. Everything else is dropped: provider keys, LANGFUSE_*,
# DAGSTER_*, GOAT_*, cloud credentials never reach task code.
ENV_ALLOW: tuple[str, ...] = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
_SECRETISH = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.I)


class SandboxError(Exception):
    """The sandbox itself failed (could not start, died, lost contact): an infrastructure error."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class SandboxPathError(ValueError):
    """A file operation on a path the agent may not use; the message is meant for the model."""


class SandboxFileError(OSError):
    """A file operation failed for an ordinary reason (no such file, is a directory, ...)."""


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    killed: str | None = None  # timeout | output | cpu | file_size | signal N | sandbox (it killed it)
    truncated: bool = False
    output_bytes: int = 0
    warm: bool = False

    @property
    def timed_out(self) -> bool:
        return self.killed == "timeout"

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.killed is None

    def tail(self, n: int = 2000) -> str:
        text = (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).strip()
        return text[-n:]


@dataclass(frozen=True)
class CheckPlan:
    """What a sandbox needs to run a task's check sealed (see sandbox_worker.run_check): module names
    the work dir may hold (`expected`: the task's own files), the hidden test files and the modules
    they import (nothing in the work dir may shadow those or the standard library)."""

    expected: tuple[str, ...] = ()
    test_files: tuple[str, ...] = ()
    test_modules: tuple[str, ...] = ()
    protect: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class CheckRun:
    """A check's run: the command's result, whether the harness's seal came back (the program
    returned normally: its tests ran to their end), and the runner's notes (`outcome ...`,
    `violation ...`, `info ...`)."""

    result: ExecResult
    sealed: bool
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entry:
    path: str
    kind: str  # file | dir | link
    size: int = 0
    target: str | None = None


@dataclass(frozen=True)
class SandboxLimits:
    """Per-command resource limits inside a sandbox."""

    memory_mb: int = 2048
    file_size_mb: int = 64
    processes: int = 256
    open_files: int = 1024
    output_keep_bytes: int = 64 * 1024
    output_hard_bytes: int = 16 * 1024 * 1024
    tmp_mb: int = 256
    cpus: float = 1.0  # Modal only: a request of this many cores

    def rlimits(self) -> dict[str, int]:
        return {
            "memory_bytes": self.memory_mb * 1024 * 1024,
            "file_size_bytes": self.file_size_mb * 1024 * 1024,
            "processes": self.processes,
            "open_files": self.open_files,
        }


def scrubbed_env(extra: Mapping[str, str] | None = None, *, path: str, home: str = "/tmp") -> dict[str, str]:
    """The environment of every command in a sandbox: an allow-list of host variables plus basics.

    `extra` (what an agent deliberately passes, like OPENAI_BASE_URL and a scoped key) is added
    as given; nothing else from the host environment gets through.
    """
    env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ and not _SECRETISH.search(k)}
    env.setdefault("LANG", "C.UTF-8")
    env.update(
        {
            "PATH": path,
            "HOME": home,
            "TMPDIR": "/tmp" if home == "/tmp" else home,
            "USER": "sandbox",
            "TERM": "dumb",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "GOAT_SANDBOX": "1",
        }
    )
    if extra:
        env.update({str(k): str(v) for k, v in extra.items()})
    return env


class Sandbox(ABC):
    """One task attempt's sandbox. File paths are relative to `workdir` (or absolute inside it)."""

    kind: str = ""
    workdir: str = "/workspace"
    isolation: str = ""  # what protects the host, for the record (e.g. "bwrap", "none", "modal")

    @abstractmethod
    def exec(
        self, command: str, *, timeout_s: float, env: Mapping[str, str] | None = None, cwd: str | None = None
    ) -> ExecResult:
        """Run a shell command in the work dir; never raises for the command's own failure."""

    @abstractmethod
    def write_files(self, files: Mapping[str, str | bytes]) -> None:
        """Create or overwrite files (parents created)."""

    @abstractmethod
    def read_file(self, path: str, limit: int = 1 << 20) -> bytes:
        """Up to `limit` bytes of a file."""

    @abstractmethod
    def walk(self, limit: int = 5000) -> list[Entry]:
        """Every entry under the work dir (symlinks are listed, never followed)."""

    @abstractmethod
    def run_check(self, command: str, *, timeout_s: float, plan: CheckPlan) -> CheckRun:
        """Run a task's check (one Python program) so that only a normal return of the program
        brings the seal back; never raises for the check's own failure."""

    @abstractmethod
    def kill_processes(self) -> None:
        """Stop everything still running in the sandbox (between the agent and the check)."""

    def gateway_url(self, relay_socket: str) -> str:
        """A base URL, reachable from inside the sandbox, that leads to the host's gateway relay."""
        raise SandboxError(f"the {self.kind} sandbox cannot reach the host's gateway relay", transient=False)


class SandboxPool(ABC):
    """Where a runner gets sandboxes: `with pool.session() as sb:` for each task attempt."""

    kind: str = ""
    isolation: str = ""
    warnings: list[str]

    def __init__(self) -> None:
        self.warnings = []

    @abstractmethod
    def session(self, image: str | None = None) -> AbstractContextManager[Sandbox]:
        """A fresh sandbox for one task attempt, cleaned up (or destroyed) on exit; `image` is the
        task's own (a backend that cannot honour it says so in `warnings`)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release every sandbox."""

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class PoolOptions:
    """What the runner asks of a pool."""

    size: int = 2
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    network: bool = False  # the agent needs a way to the model gateway (command agents)
    gateway_host: str | None = None  # Modal: with `network`, the only host the sandbox may reach
    image: str | None = None  # Modal: image of tasks that name none; local: ignored
    lifetime_s: int = 3600  # Modal: sandbox lifetime
    ro_paths: tuple[str, ...] = ()  # local: host paths shown read-only where named (bench/mounts.py)
