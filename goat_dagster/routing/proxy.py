"""The LiteLLM proxy: where it runs (`ProxySettings`) and making sure it serves a config
(`ensure_proxy`; `modal_proxy.ensure_modal_proxy` deploys the one on Modal).

- `managed` (default): `litellm --config` as a detached process under `$GOAT_HOME/litellm`, on
  127.0.0.1:4000 (GOAT_LITELLM_HOST / GOAT_LITELLM_PORT). `ensure_proxy` writes the config (once,
  checked by LiteLLM when it changed: by `--validate_config` before a running proxy is restarted on
  it, by the start itself when none runs), reuses the running proxy when its config hash is unchanged
  and it answers `/health/readiness`, and otherwise (re)starts it and waits until ready. State
  (`state.json`: pid, host, port, config hash), the config and the master key live in
  `config.paths().litellm`, the log in `$GOAT_HOME/logs/litellm-proxy.log`; a file lock makes
  concurrent callers (two Dagster runs, the CLI) agree.
- `external`: a proxy somewhere else (e.g. deployed on Modal): GOAT_LITELLM_URL and its
  LITELLM_MASTER_KEY; chosen by GOAT_LITELLM_MODE=external or by setting GOAT_LITELLM_URL. Its
  config is deployed with it, so `ensure_proxy` writes ours and checks it is ready.

`prewarm()` (what `goat demo` calls once its instance is up) starts the managed proxy's interpreter
ahead of its config: LiteLLM's imports take ~6-9 s of its ~8-10 s start, and they then overlap with
the demo's first steps (partitions, the weights, `goat serve`). It is not a proxy yet — no port, no
config — until `ensure_proxy` has a proxy to start: then that process is handed the same command
line (`routing/proxy_main.py`) and is ready within a second; otherwise (a proxy is reused, or its
environment would differ) it is stopped.

The managed proxy's environment is this process's environment (provider keys stay there, never in
the config) plus `LITELLM_MASTER_KEY` and `LITELLM_LOCAL_MODEL_COST_MAP=True` (offline, LiteLLM
would otherwise retry fetching its cost map from the internet at every start).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from goat_dagster import config
from goat_dagster.routing.config import (
    MASTER_KEY_ENV,
    LiteLLMConfig,
    config_hash,
    config_path,
    litellm_executable,
    restore_config,
    write_config,
)
from goat_dagster.serving import daemon
from goat_dagster.serving.backend import Log, PrintLog

DEFAULT_HOST = config.GoatSettings.model_fields["litellm_host"].default
DEFAULT_PORT = config.GoatSettings.model_fields["litellm_port"].default
Mode = Literal["managed", "external"]


class ProxyError(RuntimeError):
    """The proxy cannot be used: not started, not ready, not configured (the message says which)."""


@dataclass(frozen=True)
class ProxySettings:
    """Where the proxy is: managed on host:port, or external at `url` with its `master_key`."""

    mode: Mode = "managed"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    url: str | None = None  # external proxy base URL (without /v1)
    master_key: str | None = None  # external proxy's master key (managed: `master_key()`)

    @classmethod
    def from_settings(cls) -> ProxySettings:
        s = config.settings()
        return cls(
            mode="external" if s.litellm_external else "managed",
            host=s.litellm_host,
            port=s.litellm_port,
            url=s.litellm_url,
            master_key=s.litellm_master_key.get_secret_value() if s.litellm_master_key else None,
        )

    def base_url(self) -> str:
        """The proxy's base URL (no /v1). Managed: the running proxy's, else the configured port."""
        if self.mode == "external":
            if not self.url:
                raise ProxyError("external LiteLLM proxy: set GOAT_LITELLM_URL")
            return self.url.rstrip("/").removesuffix("/v1")
        st = read_state()
        return st.base_url if st is not None else f"http://{self.host}:{self.port}"

    def admin_key(self) -> str:
        """The master key (host-side only: sandboxes get scoped keys, `gateway.sandbox_gateway`)."""
        if self.mode == "external":
            if not self.master_key:
                raise ProxyError(f"external LiteLLM proxy: set {MASTER_KEY_ENV}")
            return self.master_key
        return master_key()


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
class ProxyStatus:
    """What `ensure_proxy` did and where the proxy is."""

    mode: Mode
    action: str  # reused | started | restarted (managed); none (external)
    base_url: str
    ready: bool
    config_path: Path
    config_changed: bool
    pid: int | None = None


def state_dir() -> Path:
    return config.paths().litellm


def _state() -> daemon.StateFile:
    return daemon.StateFile(state_dir() / "state.json")


def log_path() -> Path:
    return config.paths().logs / "litellm-proxy.log"


def master_key() -> str:
    """The managed proxy's master key: `LITELLM_MASTER_KEY` if set, else one generated once and kept
    in `$GOAT_HOME/litellm/master_key` (mode 0600). Host-side only: never given to a sandbox."""
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


def read_state() -> ProxyState | None:
    data = _state().read()
    try:
        return ProxyState(**data) if data else None
    except TypeError:
        return None


def proxy_version(base_url: str, api_key: str | None = None, timeout_s: float = 5.0) -> str | None:
    """The LiteLLM version a proxy reports (its root URL or its `/v1`), or None when what answers
    there is not a LiteLLM proxy (or nothing does). LiteLLM 1.108 moved it from the public
    `/health/readiness` to `/health/readiness/details` (with a key); older proxies answer the first."""
    root = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    for path in ("/health/readiness/details", "/health/readiness"):
        try:
            r = httpx.get(root + path, headers=headers, timeout=timeout_s)
            version = r.json().get("litellm_version") if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            continue
        if version:
            return str(version)
    return None


def is_ready(base_url: str, timeout_s: float = 2.0) -> bool:
    try:
        r = httpx.get(base_url.rstrip("/") + "/health/readiness", timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


# ---- making sure it serves a config -----------------------------------------------------------


def ensure_proxy(
    cfg: LiteLLMConfig | dict[str, Any],
    settings: ProxySettings | None = None,
    *,
    timeout_s: float = 120.0,
    log: Log | None = None,
) -> ProxyStatus:
    """Make the proxy serve `cfg`: the one way goat brings a proxy up. The config is written to
    `routing.config.config_path()` (only when it changed, LiteLLM's check first). Managed: reuse
    the proxy when up with the same config, else (re)start it — a restart first waits for running
    benchmarks to release their `gateway_lease`. External: whether it is ready."""
    settings = settings or ProxySettings.from_settings()
    log = log or PrintLog()
    body = cfg.config if isinstance(cfg, LiteLLMConfig) else cfg
    if settings.mode == "external":
        changed = write_config(body, config_path())
        url = settings.base_url()
        ready = is_ready(url, timeout_s=10)
        return ProxyStatus("external", "none", url, ready, config_path(), changed)
    return _ensure_managed(body, settings.host, settings.port, timeout_s, log)


def _ensure_managed(cfg: dict[str, Any], host: str, port: int, timeout_s: float, log: Log) -> ProxyStatus:
    sha, path = config_hash(cfg), config_path()

    def current() -> ProxyState | None:
        st = read_state()
        return st if st is not None and daemon.pid_alive(st.pid) else None

    def serving(st: ProxyState | None) -> bool:
        return (
            st is not None
            and st.config_sha256 == sha
            and (st.host, st.port) == (host, port)
            and is_ready(st.base_url)
        )

    def status(st: ProxyState, action: str, changed: bool) -> ProxyStatus:
        return ProxyStatus("managed", action, st.base_url, True, path, changed, st.pid)

    with daemon.locked(state_dir() / "lock"):
        st = current()
        if st is None:
            _state().remove()
            started, changed = _start_on_new_config(cfg, path, sha, host, port, timeout_s)
            return status(started, "started", changed)
        changed = write_config(cfg, path)
        if serving(st):
            return status(st, "reused", changed)
    # a running proxy serves another config: wait for running benchmarks (not holding the state
    # lock meanwhile, so `goat stop` and readers of the state are never stuck behind the wait)
    with _exclusive_lease(log), daemon.locked(state_dir() / "lock"):
        changed = write_config(cfg, path) or changed
        st = current()
        if serving(st):  # another caller restarted it meanwhile
            return status(st, "reused", changed)  # type: ignore[arg-type]
        if st is not None:
            daemon.stop_group(st.pid)
        _state().remove()
        return status(_start(path, sha, host, port, timeout_s), "restarted", True)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def proxy_environment() -> dict[str, str]:
    """The proxy's environment: ours (provider keys included) + master key + offline cost map."""
    p = config.export_environment()
    return {
        **os.environ,
        config.GoatSettings.env_name("home"): str(p.home),
        MASTER_KEY_ENV: master_key(),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "PYTHONUNBUFFERED": "1",
    }


def _start_on_new_config(
    cfg: dict[str, Any], path: Path, sha: str, host: str, port: int, timeout_s: float
) -> tuple[ProxyState, bool]:
    """No proxy runs: the proxy's own start is LiteLLM's check of a changed config (it loads the
    file as `litellm --validate_config` does, and is not ready when it cannot), so LiteLLM starts
    once instead of twice (~10 s of `goat demo` here). A config it does not come up with is taken
    back: the previous file is restored. Whether the file changed, and the proxy."""
    previous = path.read_text() if path.exists() else None
    changed = write_config(cfg, path, litellm_check=False)
    try:
        return _start(path, sha, host, port, timeout_s), changed
    except ProxyError:
        if changed:
            restore_config(path, previous)
        raise


def _start(path: Path, sha: str, host: str, port: int, timeout_s: float) -> ProxyState:
    if not _port_free(host, port):
        raise ProxyError(
            f"{host}:{port} is in use by another process (not the proxy of {config.paths().home}); "
            "stop it or give the proxy another port (GOAT_LITELLM_PORT)"
        )
    log = log_path()
    args = ["--config", str(path), "--host", host, "--port", str(port)]
    env = proxy_environment()
    proc = _take_warm(args, env) or daemon.spawn(
        [litellm_executable(), *args],
        log_path=log,
        banner=f"starting litellm on {host}:{port}",
        env=env,
        cwd=state_dir(),
    )
    st = ProxyState(proc.pid, host, port, sha, datetime.now(UTC).isoformat(), str(path), str(log))
    daemon.wait_until_ready(
        proc,
        lambda: True if is_ready(st.base_url, timeout_s=1.0) else None,
        what="litellm",
        log_path=log,
        timeout_s=timeout_s,
        poll_s=0.2,
        error=ProxyError,
    )
    _state().write(asdict(st))
    return st


@dataclass
class _Warm:
    proc: subprocess.Popen
    handoff: int  # the write end of the pipe the process waits on
    env: dict[str, str]
    cwd: Path


_warm: _Warm | None = None  # this process's warm interpreter (`prewarm`), until taken or let go


def prewarm() -> bool:
    """Start the managed proxy's interpreter ahead of its config (module docstring), when a start
    is coming: managed mode and no proxy of this GOAT_HOME running. Whether one was started."""
    global _warm
    settings = ProxySettings.from_settings()
    st = read_state()
    if _warm is not None or settings.mode != "managed" or (st is not None and daemon.pid_alive(st.pid)):
        return False
    read_end, write_end = os.pipe()
    env, cwd = proxy_environment(), state_dir()
    cwd.mkdir(parents=True, exist_ok=True)
    try:
        proc = daemon.spawn(
            [sys.executable, "-m", "goat_dagster.routing.proxy_main", str(read_end)],
            log_path=log_path(),
            banner="litellm: importing ahead of its config (goat's prewarm)",
            env=env,
            cwd=cwd,
            pass_fds=(read_end,),
        )
    finally:
        os.close(read_end)
    _warm = _Warm(proc, write_end, env, cwd)
    return True


def _take_warm(args: list[str], env: dict[str, str]) -> subprocess.Popen | None:
    """The warm interpreter made the proxy (`args` handed over), when it is alive and would run as
    a fresh start would (same environment and directory); else None, and it is stopped."""
    global _warm
    warm, _warm = _warm, None
    if warm is None:
        return None
    try:
        if warm.proc.poll() is None and warm.env == env and warm.cwd == state_dir():
            os.write(warm.handoff, (json.dumps({"args": args}) + "\n").encode())
            return warm.proc
    except OSError:
        pass
    finally:
        os.close(warm.handoff)
    daemon.stop_group(warm.proc.pid)
    return None


def release_warm() -> None:
    """Stop the warm interpreter if nothing took it."""
    global _warm
    warm, _warm = _warm, None
    if warm is not None:
        os.close(warm.handoff)
        daemon.stop_group(warm.proc.pid)


def stop_proxy() -> bool:
    """Stop the managed proxy of this GOAT_HOME; True if one was running."""
    with daemon.locked(state_dir() / "lock"):
        st = read_state()
        if st is None:
            return False
        was = daemon.stop_group(st.pid)
        _state().remove()
        return was


# ---- benchmarks vs. restarts ------------------------------------------------------------------
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
def _exclusive_lease(
    log: Log | None = None, wait_s: float | None = None, poll_s: float = 1.0
) -> Iterator[None]:
    wait_s = config.settings().proxy_restart_wait_s if wait_s is None else wait_s
    state_dir().mkdir(parents=True, exist_ok=True)
    notes = {"next": 0.0}

    def waiting(state: RetryCallState) -> None:  # a line now and then, not every poll
        if log is not None and state.seconds_since_start >= notes["next"]:
            log.info(
                "waiting for running benchmarks to finish their calls before restarting the LiteLLM "
                f"proxy with the new config ({state.seconds_since_start:.0f}s so far)"
            )
            notes["next"] += 60

    with open(state_dir() / "lease.gate", "a") as gate, open(state_dir() / "lease", "a") as lease:
        fcntl.flock(gate, fcntl.LOCK_EX)  # readers hold the gate only for an instant
        try:
            try:
                Retrying(
                    stop=stop_after_delay(wait_s),
                    wait=wait_fixed(poll_s),
                    retry=retry_if_exception_type(BlockingIOError),
                    before_sleep=waiting,
                    reraise=True,
                )(fcntl.flock, lease, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ProxyError(
                    "the LiteLLM proxy must restart for a new config, but benchmark runs still use it "
                    f"after {wait_s:.0f}s; run this again when they are done "
                    "(GOAT_PROXY_RESTART_WAIT_S sets the wait)"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(lease, fcntl.LOCK_UN)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
