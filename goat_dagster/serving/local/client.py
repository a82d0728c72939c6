"""The client side of `goat serve`, for the local backend and the CLI: make sure the control plane of
this GOAT_HOME runs (start it detached when it does not, reuse it when it does), load and unload a
model, stop the control plane.

State lives in `$GOAT_HOME/serve/`: `serve.json` (pid, port, URLs; written by the server itself,
`settings.serve_state()`), `serve.lock` (one starter at a time); the detached server's output goes to
`$GOAT_HOME/logs/serve.log`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from goat_dagster import config
from goat_dagster.serving import daemon
from goat_dagster.serving.backend import Log, PrintLog, ServingError
from goat_dagster.serving.local.settings import ServeSettings, serve_state
from goat_dagster.serving.probe import error_message


class ServeClientError(ServingError):
    """The control plane could not be started, reached or asked (message says why)."""


@dataclass(frozen=True)
class ControlPlane:
    root_url: str  # http://127.0.0.1:8100
    pid: int
    started: bool  # True when this call started it
    log_path: Path
    goat_home: str

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (…/v1)."""
        return f"{self.root_url}/v1"


def serve_log_path() -> Path:
    return config.paths().logs / "serve.log"


def _healthz(root_url: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    try:
        r = httpx.get(f"{root_url}/healthz", timeout=timeout_s)
        data = r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("service") == "goat-serve" else None


def _url(host: str, port: int) -> str:
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def running_control_plane() -> ControlPlane | None:
    """The control plane recorded for this GOAT_HOME, if its process answers."""
    state = serve_state().read()
    if not state or not psutil.pid_exists(int(state.get("pid", -1))):
        return None
    root = _url(state["host"], int(state["port"]))
    health = _healthz(root)
    if health is None or health.get("pid") != state["pid"]:
        return None
    return ControlPlane(root, int(state["pid"]), False, serve_log_path(), str(state.get("goat_home")))


def ensure_control_plane(
    settings: ServeSettings | None = None, *, timeout_s: float = 60.0, log: Log | None = None
) -> ControlPlane:
    """The running control plane of this GOAT_HOME, or a new one started detached.

    `settings.port == 0` means "any free port": a running one is reused whatever its port. A fixed
    port that answers as another GOAT_HOME's control plane, or as something else, is an error.
    """
    settings = settings or ServeSettings.from_env()
    log = log or PrintLog()
    paths = config.export_environment()
    with daemon.locked(paths.serve / "serve.lock"):
        cp = running_control_plane()
        if cp is not None:
            _check_reusable(cp, settings, log)
            log.info(f"goat serve is running: {cp.base_url} (pid {cp.pid})")
            return cp
        if settings.port:
            root = _url(settings.host, settings.port)
            health = _healthz(root)
            if health is not None:
                if health.get("goat_home") == str(paths.home):
                    return ControlPlane(root, int(health["pid"]), False, serve_log_path(), str(paths.home))
                raise ServeClientError(
                    f"{root} is the goat serve of another GOAT_HOME ({health.get('goat_home')}, pid "
                    f"{health.get('pid')}); stop it or choose another port"
                )
        return _start_detached(settings, timeout_s, log)


def _check_reusable(cp: ControlPlane, settings: ServeSettings, log: Log) -> None:
    """One control plane per GOAT_HOME: refuse one that cannot serve what is asked, say what differs."""
    running_port = int(cp.root_url.rsplit(":", 1)[1])
    if settings.port not in (0, running_port):
        raise ServeClientError(
            f"goat serve of this GOAT_HOME already runs on port {running_port} (pid {cp.pid}), "
            f"not {settings.port}: use that port, or stop it first (`goat stop`)"
        )
    state = serve_state().read() or {}
    serving = state.get("models_file")
    if serving and Path(serving) != config.models_file():  # it would not know our models
        raise ServeClientError(
            f"goat serve of this GOAT_HOME (pid {cp.pid}) serves the models of {serving}, not "
            f"{config.models_file()}: stop it (`goat stop`) to serve this registry"
        )
    serving_dir = (state.get("settings") or {}).get("models_dir")
    if settings.models_dir is not None and settings.models_dir != serving_dir:
        raise ServeClientError(
            f"goat serve of this GOAT_HOME (pid {cp.pid}) serves --models-dir {serving_dir or '(none)'}, "
            f"not {settings.models_dir}: stop it (`goat stop`) to serve that folder"
        )
    asked = {"budget_mb": settings.budget_mb, "margin_mb": settings.margin_mb}
    differ = [
        f"{k} {state.get(k)} (asked {v})" for k, v in asked.items() if v is not None and state.get(k) != v
    ]
    if differ:  # reused all the same: restarting would kill the workers other runs use
        log.info(
            f"goat serve is running with {', '.join(differ)}; reusing it — `goat stop` and run "
            "again to apply the new settings"
        )


def _start_detached(settings: ServeSettings, timeout_s: float, log: Log) -> ControlPlane:
    paths = config.paths()
    log_path = serve_log_path()
    # what it serves is this process's registry, whatever directory it runs in
    env = {**os.environ, config.GoatSettings.env_name("models_file"): str(config.models_file())}
    cmd = [sys.executable, "-m", "goat_dagster.cli", "serve", *settings.cli_args()]
    banner = f"starting: goat serve {' '.join(settings.cli_args())}"
    proc = daemon.spawn(cmd, log_path=log_path, banner=banner, env=env, cwd=paths.home)
    log.info(f"starting goat serve (pid {proc.pid}, log {log_path})")

    def answering() -> str | None:
        state = serve_state().read()
        if state and state.get("pid") == proc.pid:
            root = _url(state["host"], int(state["port"]))
            if _healthz(root, timeout_s=1.0) is not None:
                return root
        return None

    root = daemon.wait_until_ready(
        proc, answering, what="goat serve", log_path=log_path, timeout_s=timeout_s, error=ServeClientError
    )
    log.info(f"goat serve is up: {root}/v1 (pid {proc.pid})")
    return ControlPlane(root, proc.pid, True, log_path, str(paths.home))


def stop_control_plane(timeout_s: float = 20.0) -> int | None:
    """Stop the recorded control plane of this GOAT_HOME (SIGTERM, then SIGKILL); its pid, or None."""
    state = serve_state().read()
    if not state:
        return None
    pid = int(state.get("pid", -1))
    try:
        proc = psutil.Process(pid)
        cmd = proc.cmdline()
        if "serve" not in cmd or not any("goat" in part for part in cmd):
            return None  # a stale record: the pid belongs to someone else now
        proc.terminate()  # it stops its workers itself (they run in their own sessions)
        if not daemon.wait_gone(pid, timeout_s):
            proc.kill()
            daemon.wait_gone(pid, 5)
    except psutil.NoSuchProcess:
        pid_stopped = None  # it was already gone: nothing was stopped
    else:
        pid_stopped = pid
    serve_state().remove(pid)
    return pid_stopped


def load_model(root_url: str, model: str, timeout_s: float = 600.0) -> dict[str, Any]:
    """Ask the control plane to load `model` now; returns its /status instance record."""
    return _admin(root_url, model, "load", timeout_s)


def unload_model(root_url: str, model: str, timeout_s: float = 600.0) -> dict[str, Any]:
    """Ask the control plane to stop `model`'s worker (it waits for a request in flight)."""
    return _admin(root_url, model, "unload", timeout_s)


def _admin(root_url: str, model: str, verb: str, timeout_s: float) -> dict[str, Any]:
    try:
        resp = httpx.post(f"{root_url}/admin/models/{model}/{verb}", timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ServeClientError(f"{verb}ing {model!r} on {root_url}: {type(exc).__name__}: {exc}") from None
    if resp.status_code != 200:
        raise ServeClientError(f"{verb}ing {model!r} on {root_url}: {error_message(resp)}")
    return resp.json()
