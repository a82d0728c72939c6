"""Langfuse on Modal, container side: the stores Langfuse needs and Langfuse itself, in one container.

Stdlib only: this module ships into the `goat-langfuse` image (Langfuse's own Alpine image with
Alpine's python3 added), which has none of goat's dependencies. `langfuse_app` builds the Modal app
around it; `langfuse_deploy` deploys it from the host.

Why these parts: goat sends traces with LiteLLM's `langfuse_otel` callback (OTLP to
`/api/public/otel`) and reads them back with the langfuse 5 SDK's observations v2 API. Both need a
current Langfuse server: OTLP ingestion exists from v3, and observations v2 answers only on a
Langfuse v4 server (on v3 it is a 404, "only available in a Langfuse v4 write mode"). So the app runs
Langfuse v4 (the published `langfuse/langfuse` and `langfuse/langfuse-worker` images, pinned by
tag), which needs PostgreSQL, ClickHouse (>= 25.12), Redis and S3-compatible blob storage besides
its web and worker processes. All of them run in this one container, bound to 127.0.0.1; only the
web port (3000) is exposed, through Modal's `web_server`.

The data of every store lives under one Modal Volume (`/data`): PostgreSQL's data directory,
ClickHouse's, Redis's append-only file and MinIO's buckets. `Stack.stop` (the app's `@modal.exit`
hook, on SIGTERM: scale-down, redeploy, `modal app stop`) stops Langfuse first, then each store
cleanly, and the app then commits the Volume, so a graceful stop loses nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# ---- what is deployed: names and pinned versions ------------------------------------------------

APP_NAME = "goat-langfuse"
CLASS_NAME = "LangfuseServer"
WEB_METHOD = "web"
SECRET_LANGFUSE_SERVER = "goat-langfuse-server"  # SALT, ENCRYPTION_KEY, NEXTAUTH_SECRET, admin password
VOLUME_LANGFUSE = "goat-langfuse-data"
DATA_DIR = "/data"

LANGFUSE_VERSION = "4.27.0"  # exact tags: the floating `3` tag once served a v4 build (langfuse#16923)
LANGFUSE_WEB_IMAGE = f"docker.io/langfuse/langfuse:{LANGFUSE_VERSION}"
LANGFUSE_WORKER_IMAGE = f"docker.io/langfuse/langfuse-worker:{LANGFUSE_VERSION}"
CLICKHOUSE_VERSION = "25.12.5.44"  # Langfuse v4 needs ClickHouse >= 25.12; 26.x breaks its queries
CRANE_VERSION = "v0.20.2"  # go-containerregistry's crane: copies the worker out of its image
POSTGRES_PACKAGE = "postgresql16"
WORKER_ROOT = "/opt/langfuse-worker"  # the worker image's /app, beside the web image's /app

WEB_PORT = 3000
WORKER_PORT = 3030
PG_PORT = 5432
CLICKHOUSE_HTTP_PORT = 8123
CLICKHOUSE_TCP_PORT = 9000
REDIS_PORT = 6379
MINIO_PORT = 9090
BUCKET = "langfuse"

# headless initialization: the org, project and API keys exist from the first start, no UI needed
INIT_ORG = "goat"
INIT_PROJECT = "goat"
ADMIN_EMAIL = "admin@goat.local"  # seed 000's login

# The secrets the server reads (keys of `goat-langfuse` / `goat-langfuse-server`), by Langfuse name.
SERVER_SECRET_KEYS = {
    "SALT": "LANGFUSE_SALT",
    "ENCRYPTION_KEY": "LANGFUSE_ENCRYPTION_KEY",
    "NEXTAUTH_SECRET": "LANGFUSE_NEXTAUTH_SECRET",
    "LANGFUSE_INIT_USER_PASSWORD": "LANGFUSE_INIT_USER_PASSWORD",
}
PROJECT_KEYS = {
    "LANGFUSE_INIT_PROJECT_PUBLIC_KEY": "LANGFUSE_PUBLIC_KEY",
    "LANGFUSE_INIT_PROJECT_SECRET_KEY": "LANGFUSE_SECRET_KEY",
}


class LangfuseStartError(RuntimeError):
    """The server cannot start: a secret value is missing or a process did not come up."""


def image_commands() -> list[str]:
    """Dockerfile commands on top of the web image: the stores, and the worker copied out of its
    own published image (Modal's builder has no multi-stage `COPY --from`)."""
    ch = f"clickhouse-common-static-{CLICKHOUSE_VERSION}"
    crane = f"https://github.com/google/go-containerregistry/releases/download/{CRANE_VERSION}"
    return [
        f"RUN apk add --no-cache {POSTGRES_PACKAGE} {POSTGRES_PACKAGE}-client redis minio ca-certificates",
        "RUN wget -qO- https://github.com/ClickHouse/ClickHouse/releases/download/"
        f"v{CLICKHOUSE_VERSION}-stable/{ch}-amd64.tgz | tar -xz -C /tmp "
        f"&& install -m 0755 /tmp/{ch}/usr/bin/clickhouse /usr/local/bin/clickhouse && rm -rf /tmp/{ch}",
        f"RUN wget -qO- {crane}/go-containerregistry_Linux_x86_64.tar.gz | tar -xz -C /usr/local/bin crane "
        f"&& mkdir -p {WORKER_ROOT} "
        f"&& crane export --platform linux/amd64 {LANGFUSE_WORKER_IMAGE} - | tar -x -C {WORKER_ROOT} app "
        "&& rm /usr/local/bin/crane",
    ]


# ---- the environment Langfuse runs with ---------------------------------------------------------


def store_password(salt: str) -> str:
    """The password of the in-container stores (loopback only), derived from SALT so it is stable
    across restarts without another secret."""
    return hmac.new(salt.encode(), b"goat-langfuse-stores", hashlib.sha256).hexdigest()[:32]


def server_env(secrets: Mapping[str, str], public_url: str) -> dict[str, str]:
    """Langfuse's environment (web and worker) from the values of the two secrets and the public URL.
    Raises `LangfuseStartError` naming a missing key and the secret that should hold it."""
    missing = [
        f"{ours} ({SECRET_LANGFUSE_SERVER})" for ours in SERVER_SECRET_KEYS.values() if not secrets.get(ours)
    ] + [f"{ours} (goat-langfuse)" for ours in PROJECT_KEYS.values() if not secrets.get(ours)]
    if missing:
        raise LangfuseStartError(
            f"missing: {', '.join(missing)}; run `goat setup` with GOAT_LANGFUSE_ON_MODAL=1"
        )
    pw = store_password(secrets["LANGFUSE_SALT"])
    s3 = {
        "BUCKET": BUCKET,
        "REGION": "auto",
        "ACCESS_KEY_ID": "langfuse",
        "SECRET_ACCESS_KEY": pw,
        "ENDPOINT": f"http://127.0.0.1:{MINIO_PORT}",
        "FORCE_PATH_STYLE": "true",
    }
    env = {
        "DATABASE_URL": f"postgresql://postgres:{pw}@127.0.0.1:{PG_PORT}/postgres",
        "CLICKHOUSE_URL": f"http://127.0.0.1:{CLICKHOUSE_HTTP_PORT}",
        "CLICKHOUSE_MIGRATION_URL": f"clickhouse://127.0.0.1:{CLICKHOUSE_TCP_PORT}",
        "CLICKHOUSE_USER": "langfuse",
        "CLICKHOUSE_PASSWORD": pw,
        "CLICKHOUSE_CLUSTER_ENABLED": "false",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(REDIS_PORT),
        "REDIS_AUTH": pw,
        **{f"LANGFUSE_S3_EVENT_UPLOAD_{k}": v for k, v in s3.items()},
        "LANGFUSE_S3_EVENT_UPLOAD_PREFIX": "events/",
        **{f"LANGFUSE_S3_MEDIA_UPLOAD_{k}": v for k, v in s3.items()},
        "LANGFUSE_S3_MEDIA_UPLOAD_PREFIX": "media/",
        "NEXTAUTH_URL": public_url,
        "TELEMETRY_ENABLED": "false",
        "AUTH_DISABLE_SIGNUP": "true",  # the URL is public: only the admin goat set up signs in
        "LANGFUSE_INIT_ORG_ID": INIT_ORG,
        "LANGFUSE_INIT_ORG_NAME": INIT_ORG,
        "LANGFUSE_INIT_PROJECT_ID": INIT_PROJECT,
        "LANGFUSE_INIT_PROJECT_NAME": INIT_PROJECT,
        "LANGFUSE_INIT_USER_EMAIL": ADMIN_EMAIL,
        "LANGFUSE_INIT_USER_NAME": "goat admin",
    }
    env.update({theirs: secrets[ours] for theirs, ours in SERVER_SECRET_KEYS.items()})
    env.update({theirs: secrets[ours] for theirs, ours in PROJECT_KEYS.items()})
    return env


# ---- the processes --------------------------------------------------------------------------


@dataclass
class Proc:
    """One process of the stack: its command, where it runs, and the port that says it is up."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    user: str | None = None  # PostgreSQL refuses to run as root
    stop_signal: int = signal.SIGTERM
    group_stop: bool = False  # signal its whole process group (a shell entrypoint and what it started)
    popen: subprocess.Popen | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Layout:
    """Where the stores keep their data (under the Volume) and where the binaries are."""

    data: Path = Path(DATA_DIR)
    pg_bin: Path = Path(f"/usr/libexec/{POSTGRES_PACKAGE}")
    pg_user: str | None = "postgres"
    web_root: str = "/app"
    worker_root: str = f"{WORKER_ROOT}/app"

    @property
    def pg(self) -> Path:
        return self.data / "pg"

    @property
    def clickhouse(self) -> Path:
        return self.data / "clickhouse"

    @property
    def redis(self) -> Path:
        return self.data / "redis"

    @property
    def minio(self) -> Path:
        return self.data / "minio"


def postgres_init(layout: Layout, password: str) -> list[str] | None:
    """The `initdb` command for a new data directory (None when it is initialised already); writes
    the superuser's password file it reads."""
    if (layout.pg / "PG_VERSION").exists():
        return None
    layout.pg.mkdir(parents=True, exist_ok=True)
    pwfile = layout.data / ".pgpass-init"
    pwfile.write_text(password + "\n")
    for p in (layout.pg, pwfile):
        _own(p, layout.pg_user)
    os.chmod(layout.pg, 0o700)
    return [
        str(layout.pg_bin / "initdb"),
        "-D",
        str(layout.pg),
        "-U",
        "postgres",
        "--auth=scram-sha-256",
        f"--pwfile={pwfile}",
        "-E",
        "UTF8",
    ]


def postgres_proc(layout: Layout, port: int = PG_PORT) -> Proc:
    argv = [str(layout.pg_bin / "postgres"), "-D", str(layout.pg), "-p", str(port)]
    argv += ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=/tmp"]
    # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit
    return Proc("postgres", argv, port, user=layout.pg_user, stop_signal=signal.SIGINT)


def clickhouse_config(layout: Layout, password: str, config_file: Path) -> str:
    """A minimal ClickHouse server config: data under the Volume, loopback only, one user (the file
    is its own users config too)."""
    return f"""<clickhouse>
  <users_config>{config_file}</users_config>
  <path>{layout.clickhouse}/</path>
  <tmp_path>{layout.clickhouse}/tmp/</tmp_path>
  <user_files_path>{layout.clickhouse}/user_files/</user_files_path>
  <format_schema_path>{layout.clickhouse}/format_schemas/</format_schema_path>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{CLICKHOUSE_HTTP_PORT}</http_port>
  <tcp_port>{CLICKHOUSE_TCP_PORT}</tcp_port>
  <logger><level>warning</level><console>1</console></logger>
  <mark_cache_size>268435456</mark_cache_size>
  <users>
    <langfuse>
      <password_sha256_hex>{hashlib.sha256(password.encode()).hexdigest()}</password_sha256_hex>
      <networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
      <access_management>1</access_management>
    </langfuse>
  </users>
  <profiles><default/></profiles>
  <quotas><default/></quotas>
</clickhouse>
"""


def clickhouse_proc(config_file: Path) -> Proc:
    return Proc("clickhouse", ["clickhouse", "server", f"--config-file={config_file}"], CLICKHOUSE_HTTP_PORT)


def redis_proc(layout: Layout, password: str) -> Proc:
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(REDIS_PORT), "--dir", str(layout.redis)]
    argv += ["--appendonly", "yes", "--maxmemory-policy", "noeviction", "--requirepass", password]
    return Proc("redis", argv, REDIS_PORT)  # SIGTERM: Redis writes its files, then exits


