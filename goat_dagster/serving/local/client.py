"""The client side of `goat serve`, for assets and the CLI: make sure the control plane of this
GOAT_HOME runs (start it detached when it does not, reuse it when it does), load a model, probe an
OpenAI-compatible endpoint with a real chat completion, stop the control plane.

State lives in `$GOAT_HOME/serve/`: `serve.json` (pid, port, URLs; written by the server itself),
`$GOAT_HOME/logs/serve.log` (the detached server's output), `serve.lock` (one starter at a time).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from goat_dagster import config
from goat_dagster.serving.local.server import read_state
from goat_dagster.serving.local.settings import ServeSettings
from goat_dagster.serving.local.worker import log_tail

Log = Callable[[str], None]
_DETACHED: list[subprocess.Popen] = []  # keep handles so Python does not warn about running children


class ServeClientError(RuntimeError):
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


@contextlib.contextmanager
def _start_lock() -> Iterator[None]:
    path = config.paths().serve / "serve.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
    state = read_state()
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
    say = log or (lambda _m: None)
    paths = config.export_environment()
    with _start_lock():
        cp = running_control_plane()
        if cp is not None:
            running_port = int(cp.root_url.rsplit(":", 1)[1])
            if settings.port not in (0, running_port):  # one control plane per GOAT_HOME
                raise ServeClientError(
                    f"goat serve of this GOAT_HOME already runs on port {running_port} (pid {cp.pid}), "
                    f"not {settings.port}: use that port, or stop it first (`goat stop`)"
                )
            state = read_state() or {}
            serving = state.get("models_file")
            if serving and Path(serving) != config.models_file():  # it would not know our models
                raise ServeClientError(
                    f"goat serve of this GOAT_HOME (pid {cp.pid}) serves the models of {serving}, not "
                    f"{config.models_file()}: stop it (`goat stop`) to serve this registry"
                )
            asked = {"budget_mb": settings.budget_mb, "margin_mb": settings.margin_mb}
            differ = [
                f"{k} {state.get(k)} (asked {v})"
                for k, v in asked.items()
                if v is not None and state.get(k) != v
            ]
            if differ:  # reused all the same: restarting would kill the workers other runs use
                say(
                    f"goat serve is running with {', '.join(differ)}; reusing it — `goat stop` and run "
                    "again to apply the new settings"
                )
            say(f"goat serve is running: {cp.base_url} (pid {cp.pid})")
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
        return _start_detached(settings, timeout_s, say)


def _start_detached(settings: ServeSettings, timeout_s: float, say: Log) -> ControlPlane:
    paths = config.paths()
    log_path = serve_log_path()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["GOAT_HOME"] = str(paths.home)
    env["GOAT_MODELS_FILE"] = str(config.models_file())
    cmd = [sys.executable, "-m", "goat_dagster.cli", "serve", *settings.cli_args()]
    with log_path.open("ab") as fh:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        fh.write(f"\n--- {stamp} starting: goat serve {' '.join(settings.cli_args())}\n".encode())
        fh.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
            cwd=str(paths.home),
        )
    _DETACHED.append(proc)
    say(f"starting goat serve (pid {proc.pid}, log {log_path})")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServeClientError(
                f"goat serve exited with code {proc.returncode} while starting (log {log_path}):\n"
                f"{log_tail(log_path)}"
            )
        state = read_state()
        if state and state.get("pid") == proc.pid:
            root = _url(state["host"], int(state["port"]))
            if _healthz(root, timeout_s=1.0) is not None:
                say(f"goat serve is up: {root}/v1 (pid {proc.pid})")
                return ControlPlane(root, proc.pid, True, log_path, str(paths.home))
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    raise ServeClientError(
        f"goat serve did not answer within {timeout_s:.0f}s (log {log_path}):\n{log_tail(log_path)}"
    )


def _ended(proc: psutil.Process, timeout_s: float) -> bool:
    """Whether the process exits within timeout_s. Not our child (it was started by another
    `goat` process), it can only be polled; a zombie whose parent has not reaped it yet is ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def stop_control_plane(timeout_s: float = 20.0) -> int | None:
    """Stop the recorded control plane of this GOAT_HOME (SIGTERM, then SIGKILL); its pid, or None."""
    state = read_state()
    if not state:
        return None
    pid = int(state.get("pid", -1))
    try:
        proc = psutil.Process(pid)
        cmd = proc.cmdline()
        if "serve" not in cmd or not any("goat" in part for part in cmd):
            return None  # a stale record: the pid belongs to someone else now
        proc.terminate()
        if not _ended(proc, timeout_s):
            proc.kill()
            _ended(proc, 5)
    except psutil.NoSuchProcess:
        pid_stopped = None  # it was already gone: nothing was stopped
    else:
        pid_stopped = pid
    for p in list(_DETACHED):
        if p.pid == pid:
            p.poll()
            _DETACHED.remove(p)
    with contextlib.suppress(FileNotFoundError):
        if (read_state() or {}).get("pid") == pid:
            (config.paths().serve / "serve.json").unlink()
    return pid_stopped


def _error_message(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error", {})
        return f"HTTP {resp.status_code} {err.get('type', '')}: {err.get('message', resp.text[:300])}"
    except (ValueError, AttributeError):
        return f"HTTP {resp.status_code}: {resp.text[:300]}"


def load_model(root_url: str, model: str, timeout_s: float = 600.0) -> dict[str, Any]:
    """Ask the control plane to load `model` now; returns its /status instance record."""
    try:
        resp = httpx.post(f"{root_url}/admin/models/{model}/load", timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ServeClientError(f"loading {model!r} on {root_url}: {type(exc).__name__}: {exc}") from None
    if resp.status_code != 200:
        raise ServeClientError(f"loading {model!r} on {root_url}: {_error_message(resp)}")
    return resp.json()


@dataclass
class ChatProbe:
    """The outcome of one real chat completion against an endpoint."""

    ok: bool
    url: str
    model: str
    status: int | None = None
    latency_s: float | None = None
    reply: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_metadata(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}, "")}


def probe_chat(
    base_url: str, model: str, *, api_key: str | None = None, timeout_s: float = 120.0, max_tokens: int = 8
) -> ChatProbe:
    """POST {base_url}/chat/completions with a one-line prompt; ok when a choice comes back."""
    url = f"{base_url.rstrip('/')}/chat/completions"
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Reply with one word: ready"}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    t0 = time.monotonic()
    try:
        resp = httpx.post(url, json=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return ChatProbe(False, url, model, error=f"{type(exc).__name__}: {exc}")
    latency = time.monotonic() - t0
    if resp.status_code != 200:
        return ChatProbe(False, url, model, resp.status_code, latency, error=_error_message(resp))
    try:
        data = resp.json()
        message = data["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        return ChatProbe(
            False, url, model, resp.status_code, latency, error=f"not a chat completion: {resp.text[:200]}"
        )
    reply = (message.get("content") or "").strip() or str(message.get("tool_calls") or "")
    return ChatProbe(True, url, model, resp.status_code, latency, reply[:200], data.get("usage") or {})
