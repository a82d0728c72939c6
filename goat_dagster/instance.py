"""The Dagster instance: PostgreSQL storage (embedded `pgserver` unless DAGSTER_PG_URL is set).

`ensure_instance()` is what every entry point calls before touching Dagster:

1. `DAGSTER_PG_URL` set by the user -> use that PostgreSQL.
   Otherwise start (or join) the embedded PostgreSQL 16 under `$GOAT_HOME/pg`. pgserver counts
   the processes holding a handle; the server stops when the last of them exits, and a second
   `goat`/`dagster dev` on the same GOAT_HOME joins the running server instead of starting one.
2. `DAGSTER_HOME=$GOAT_HOME/dagster`, whose dagster.yaml is a link to the project's dagster.yaml
   (one source of truth). Its storage, `instance_storage.GoatPostgresStorage`, resolves the URL
   as in step 1, so plain `dagster dev` / `dagster asset materialize` in the checkout, with no
   DAGSTER_HOME, reach the same instance as `goat`.

Child processes (dagster dev's code server, run workers, the daemon) inherit the environment and
reach the same server without starting their own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import warnings
from pathlib import Path

import psutil
from dagster import DagsterInstance

from goat_dagster import config

with warnings.catch_warnings():  # platformdirs (under pgserver) warns when XDG_RUNTIME_DIR is unset
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    import pgserver
    from pgserver.postgres_server import PostgresServer

log = logging.getLogger(__name__)

# Set by the process that started the embedded server, for its children: DAGSTER_PG_URL is then
# ours, not the user's. An internal flag, not a setting.
EMBEDDED_FLAG = "GOAT_PG_EMBEDDED"
_server = None  # the pgserver handle this process holds, if any


def sqlalchemy_url(url: str) -> str:
    """Name the psycopg2 driver: with SQLAlchemy 2.1 a bare postgresql:// picks psycopg 3, on which
    dagster-postgres' `NOTIFY run_events, $1` fails."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def _prune_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that died without releasing their pgserver handle (SIGKILL), so the
    server still stops when the last live holder exits."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    with PostgresServer._lock:
        try:
            pids = json.loads(handles.read_text() or "[]")
        except json.JSONDecodeError:
            pids = []
        alive = [p for p in pids if psutil.pid_exists(p)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _install_term_handler() -> None:
    """Turn SIGTERM into a normal exit so atexit hooks (pgserver's stop) run."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        with contextlib.suppress(ValueError):  # ValueError: not the main thread
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def ensure_postgres() -> str:
    """Return the SQLAlchemy URL of the instance database, starting the embedded server if needed."""
    global _server
    external = config.settings().dagster_pg_url
    if external and not os.environ.get(EMBEDDED_FLAG):
        url = sqlalchemy_url(external)
        os.environ["DAGSTER_PG_URL"] = url
        return url
    if _server is None:
        p = config.paths().ensure()
        p.pg.parent.mkdir(parents=True, exist_ok=True)
        if not external:  # we are the process that owns the embedded server's lifetime
            _prune_dead_handles(p.pg)
            logging.getLogger("pgserver").setLevel(logging.WARNING)
            _server = pgserver.get_server(p.pg, cleanup_mode="stop")
            _install_term_handler()
            os.environ["DAGSTER_PG_URL"] = sqlalchemy_url(_server.get_uri())
            os.environ[EMBEDDED_FLAG] = "1"
    return os.environ["DAGSTER_PG_URL"]


def stop_postgres() -> None:
    """Release this process's handle on the embedded server (it stops if this was the last user)."""
    global _server
    if _server is not None:
        _server.cleanup()
        _server = None
        os.environ.pop(EMBEDDED_FLAG, None)
        os.environ.pop("DAGSTER_PG_URL", None)


def prepare_dagster_home() -> Path:
    """`$GOAT_HOME/dagster` with dagster.yaml linked to the project's; exported as DAGSTER_HOME."""
    p = config.export_environment().ensure()
    home = p.dagster_home
    src = config.project_dir() / "dagster.yaml"
    link = home / "dagster.yaml"
    if not src.is_file():
        raise FileNotFoundError(f"{src} not found: set GOAT_PROJECT_DIR to the goat-dagster checkout")
    if not (link.is_symlink() and link.resolve() == src.resolve()):
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(src)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def ensure_instance() -> DagsterInstance:
    """The persistent Dagster instance of this GOAT_HOME (PostgreSQL-backed, goat's run queue)."""
    ensure_postgres()
    prepare_dagster_home()
    return DagsterInstance.get()


def describe() -> dict[str, str]:
    """Where the instance lives, with the password (if any) masked, for `goat doctor`/`goat demo`."""
    url = os.environ.get("DAGSTER_PG_URL", "")
    masked = url
    if "@" in url:
        head, tail = url.split("@", 1)
        scheme, _, userinfo = head.partition("//")
        user, _, password = userinfo.partition(":")
        if password:
            masked = f"{scheme}//{user}:***@{tail}"
    return {
        "dagster_home": os.environ.get("DAGSTER_HOME", ""),
        "postgres": masked,
        "embedded": "yes" if os.environ.get(EMBEDDED_FLAG) else "no",
    }
