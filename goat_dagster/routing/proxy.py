"""The managed LiteLLM proxy: `litellm --config` as a detached process under `$GOAT_HOME/litellm`.

`ensure_proxy(cfg)` writes the config, then reuses the running proxy when its config hash is
unchanged and it answers `/health/readiness`, and otherwise (re)starts it and waits until ready.
State (`state.json`: pid, host, port, config hash), the config, the log and the master key live in
`config.paths().litellm`. A file lock makes concurrent callers (two Dagster runs, the CLI) agree.

The proxy's environment is this process's environment (provider keys stay there, never in the
config) plus `LITELLM_MASTER_KEY` and `LITELLM_LOCAL_MODEL_COST_MAP=True` (offline, LiteLLM would
otherwise retry fetching its cost map from the internet at every start).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from goat_dagster import config
from goat_dagster.routing.config import (
    MASTER_KEY_ENV,
    config_hash,
    litellm_executable,
    write_litellm_config,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4000


class ProxyError(RuntimeError):
    """The proxy could not be started or did not become ready; the message ends with its log tail."""


@dataclass(frozen=True)
class ProxyState:
    pid: int
    host: str
    port: int
    config_sha256: str
    started_at: str
    config_path: str
    log_path: str

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class ProxyHandle:
    """What `ensure_proxy` did and where the proxy is."""

    state: ProxyState
    action: str  # "reused" | "started" | "restarted"
    config_changed: bool

    @property
    def base_url(self) -> str:
        return self.state.base_url

    @property
    def openai_base_url(self) -> str:
        return self.state.base_url + "/v1"


def state_dir() -> Path:
    return config.paths().litellm


def config_path() -> Path:
    return state_dir() / "config.yaml"


def _state_file() -> Path:
    return state_dir() / "state.json"


def log_path() -> Path:
    return config.paths().logs / "litellm-proxy.log"


def master_key() -> str:
    """The proxy's master key: `LITELLM_MASTER_KEY` if set, else one generated once and kept in
    `$GOAT_HOME/litellm/master_key` (mode 0600). Host-side only: never given to a sandbox."""
    configured = config.settings().litellm_master_key
    if configured:
        return configured.get_secret_value()
    f = state_dir() / "master_key"
    if f.exists():
        return f.read_text().strip()
    f.parent.mkdir(parents=True, exist_ok=True)
    key = "sk-" + secrets.token_urlsafe(32)
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    state_dir().mkdir(parents=True, exist_ok=True)
    with open(state_dir() / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# A writer-preferring readers/writer lock between benchmark runs (readers: they call the proxy)
# and a proxy restart (the writer), on two lock files: a restart first closes the `gate`, so no new
# run starts against the old proxy, then waits for the running ones to release the `lease`.


@contextlib.contextmanager
def gateway_lease() -> Iterator[None]:
    """Held (shared) by a benchmark run while it calls the proxy, so a restart for a new config
    waits for it instead of cutting its calls. Runs never block each other; a run that starts
    while a restart is pending waits for the new proxy."""
    state_dir().mkdir(parents=True, exist_ok=True)
    with open(state_dir() / "lease.gate", "a") as gate, open(state_dir() / "lease", "a") as lease:
        fcntl.flock(gate, fcntl.LOCK_SH)
        try:
            fcntl.flock(lease, fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lease, fcntl.LOCK_UN)


@contextlib.contextmanager
def _exclusive_lease(log: Any = None, wait_s: float | None = None, poll_s: float = 1.0) -> Iterator[None]:
    wait_s = config.settings().proxy_restart_wait_s if wait_s is None else wait_s
    state_dir().mkdir(parents=True, exist_ok=True)
    with open(state_dir() / "lease.gate", "a") as gate, open(state_dir() / "lease", "a") as lease:
        fcntl.flock(gate, fcntl.LOCK_EX)  # readers hold the gate only for an instant
        try:
            started, next_note = time.monotonic(), 0.0
            while True:
                try:
                    fcntl.flock(lease, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    waited = time.monotonic() - started
                    if waited >= wait_s:
                        raise ProxyError(
                            "the LiteLLM proxy must restart for a new config, but benchmark runs still "
                            f"use it after {waited:.0f}s; run this again when they are done "
                            "(GOAT_PROXY_RESTART_WAIT_S sets the wait)"
                        ) from None
                    if log is not None and waited >= next_note:
                        log(
                            "waiting for running benchmarks to finish their calls before restarting "
                            f"the LiteLLM proxy with the new config ({waited:.0f}s so far)"
                        )
                        next_note += 60
                    time.sleep(poll_s)
            try:
                yield
            finally:
                fcntl.flock(lease, fcntl.LOCK_UN)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)


def read_state() -> ProxyState | None:
    try:
        return ProxyState(**json.loads(_state_file().read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (our own exited child not yet reaped) counts as dead
    with contextlib.suppress(FileNotFoundError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def is_ready(base_url: str, timeout_s: float = 2.0) -> bool:
    try:
        r = httpx.get(base_url.rstrip("/") + "/health/readiness", timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _stop(st: ProxyState, timeout_s: float = 15.0) -> None:
    if not _pid_alive(st.pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(st.pid, signal.SIGTERM)  # the proxy is its own session leader: take its workers too
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _pid_alive(st.pid):
        _reap(st.pid)
        time.sleep(0.1)
    if _pid_alive(st.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(st.pid, signal.SIGKILL)
    _reap(st.pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_proxy() -> bool:
    """Stop the managed proxy of this GOAT_HOME; True if one was running."""
    with _locked():
        st = read_state()
        if st is None:
            return False
        was = _pid_alive(st.pid)
        _stop(st)
        _state_file().unlink(missing_ok=True)
        return was


def _log_tail(n: int = 25) -> str:
    try:
        return "\n".join(log_path().read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


def proxy_environment() -> dict[str, str]:
    """The proxy's environment: ours (provider keys included) + master key + offline cost map."""
    p = config.export_environment()
    return {
        **os.environ,
        "GOAT_HOME": str(p.home),
        MASTER_KEY_ENV: master_key(),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "PYTHONUNBUFFERED": "1",
    }


