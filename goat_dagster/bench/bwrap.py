"""The local sandbox's isolation: bubblewrap, and what a worker inside it may see.

`bwrap_command(...)` is the command line of one slot's worker: new PID, network (loopback only),
IPC, UTS and cgroup namespaces; `--die-with-parent`; a read-only view of /usr, the Python
interpreter and a few /etc files (`ETC_FILES`), nothing else of the host; the slot's work directory
at /workspace is the only writable place on disk; a private size-capped tmpfs /tmp; the relay's
socket directory read-only at /run/goat; an environment of the given variables only.

Without bubblewrap the local sandbox refuses to start (`NO_BWRAP_ERROR`) unless GOAT_SANDBOX_BWRAP=0
turns isolation off on purpose (`NO_BWRAP_WARNING` says what is weaker then).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from goat_dagster.config import settings

WORKDIR = "/workspace"
SUPPORT = "/opt/goat"
RELAY_DIR = "/run/goat"
SANDBOX_PATH = f"{SUPPORT}/bin:/usr/local/bin:/usr/bin:/bin"
CHECK_PYTHON = "python-checks"  # the execute-only copy of the interpreter checks run under
# what the worker and the check zygote run: sandbox_worker.py compiled once on the host (the
# interpreters are the same), so each does not compile 1500 lines at start (~11 ms, ~4 MB of heap
# that every check forked from the zygote would copy); the source lies beside it for tracebacks
WORKER_SOURCE, WORKER_PROGRAM = "sandbox_worker.py", "sandbox_worker.pyc"
# /etc entries a sandbox may see (read-only); notably not shadow, ssh, machine-id or credentials
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "timezone",
    "nsswitch.conf",
    "hosts",
    "ssl",
    "ca-certificates",
    "mime.types",
    "protocols",
    "services",
)
NO_BWRAP_WARNING = (
    "bubblewrap is off (GOAT_SANDBOX_BWRAP=0): the local sandbox runs tasks as plain subprocesses. Still "
    "applied: a scrubbed environment, rlimits, timeouts with process-group kill, capped output and "
    "path checks on file tools. Weaker: no network isolation (task code can reach the network and "
    "local services), no filesystem isolation (task code can read the host's files and write wherever "
    "the sandbox user may), no PID namespace (task code can signal every process of its user). "
    "Install bubblewrap (apt-get install bubblewrap) and unset GOAT_SANDBOX_BWRAP."
)
NO_BWRAP_ERROR = (
    "bubblewrap (bwrap) is not installed, and the local sandbox does not run task code without it: "
    "that code would run on this machine itself, able to read its files, reach the network and kill "
    "its processes. Install it: apt-get install bubblewrap (`make install` does, where it may use "
    "apt-get). To run without isolation anyway, as a non-root user, set GOAT_SANDBOX_BWRAP=0."
)


def bwrap_turned_off() -> bool:
    """GOAT_SANDBOX_BWRAP=0: run without bubblewrap on purpose."""
    return not settings().sandbox_bwrap


def find_bwrap() -> str | None:
    """The bubblewrap binary, unless GOAT_SANDBOX_BWRAP=0 turns isolation off on purpose."""
    return None if bwrap_turned_off() else shutil.which("bwrap")


def base_interpreter() -> Path:
    """The interpreter (not the venv) task code runs under: stdlib only, no project packages."""
    return Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))


def describe_host_image() -> str:
    """What task code runs on in the local sandbox, for a run's manifest: the isolation (bubblewrap
    and its version, or none), the version of the interpreter (`base_interpreter`), the operating
    system. (Not the interpreter's path: where Python is installed does not change a result.)"""
    bwrap = find_bwrap()
    isolation = "no isolation"
    if bwrap:
        out = subprocess.run([bwrap, "--version"], capture_output=True, text=True, check=False).stdout
        isolation = out.strip() or "bubblewrap"
    try:
        os_name = platform.freedesktop_os_release().get("PRETTY_NAME") or platform.platform()
    except OSError:
        os_name = platform.platform()
    return f"{isolation}; Python {platform.python_version()}; {os_name}"


def others_can_read(path: Path) -> bool:
    """Whether a user with no special rights can reach and read `path` (o+x on every parent)."""
    for p in [path, *path.parents]:
        try:
            mode = p.stat().st_mode
        except OSError:
            return False
        if not mode & 0o001 or (p == path and not mode & 0o004):
            return False
    return True


def bwrap_command(
    bwrap: str,
    *,
    support: Path,
    work: Path,
    relay: Path,
    etc: Path,
    tmp_mb: int,
    ro_paths: Sequence[str],
    env: Mapping[str, str],
    worker_args: Sequence[str],
) -> list[str]:
    """The bubblewrap command line that starts a slot's worker: `support` (the worker, `python`) at
    /opt/goat, `work` at /workspace, `relay` at /run/goat, the slot's passwd and group from `etc`,
    `ro_paths` (an agent's files, `--mount` paths: bench/mounts.py) read-only where named."""
    argv = [bwrap]
    if os.geteuid() == 0:
        # privileged bwrap: no user namespace, so the worker can drop to the slot's uid
        argv += [
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ]
    else:
        argv += ["--unshare-all", "--uid", "1000", "--gid", "1000"]
    argv += ["--die-with-parent", "--new-session", "--hostname", "goat-sandbox"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / top
        if p.is_symlink():
            argv += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            argv += ["--ro-bind", str(p), str(p)]
    prefix = Path(sys.base_prefix).resolve()
    if not str(prefix).startswith("/usr/"):
        # parents are created like the host's (e.g. /root 0700): make them traversable
        for parent in reversed(prefix.parents[:-1]):
            argv += ["--perms", "0755", "--dir", str(parent)]
        argv += ["--ro-bind", str(prefix), str(prefix)]
    argv += ["--dir", "/etc"]
    for name in ETC_FILES:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    argv += [
        "--ro-bind",
        str(etc / "passwd"),
        "/etc/passwd",
        "--ro-bind",
        str(etc / "group"),
        "/etc/group",
    ]
    # bwrap creates missing mount-point parents 0700: make them traversable for the sandbox user
    argv += ["--perms", "0755", "--dir", "/opt", "--perms", "0755", "--dir", "/run"]
    argv += ["--ro-bind", str(support), SUPPORT]
    argv += ["--bind", str(work), WORKDIR]
    # read-only: a task can connect to the relay's socket but not remove or replace it
    argv += ["--ro-bind", str(relay), RELAY_DIR]
    argv += [
        "--perms",
        "1777",
        "--size",
        str(tmp_mb * 1024 * 1024),
        "--tmpfs",
        "/tmp",
    ]
    # after /tmp's tmpfs, so an agent script under the host's /tmp stays visible
    made = {"/", "/tmp", "/usr", "/etc", "/opt", "/run", WORKDIR, *map(str, prefix.parents), str(prefix)}
    for extra in ro_paths:
        # at the path the command uses; a symlink there shows what it points to
        named, source = Path(os.path.abspath(extra)), Path(extra).resolve()
        if source.exists() and not str(named).startswith("/usr/"):
            for parent in reversed(named.parents):
                if str(parent) not in made:
                    argv += ["--perms", "0755", "--dir", str(parent)]
                    made.add(str(parent))
            argv += ["--ro-bind", str(source), str(named)]
    argv += ["--proc", "/proc", "--dev", "/dev", "--chdir", WORKDIR, "--clearenv"]
    for k, v in env.items():
        argv += ["--setenv", k, v]
    argv += [
        "--",
        f"{SUPPORT}/bin/python",
        "-E",
        "-s",
        "-B",
        f"{SUPPORT}/{WORKER_PROGRAM}",
        *worker_args,
    ]
    return argv
