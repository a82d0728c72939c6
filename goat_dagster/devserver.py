"""`goat ui` / `make ui`: `dagster dev` against the goat instance.

Only one Dagster daemon may drive an instance: the first `goat ui` on a GOAT_HOME takes a lock and
runs `dagster dev` (webserver + daemon); a second one finds the lock held and runs a webserver
only, on the next free port, so two sessions share sensors and the run queue instead of racing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from goat_dagster import config
from goat_dagster.instance import ensure_instance, prepare_dagster_home


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def run_dev(host: str, port: int) -> int:
    ensure_instance()  # PostgreSQL, DAGSTER_HOME
    home = prepare_dagster_home()
    workspace = config.project_dir() / "workspace.yaml"
    lock_file = open(home / "daemon.lock", "w")  # noqa: SIM115 - held for the process lifetime
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        owns_daemon = True
    except BlockingIOError:
        owns_daemon = False
    while not _port_free(host, port):
        port += 1
    if owns_daemon:
        cmd = [_bin("dagster"), "dev", "-h", host, "-p", str(port), "-w", str(workspace)]
    else:
        print(
            "another `goat ui` runs the daemon for this GOAT_HOME: starting a webserver only", file=sys.stderr
        )
        cmd = [_bin("dagster-webserver"), "-h", host, "-p", str(port), "-w", str(workspace)]
    print(f"Dagster UI: http://{host}:{port}  (DAGSTER_HOME={home})", file=sys.stderr)
    return supervise(cmd)


# How long `dagster dev` gets to shut its webserver, daemon and code servers down after a SIGTERM or
# SIGINT before its whole process group is terminated, then killed: `goat ui` is gone within 10 s.
GRACE_S = 6.0
TERM_S = 2.0


def supervise(cmd: list[str]) -> int:
    """Run `cmd` (dagster dev / dagster-webserver) in its own process group until it exits; a SIGTERM
    or SIGINT to `goat ui` stops it and everything it started.

    Two things make this necessary. A process started in the background (`goat ui &`, a service
    manager) inherits SIGINT *ignored*; `dagster dev` maps SIGTERM to its SIGINT handler, so it would
    ignore SIGTERM as well, and its children with it. So our handlers are installed before the child
    starts (a handled signal is reset to the default in the child, an ignored one stays ignored),
    and the child gets SIGINT, which it turns into an orderly shutdown of its webserver, daemon and
    code servers. If that takes longer than GRACE_S, the process group gets SIGTERM, then SIGKILL.
    """
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    proc = subprocess.Popen(cmd, cwd=config.project_dir(), env=os.environ.copy(), start_new_session=True)
    while proc.poll() is None and not stopping:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
    if proc.poll() is not None and not stopping:
        _kill_group(proc.pid, signal.SIGKILL)  # it died; leave none of its children behind
        return proc.returncode
    _send(proc, signal.SIGINT)
    for sig, wait_s in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, TERM_S)):
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            print(f"goat ui: dagster did not stop in {wait_s:.0f} s; sending {sig.name}", file=sys.stderr)
            _kill_group(proc.pid, sig)
    proc.wait()
    _kill_group(proc.pid, signal.SIGKILL)  # stragglers of an orderly exit (none expected)
    return 128 + stopping[0]


def _send(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