def minio_proc(layout: Layout, password: str) -> Proc:
    (layout.minio / BUCKET).mkdir(parents=True, exist_ok=True)  # the bucket, as Langfuse's compose does
    argv = ["minio", "server", str(layout.minio), "--address", f"127.0.0.1:{MINIO_PORT}"]
    env = {"MINIO_ROOT_USER": "langfuse", "MINIO_ROOT_PASSWORD": password, "MINIO_BROWSER": "off"}
    return Proc("minio", argv, MINIO_PORT, env=env)


def langfuse_procs(layout: Layout, env: dict[str, str]) -> list[Proc]:
    """The worker and the web server, each through its image's own entrypoint (the web one applies
    the PostgreSQL and ClickHouse migrations before it starts the server)."""
    worker = Proc(
        "langfuse-worker",
        ["sh", "./worker/entrypoint.sh", "node", "worker/dist/index.js"],
        WORKER_PORT,
        env={**env, "PORT": str(WORKER_PORT), "HOSTNAME": "127.0.0.1"},
        cwd=layout.worker_root,
        group_stop=True,
    )
    web = Proc(
        "langfuse-web",
        ["sh", "./web/entrypoint.sh", "node", "./web/server.js", "--keepAliveTimeout", "110000"],
        WEB_PORT,
        env={**env, "PORT": str(WEB_PORT), "HOSTNAME": "0.0.0.0"},
        cwd=layout.web_root,
        group_stop=True,
    )
    return [worker, web]


