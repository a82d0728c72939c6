"""`goat ui` / `make ui`: `dagster dev` against the goat instance.

Only one Dagster daemon may drive an instance: the first `goat ui` on a GOAT_HOME takes a lock and
runs `dagster dev` (webserver + daemon); a second one finds the lock held and runs a webserver
only, on the next free port, so two sessions share sensors and the run queue instead of racing.
"""

from __future__ import annotations

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
    proc = subprocess.Popen(cmd, cwd=config.project_dir(), env=os.environ.copy())

    def forward(signum: int, _frame: object) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return proc.wait()
