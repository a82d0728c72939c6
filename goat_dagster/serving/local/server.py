"""Running the control plane: `goat serve` in the foreground (the detached start runs the same).

Binds the listening socket first (port 0 picks a free one), records pid/port in
`$GOAT_HOME/serve/serve.json` for clients, serves until SIGTERM/SIGINT, then stops every worker
(process groups) and removes the record. Workers also die with this process if it is SIGKILLed
(PR_SET_PDEATHSIG, see `worker_main`).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import time

import uvicorn

from goat_dagster import config
from goat_dagster.registry import load_registry
from goat_dagster.serving.local.app import create_app
from goat_dagster.serving.local.manager import ModelManager
from goat_dagster.serving.local.settings import ServeSettings, serve_state

log = logging.getLogger("goat.serve")


class PortInUse(RuntimeError):
    pass


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        other = serve_state().read()
        hint = f" (goat serve pid {other['pid']} recorded in {serve_state().path})" if other else ""
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def run_serve(settings: ServeSettings, *, log_level: str = "info") -> None:
    """Serve until a signal; returns after every worker has stopped."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per proxied request is noise
    paths = config.export_environment()
    paths.serve.mkdir(parents=True, exist_ok=True)
    if not (settings.models_dir and not config.models_file().exists()):  # a folder alone will do
        load_registry()  # a broken models.yaml stops us here, with file, line and field
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    host_for_url = f"[{settings.host}]" if ":" in settings.host else settings.host
    root = f"http://{host_for_url}:{port}"
    manager = ModelManager(settings, paths.serve)
    if manager.models_dir is not None:
        found = [m.key for m in manager.models_dir.entries()]
        log.info("--models-dir %s: %s", manager.models_dir.directory, ", ".join(found) or "no GGUF yet")
    atexit.register(manager.kill_all_now)
    serve_state().write(
        {
            "pid": os.getpid(),
            "host": settings.host,
            "port": port,
            "root_url": root,
            "base_url": f"{root}/v1",
            "started_at": time.time(),
            "goat_home": str(paths.home),
            "models_file": str(config.models_file()),
            "budget_mb": settings.resolved_budget_mb,
            "margin_mb": settings.resolved_margin_mb,
            "settings": settings.model_dump(),
        }
    )
    log.info(
        "goat serve on %s/v1 (pid %d, budget %d MB, margin %d MB, models from %s)",
        root,
        os.getpid(),
        settings.resolved_budget_mb,
        settings.resolved_margin_mb,
        config.models_file(),
    )
    app = create_app(manager, base_url=f"{root}/v1")
    uv_config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
        lifespan="on",
    )
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler it
    # found: make that one a no-op so the clean-up below runs and the exit status is 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        uvicorn.Server(uv_config).run(sockets=[sock])
    finally:
        manager.kill_all_now()  # normally a no-op: the lifespan already stopped them
        serve_state().remove(os.getpid())
        log.info("goat serve stopped")