def _start(path: Path, sha: str, host: str, port: int, timeout_s: float) -> ProxyState:
    if not _port_free(host, port):
        raise ProxyError(
            f"{host}:{port} is in use by another process (not the proxy of {config.paths().home}); "
            "stop it or give the proxy another port (GOAT_LITELLM_PORT)"
        )
    log = log_path()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        fh.write(f"\n==== {datetime.now(UTC).isoformat()} starting litellm on {host}:{port} ====\n".encode())
        fh.flush()
        proc = subprocess.Popen(
            [litellm_executable(), "--config", str(path), "--host", host, "--port", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=proxy_environment(),
            cwd=str(state_dir()),
            start_new_session=True,  # detached: survives the Dagster step / CLI that started it
        )
    st = ProxyState(
        pid=proc.pid,
        host=host,
        port=port,
        config_sha256=sha,
        started_at=datetime.now(UTC).isoformat(),
        config_path=str(path),
        log_path=str(log),
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ProxyError(f"litellm exited with code {proc.returncode} while starting:\n{_log_tail()}")
        if is_ready(st.base_url, timeout_s=1.0):
            _state_file().write_text(json.dumps(asdict(st), indent=2))
            return st
        time.sleep(0.2)
    _stop(st)
    raise ProxyError(f"litellm was not ready on {st.base_url} after {timeout_s:.0f}s:\n{_log_tail()}")


def ensure_proxy(
    cfg: dict[str, Any],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    timeout_s: float = 120.0,
    log: Any = None,
) -> ProxyHandle:
    """Make the managed proxy serve `cfg`: reuse it when up with the same config, else (re)start.
    A restart first waits for running benchmarks to release their `gateway_lease`."""
    sha = config_hash(cfg)

    def current() -> ProxyState | None:
        st = read_state()
        return st if st is not None and _pid_alive(st.pid) else None

    def serves_cfg(st: ProxyState) -> bool:
        return st.config_sha256 == sha and (st.host, st.port) == (host, port) and is_ready(st.base_url)

    with _locked():
        path = config_path()
        changed = write_litellm_config(cfg, path)
        st = current()
        if st is not None and serves_cfg(st):
            return ProxyHandle(st, "reused", changed)
        if st is None:
            _state_file().unlink(missing_ok=True)
            return ProxyHandle(_start(path, sha, host, port, timeout_s), "started", changed)
    # a running proxy serves another config: wait for running benchmarks (not holding the state
    # lock meanwhile, so `goat stop` and readers of the state are never stuck behind the wait)
    with _exclusive_lease(log), _locked():
        changed = write_litellm_config(cfg, path) or changed
        st = current()
        if st is not None and serves_cfg(st):  # another caller restarted it meanwhile
            return ProxyHandle(st, "reused", changed)
        if st is not None:
            _stop(st)
        _state_file().unlink(missing_ok=True)
        return ProxyHandle(_start(path, sha, host, port, timeout_s), "restarted", True)