def _own(path: Path, user: str | None) -> None:
    if user and os.geteuid() == 0:
        shutil.chown(path, user, user)


# ---- running them ---------------------------------------------------------------------------


def _ignore(_sig: int, _frame: object) -> None:
    pass


def signals_default_in_children() -> None:
    """A signal this process ignores is ignored by every process it starts (exec keeps SIG_IGN, as
    for anything started in the background), and a server that ignores SIGTERM would stop only when
    killed at the deadline, without flushing. An ignored SIGTERM or SIGINT becomes a handler that
    does nothing: the same for this process, the default for its children (exec resets handlers)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) == signal.SIG_IGN:
            with contextlib.suppress(ValueError):  # not the main thread: left as it is
                signal.signal(sig, _ignore)


def wait_port(port: int, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise LangfuseStartError(f"the process for port {port} exited before it listened")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise LangfuseStartError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f}s")


class Stack:
    """Start the stores, then Langfuse; stop in reverse. Output goes to the container's log."""

    def __init__(self, layout: Layout, secrets: Mapping[str, str], public_url: str) -> None:
        self.layout = layout
        self.env = server_env(secrets, public_url)
        self.password = store_password(secrets["LANGFUSE_SALT"])
        self.procs: list[Proc] = []

    def spawn(self, proc: Proc, timeout_s: float) -> None:
        print(f"[goat-langfuse] starting {proc.name}", flush=True)
        signals_default_in_children()
        proc.popen = subprocess.Popen(
            proc.argv,
            env={**os.environ, **proc.env},
            cwd=proc.cwd,
            user=proc.user if os.geteuid() == 0 else None,
            stdout=sys.stdout,
            stderr=sys.stderr,
            start_new_session=True,
        )
        self.procs.append(proc)
        popen = proc.popen
        wait_port(proc.port, timeout_s, alive=lambda: popen.poll() is None)

    def start_postgres(self, port: int = PG_PORT, timeout_s: float = 120) -> None:
        """PostgreSQL on the Volume: `initdb` the first time (superuser password = the stores'),
        then the server, bound to 127.0.0.1."""
        lay = self.layout
        init = postgres_init(lay, self.password)
        if init is not None:
            subprocess.run(init, check=True, user=lay.pg_user if os.geteuid() == 0 else None)
            (lay.data / ".pgpass-init").unlink()
        self.spawn(postgres_proc(lay, port), timeout_s)

    def start_stores(self, timeout_s: float = 120) -> None:
        lay = self.layout
        for d in (lay.data, lay.clickhouse, lay.redis, lay.minio):
            d.mkdir(parents=True, exist_ok=True)
        self.start_postgres(timeout_s=timeout_s)
        config = lay.data / "clickhouse-config.xml"
        config.write_text(clickhouse_config(lay, self.password, config))
        self.spawn(clickhouse_proc(config), timeout_s)
        self.spawn(redis_proc(lay, self.password), timeout_s)
        self.spawn(minio_proc(lay, self.password), timeout_s)

    def start_langfuse(self, timeout_s: float = 600) -> None:
        for proc in langfuse_procs(self.layout, self.env):
            self.spawn(proc, timeout_s)

    def stop(self, total_s: float = 25) -> None:
        """Reverse order: Langfuse first (no writes in flight), then each store cleanly; within
        `total_s` altogether (Modal gives an exit hook a short grace period after SIGTERM), after
        which what is left is killed."""
        deadline = time.monotonic() + total_s
        for proc in reversed(self.procs):
            p = proc.popen
            if p is None or p.poll() is not None:
                continue
            print(f"[goat-langfuse] stopping {proc.name}", flush=True)
            if proc.group_stop:
                os.killpg(p.pid, proc.stop_signal)
            else:
                p.send_signal(proc.stop_signal)
            try:
                p.wait(max(deadline - time.monotonic(), 1.0))
                if proc.group_stop and not group_gone(p.pid, deadline):
                    raise subprocess.TimeoutExpired(proc.argv, total_s)
            except subprocess.TimeoutExpired:
                print(f"[goat-langfuse] {proc.name} did not stop in time: killed", flush=True)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()


def group_gone(pgid: int, deadline: float, poll_s: float = 0.05) -> bool:
    """Whether every process of group `pgid` has exited by `deadline` (a shell entrypoint's leader
    may exit before the server it started: the server's writes are what must end)."""
    while group_running(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return True


def group_running(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs. A zombie does not count: it holds no file or
    port, and an orphan's waits for whoever reaps it (PID 1, or a subreaper that may never do so)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        state, _ppid, pgrp = stat[stat.rfind(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            return True
    return False
