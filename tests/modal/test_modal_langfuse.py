"""Langfuse on Modal (`goat-langfuse`), everything of it that runs offline.

Modal's cloud and Docker Hub are unreachable here, so the app is built for real and inspected
offline (see conftest), deploys go to `FakeCloud`, and the Langfuse server is a loopback stand-in
answering `/api/public/health` as Langfuse's docs specify it (spec-derived: 200
`{"status": "OK", "version": ...}`, 503 when `failIfDatabaseUnavailable=true` and the database is
down). What does run for real: the start script's PostgreSQL part (initdb, the server on a data
directory, a clean stop and a restart on the same directory) with pgserver's PostgreSQL 16 binaries,
`goat setup` through the installed `goat` entry point, and the LiteLLM config builder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pgserver
import psycopg2
import pytest
from dotenv import dotenv_values
from modal._utils.async_utils import synchronizer

from goat_dagster import doctor
from goat_dagster.registry import load_registry
from goat_dagster.routing.config import build_config
from goat_dagster.serving.modal import langfuse_app, langfuse_deploy
from goat_dagster.serving.modal.langfuse_server import (
    CLICKHOUSE_VERSION,
    LANGFUSE_WEB_IMAGE,
    LANGFUSE_WORKER_IMAGE,
    LangfuseStartError,
    Layout,
    Proc,
    Stack,
    clickhouse_config,
    langfuse_procs,
    minio_proc,
    redis_proc,
    server_env,
    store_password,
)
from goat_dagster.serving.modal.setup import apply_plan, build_plan
from tests.conftest import PROJECT, send_json
from tests.modal.conftest import _cells

REGISTRY = load_registry(PROJECT / "models.yaml")
GOAT = str(Path(sys.executable).with_name("goat"))

SECRETS = {  # what the two secrets hold in the container (values as goat setup generates them)
    "LANGFUSE_PUBLIC_KEY": "pk-lf-11111111-2222-3333-4444-555555555555",
    "LANGFUSE_SECRET_KEY": "sk-lf-SECRET-66666666-7777-8888-9999-000000000000",
    "LANGFUSE_SALT": "salt-SECRET-abcdefghijklmnopqrstuvwxyz",
    "LANGFUSE_ENCRYPTION_KEY": "e" * 64,
    "LANGFUSE_NEXTAUTH_SECRET": "nextauth-SECRET-0123456789",
    "LANGFUSE_INIT_USER_PASSWORD": "admin-SECRET-pw",
}
URL = "https://ws-goat--goat-langfuse-langfuseserver-web.modal.run"


# ---- the app -----------------------------------------------------------------------------------


def _definition(cls: Any) -> dict[str, Any]:
    f = synchronizer._translate_in(cls)._class_service_function
    return {"cells": _cells(f._load), "info": synchronizer._translate_out(f).info()}


def test_app_spec(monkeypatch, layers):
    for k, v in SECRETS.items():  # secrets present on the deploying machine must not reach the image
        monkeypatch.setenv(k, v)
    app, cls = langfuse_app.build_langfuse_app()
    assert app.name == "goat-langfuse"
    d = _definition(cls)
    cells, info = d["cells"], d["info"]
    assert cells["min_containers"] == 1 and cells["max_containers"] == 1  # one PostgreSQL per Volume
    assert cells["startup_timeout"] == langfuse_app.STARTUP_TIMEOUT_S
    assert info.cpu == 2.0 and info.memory_mib == 4096
    assert {p: v.name for p, v in info.volumes.items()} == {"/data": "goat-langfuse-data"}
    assert list(info.secrets) == [
        "modal.Secret.from_name('goat-langfuse')",
        "modal.Secret.from_name('goat-langfuse-server')",
    ]
    assert info.concurrency_info.max_inputs == langfuse_app.MAX_INPUTS
    web = cells["method_definitions"]["web"].webhook_config
    assert web.web_server_port == 3000 and web.web_server_startup_timeout == langfuse_app.STARTUP_TIMEOUT_S
    assert set(cells["method_definitions"]) == {"web"}

    cmds = layers(cells["image"])
    text = "\n".join(cmds)
    # published images, pinned to an exact version (the floating `3` tag once served a v4 build)
    assert cmds[0] == f"FROM {LANGFUSE_WEB_IMAGE}"
    for ref in (LANGFUSE_WEB_IMAGE, LANGFUSE_WORKER_IMAGE):
        assert re.fullmatch(r"docker\.io/langfuse/langfuse(-worker)?:\d+\.\d+\.\d+", ref), ref
    assert f"crane export --platform linux/amd64 {LANGFUSE_WORKER_IMAGE} -" in text
    assert f"v{CLICKHOUSE_VERSION}-stable/clickhouse-common-static-{CLICKHOUSE_VERSION}-amd64.tgz" in text
    assert re.fullmatch(r"25\.12\.\d+\.\d+", CLICKHOUSE_VERSION)
    assert "apk add --no-cache python3" in text and "postgresql16" in text and "redis" in text
    # nothing secret is baked in: no value, no ENV of a key
    for v in SECRETS.values():
        assert v not in text
    assert not [c for c in cmds if c.startswith("ENV ") and "LANGFUSE" in c]
    assert app._local_state.tags["goat-spec"] == langfuse_app.spec_digest()


def test_container_reimport_builds_the_same_class(layers):
    """Modal imports the module again in the container: the class it finds there must be the one deployed."""
    mod_name = "goat_dagster.serving.modal.langfuse_app"
    saved = sys.modules.pop(mod_name)
    try:
        import importlib

        again = importlib.import_module(mod_name)
        a, b = _definition(saved.LangfuseServer), _definition(again.LangfuseServer)
        assert layers(a["cells"]["image"]) == layers(b["cells"]["image"])
        assert a["info"].secrets == b["info"].secrets and list(a["info"].volumes) == list(b["info"].volumes)
        assert type(again.LangfuseServer).__name__ == "Cls" and again.app.name == saved.app.name
    finally:
        sys.modules[mod_name] = saved


# ---- what the start script runs -------------------------------------------------------------------


def test_server_env_from_the_secrets():
    env = server_env(SECRETS, URL)
    pw = store_password(SECRETS["LANGFUSE_SALT"])
    assert pw != SECRETS["LANGFUSE_SALT"] and len(pw) == 32 and pw == store_password(SECRETS["LANGFUSE_SALT"])
    assert env["DATABASE_URL"] == f"postgresql://postgres:{pw}@127.0.0.1:5432/postgres"
    assert env["CLICKHOUSE_URL"] == "http://127.0.0.1:8123"
    assert env["CLICKHOUSE_MIGRATION_URL"] == "clickhouse://127.0.0.1:9000"
    assert env["REDIS_HOST"] == "127.0.0.1" and env["REDIS_AUTH"] == pw
    assert env["LANGFUSE_S3_EVENT_UPLOAD_ENDPOINT"] == "http://127.0.0.1:9090"
    assert env["LANGFUSE_S3_EVENT_UPLOAD_BUCKET"] == "langfuse"
    assert env["LANGFUSE_S3_EVENT_UPLOAD_FORCE_PATH_STYLE"] == "true"
    # Langfuse's own names for goat's secret values
    assert env["SALT"] == SECRETS["LANGFUSE_SALT"]
    assert env["ENCRYPTION_KEY"] == SECRETS["LANGFUSE_ENCRYPTION_KEY"]
    assert env["NEXTAUTH_SECRET"] == SECRETS["LANGFUSE_NEXTAUTH_SECRET"]
    assert env["NEXTAUTH_URL"] == URL
    # headless initialization: the project and its keys are the ones goat uses
    assert env["LANGFUSE_INIT_ORG_ID"] and env["LANGFUSE_INIT_PROJECT_ID"]
    assert env["LANGFUSE_INIT_PROJECT_PUBLIC_KEY"] == SECRETS["LANGFUSE_PUBLIC_KEY"]
    assert env["LANGFUSE_INIT_PROJECT_SECRET_KEY"] == SECRETS["LANGFUSE_SECRET_KEY"]
    assert env["LANGFUSE_INIT_USER_EMAIL"] == "admin@goat.local"
    assert env["LANGFUSE_INIT_USER_PASSWORD"] == SECRETS["LANGFUSE_INIT_USER_PASSWORD"]
    assert env["AUTH_DISABLE_SIGNUP"] == "true" and env["TELEMETRY_ENABLED"] == "false"

    with pytest.raises(LangfuseStartError) as err:
        server_env(
            {k: v for k, v in SECRETS.items() if k not in ("LANGFUSE_SALT", "LANGFUSE_SECRET_KEY")}, URL
        )
    msg = str(err.value)
    assert "LANGFUSE_SALT (goat-langfuse-server)" in msg and "LANGFUSE_SECRET_KEY (goat-langfuse)" in msg
    assert all(v not in msg for v in SECRETS.values())


def test_process_commands(tmp_path):
    lay = Layout(data=tmp_path / "data")
    pw = store_password(SECRETS["LANGFUSE_SALT"])
    worker, web = langfuse_procs(lay, server_env(SECRETS, URL))
    assert web.argv[:2] == ["sh", "./web/entrypoint.sh"] and web.cwd == "/app"  # migrations, then server
    assert web.argv[2:4] == ["node", "./web/server.js"] and web.env["PORT"] == "3000"
    assert web.env["HOSTNAME"] == "0.0.0.0"
    assert worker.argv[:2] == ["sh", "./worker/entrypoint.sh"] and worker.cwd == "/opt/langfuse-worker/app"
    assert worker.env["PORT"] == "3030" and worker.env["HOSTNAME"] == "127.0.0.1"
    r = redis_proc(lay, pw)
    assert r.argv[r.argv.index("--bind") + 1] == "127.0.0.1"
    assert r.argv[r.argv.index("--dir") + 1] == str(lay.redis) and "--appendonly" in r.argv
    m = minio_proc(lay, pw)
    assert m.argv[m.argv.index("--address") + 1] == "127.0.0.1:9090" and m.argv[2] == str(lay.minio)
    assert (lay.minio / "langfuse").is_dir() and m.env["MINIO_ROOT_PASSWORD"] == pw

    config_file = tmp_path / "ch.xml"
    xml = clickhouse_config(lay, pw, config_file)
    root = ET.fromstring(xml)
    assert root.findtext("path") == f"{lay.clickhouse}/" and root.findtext("listen_host") == "127.0.0.1"
    assert root.findtext("users_config") == str(config_file)
    user = root.find("users/langfuse")
    assert user is not None and user.findtext("networks/ip") == "127.0.0.1"
    assert pw not in xml  # only its sha256


@pytest.fixture
def pg_layout() -> Iterator[Layout]:
    """A data directory PostgreSQL's own user can reach (pytest's tmp dirs are 0700 root)."""
    base = Path(tempfile.mkdtemp(prefix="goat-langfuse-pg-"))
    base.chmod(0o755)
    user = "pgserver" if os.geteuid() == 0 else None  # the system user pgserver runs PostgreSQL as
    yield Layout(
        data=base / "data", pg_bin=Path(pgserver.__file__).parent / "pginstall" / "bin", pg_user=user
    )
    shutil.rmtree(base, ignore_errors=True)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.integration
def test_postgres_on_the_data_dir_survives_a_stop(pg_layout):
    """The start script's PostgreSQL part, for real: initdb on the (Volume's) data directory with the
    stores' password, the server on 127.0.0.1 with password auth, a fast stop as the exit hook does,
    and a restart on the same directory that finds the data."""
    pg_layout.data.mkdir()
    port = _free_port()
    pw = store_password(SECRETS["LANGFUSE_SALT"])
    stack = Stack(pg_layout, SECRETS, URL)
    stack.start_postgres(port=port, timeout_s=60)
    try:
        assert (pg_layout.pg / "PG_VERSION").read_text().strip() == "16"
        assert not (pg_layout.data / ".pgpass-init").exists()  # the password file is gone
        assert stat.S_IMODE(pg_layout.pg.stat().st_mode) == 0o700
        with pytest.raises(psycopg2.OperationalError):  # no password, no entry
            psycopg2.connect(
                host="127.0.0.1", port=port, user="postgres", password="wrong", dbname="postgres"
            )
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", password=pw, dbname="postgres")
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE traces_seen (id text)")
            cur.execute("INSERT INTO traces_seen VALUES ('t-1')")
        conn.close()
    finally:
        stack.stop()
    state = subprocess.run(
        [str(pg_layout.pg_bin / "pg_controldata"), str(pg_layout.pg)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Database cluster state:               shut down" in state  # clean, nothing to recover

    again = Stack(pg_layout, SECRETS, URL)
    again.start_postgres(port=port, timeout_s=60)  # no initdb this time
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", password=pw, dbname="postgres")
        with conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM traces_seen")
            assert cur.fetchall() == [("t-1",)]
        conn.close()
    finally:
        again.stop()


def test_stop_reaches_what_an_entrypoint_started(pg_layout):
    """Langfuse's processes run under their images' shell entrypoints: stopping one must reach the
    server the shell started (a real process tree here), newest first, and free its port."""
    stack = Stack(pg_layout, SECRETS, URL)
    ports = [_free_port(), _free_port()]
    for name, port in zip(("langfuse-worker", "langfuse-web"), ports, strict=True):
        server = f"{sys.executable} -m http.server {port} --bind 127.0.0.1"
        stack.spawn(Proc(name, ["sh", "-c", f"{server}; echo exited"], port, group_stop=True), timeout_s=30)
    started = [p.popen for p in stack.procs]
    t0 = time.monotonic()
    stack.stop(total_s=10)
    assert time.monotonic() - t0 < 9  # each stopped on its signal, not killed at the deadline
    assert all(p.poll() is not None for p in started) and stack.procs == []
    for port in ports:  # stop returns once the whole group is gone: the servers too
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_stop_does_not_wait_for_zombies_nobody_reaps(tmp_path):
    """Under a child subreaper that never reaps (what PID 1 of a container may be, and what the test
    process became in CI), the stopped servers stay zombies in their group: `stop` must see them
    gone at once, not wait for its deadline."""
    code = f"""
import ctypes, socket, sys, time
from pathlib import Path
assert ctypes.CDLL(None).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER; never reaps orphans
from goat_dagster.serving.modal.langfuse_server import Layout, Proc, Stack
layout = Layout(data=Path({str(tmp_path)!r}), pg_bin=Path("/nonexistent"), pg_user=None)
stack = Stack(layout, {SECRETS!r}, {URL!r})
for name, port in (("langfuse-worker", {_free_port()}), ("langfuse-web", {_free_port()})):
    server = f"{{sys.executable}} -m http.server {{port}} --bind 127.0.0.1"
    stack.spawn(Proc(name, ["sh", "-c", server + "; echo exited"], port, group_stop=True), timeout_s=30)
t0 = time.monotonic()
stack.stop(total_s=10)
print("STOP", time.monotonic() - t0)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    took = float(res.stdout.split("STOP")[-1])
    assert took < 5, f"stop took {took:.1f} s (waited for zombies)"


# ---- deploying it -------------------------------------------------------------------------------


def test_ensure_langfuse_deploys_finds_and_replaces(fake_cloud, tmp_path, monkeypatch):
    monkeypatch.setenv("GOAT_HOME", str(tmp_path / "goat"))
    fake_cloud.urls["goat-langfuse"] = URL + "/"
    said: list[str] = []
    assert langfuse_deploy.ensure_langfuse(fake_cloud, said.append) == URL
    assert [a.name for a in fake_cloud.deployed] == ["goat-langfuse"] and not fake_cloud.stopped
    record = langfuse_deploy.load_record()
    assert record["url"] == URL and record["spec_digest"] == langfuse_app.spec_digest()

    langfuse_deploy.ensure_langfuse(fake_cloud, said.append)  # current: nothing deployed again
    assert len(fake_cloud.deployed) == 1

    fake_cloud.tags["goat-langfuse"] = {"goat-spec": "an-older-spec"}
    langfuse_deploy.ensure_langfuse(fake_cloud, said.append)
    assert fake_cloud.stopped == ["goat-langfuse"] and len(fake_cloud.deployed) == 2  # stopped first
    assert any("stopping goat-langfuse" in line for line in said)


# ---- goat setup ------------------------------------------------------------------------------------

BASE_ENV = {
    "LITELLM_MASTER_KEY": "sk-master-SECRET-5e6f",
    "VLLM_API_KEY": "vllm-SECRET-9d8c7b6a",
    "GOAT_MODAL_ENVIRONMENT": "goat-test",
    "GOAT_LANGFUSE_ON_MODAL": "1",
}


def _env_file(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def test_setup_dry_run_shows_langfuse_and_writes_nothing(tmp_path):
    env_file = _env_file(tmp_path / ".env", BASE_ENV)
    before = env_file.read_bytes()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "LITELLM_", "LANGFUSE_", "GOAT_"))
    }
    env.update(
        HOME=str(tmp_path), MODAL_CONFIG_PATH=str(tmp_path / ".modal.toml"), GOAT_HOME=str(tmp_path / "g")
    )
    r = subprocess.run(
        [GOAT, "setup", "--dry-run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Langfuse on Modal (GOAT_LANGFUSE_ON_MODAL)" in out and LANGFUSE_WEB_IMAGE in out
    assert "goat-langfuse-server" in out and "goat-langfuse-data" in out
    assert re.search(r"LANGFUSE_PUBLIC_KEY\s+generated", out) and re.search(r"LANGFUSE_SALT\s+generated", out)
    assert "then LANGFUSE_HOST=<its URL>" in out
    assert not re.search(r"(pk|sk)-lf-[0-9a-f]{8}-", out)  # no generated value is shown
    assert env_file.read_bytes() == before  # a dry run writes nothing


class SetupCloud:
    """`goat setup`'s calls to Modal, answered as Modal would (Modal's cloud is unreachable here)."""

    def __init__(self, fake_cloud) -> None:
        self.fake = fake_cloud
        self.environment = fake_cloud.environment
        self.secrets: dict[str, dict[str, str]] = {}
        self.volumes: list[str] = []
        self.puts: list[tuple[str, dict[str, str]]] = []

    def put_secret(self, name: str, values: dict[str, str], *, exists: bool) -> None:
        self.puts.append((name, dict(values)))
        self.secrets[name] = {**self.secrets.get(name, {}), **values} if exists else dict(values)

    def create_volume(self, name: str) -> None:
        self.volumes.append(name)

    def __getattr__(self, name: str) -> Any:  # app_tags, deploy, cls_web_url, stop
        return getattr(self.fake, name)


def test_setup_generates_deploys_and_writes_the_url(tmp_path, fake_cloud, monkeypatch):
    monkeypatch.setenv("GOAT_HOME", str(tmp_path / "goat"))
    for k in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_HOST", "GOAT_LANGFUSE_ON_MODAL"):
        monkeypatch.delenv(k, raising=False)
    # .env.example's Langfuse Cloud URL is still in the .env: it must not reach the secret
    env_file = _env_file(tmp_path / ".env", {**BASE_ENV, "LANGFUSE_HOST": "https://cloud.langfuse.com"})
    state = {"environments": {"goat-test"}, "secrets": set(), "volumes": set()}
    off = _env_file(
        tmp_path / "off.env", {k: v for k, v in BASE_ENV.items() if k != "GOAT_LANGFUSE_ON_MODAL"}
    )
    plan = build_plan(off, state, registry=REGISTRY)
    assert not plan.langfuse and not plan.generated and "goat-langfuse-data" not in dict(plan.volumes)
    assert "goat-langfuse-server" not in {s.name for s in plan.secrets}
    plan = build_plan(env_file, state, registry=REGISTRY)
    assert plan.langfuse and set(plan.generated) == set(SECRETS)
    assert "goat-langfuse-data" in dict(plan.volumes)
    cloud, echoed = SetupCloud(fake_cloud), []
    fake_cloud.urls["goat-langfuse"] = URL
    apply_plan(plan, cloud, echoed.append)

    written = dotenv_values(env_file)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert written["LITELLM_MASTER_KEY"] == BASE_ENV["LITELLM_MASTER_KEY"]  # what was there is kept
    assert written["LANGFUSE_HOST"] == URL
    assert re.fullmatch(r"pk-lf-[0-9a-f-]{36}", written["LANGFUSE_PUBLIC_KEY"])
    assert re.fullmatch(r"[0-9a-f]{64}", written["LANGFUSE_ENCRYPTION_KEY"])
    # the secrets hold the same values as the .env
    assert cloud.secrets["goat-langfuse"] == {
        k: written[k] for k in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_HOST")
    }
    assert cloud.secrets["goat-langfuse-server"] == {
        k: written[k]
        for k in (
            "LANGFUSE_SALT",
            "LANGFUSE_ENCRYPTION_KEY",
            "LANGFUSE_NEXTAUTH_SECRET",
            "LANGFUSE_INIT_USER_PASSWORD",
        )
    }
    assert "goat-langfuse-data" in cloud.volumes
    assert not any("cloud.langfuse.com" in json.dumps(values) for _, values in cloud.puts)
    assert [a.name for a in fake_cloud.deployed] == ["goat-langfuse"]
    assert echoed and all(written[k] not in line for line in echoed for k in SECRETS)  # names only

    # run again: the keys in the .env are reused, nothing is regenerated
    again = build_plan(env_file, state, registry=REGISTRY)
    assert again.generated == {}

    # the proxy config picks it up: with the .env loaded, langfuse_otel is on
    for k in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_HOST"):
        monkeypatch.setenv(k, written[k])
    cfg = build_config(REGISTRY, {}, include_disabled=True).config  # cloud entries: routable on Modal
    assert "langfuse_otel" in cfg["litellm_settings"]["callbacks"]
    # the proxy on Modal runs the same config and reads LANGFUSE_HOST from goat-langfuse (above)
    assert written["LANGFUSE_SECRET_KEY"] not in json.dumps(cfg)  # LiteLLM reads the keys from its env


# ---- goat doctor ------------------------------------------------------------------------------------


class LangfuseStandIn:
    """Loopback stand-in for Langfuse's health endpoint, per its documentation (Langfuse is not
    reachable here): `GET /api/public/health` 200 {"status": "OK", "version": ...}; with
    `failIfDatabaseUnavailable=true` and the database down, 503."""

    def __init__(self, db_up: bool = True) -> None:
        self.db_up = db_up
        self.queries: list[dict] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                stand_in.queries.append(parse_qs(url.query))
                if url.path != "/api/public/health":
                    code, body = 404, {"message": "not found"}
                elif not stand_in.db_up and parse_qs(url.query).get("failIfDatabaseUnavailable") == ["true"]:
                    code, body = 503, {"status": "Database not available", "version": "4.27.0"}
                else:
                    code, body = 200, {"status": "OK", "version": "4.27.0"}
                send_json(self, code, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_doctor_checks_langfuse_health(monkeypatch):
    monkeypatch.setenv("GOAT_LANGFUSE_ON_MODAL", "1")
    monkeypatch.delenv("LANGFUSE_HOST", raising=False)
    [c] = doctor.check_langfuse()
    assert c.status == "fail" and "LANGFUSE_HOST" in c.detail and ".env" in c.fix

    server = LangfuseStandIn()
    try:
        monkeypatch.setenv("LANGFUSE_HOST", server.url)
        monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", SECRETS["LANGFUSE_PUBLIC_KEY"])
        monkeypatch.setenv("LANGFUSE_SECRET_KEY", SECRETS["LANGFUSE_SECRET_KEY"])
        [c] = doctor.check_langfuse()
        assert (c.phase, c.status) == ("services", "pass") and "Langfuse 4.27.0" in c.detail
        assert server.queries[-1] == {"failIfDatabaseUnavailable": ["true"]}  # the database counts

        server.db_up = False
        [c] = doctor.check_langfuse()
        assert c.status == "fail" and "503" in c.detail and "modal app logs goat-langfuse" in c.fix
        assert SECRETS["LANGFUSE_SECRET_KEY"] not in c.detail + c.fix

        server.db_up = True
        monkeypatch.delenv("LANGFUSE_SECRET_KEY")
        [c] = doctor.check_langfuse()
        assert c.status == "warn" and "no traces sent" in c.detail
    finally:
        server.close()
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", SECRETS["LANGFUSE_SECRET_KEY"])
    [c] = doctor.check_langfuse(timeout_s=2)  # the stand-in is gone
    assert c.status == "fail" and "unreachable" in c.detail

    monkeypatch.delenv("GOAT_LANGFUSE_ON_MODAL")
    monkeypatch.delenv("LANGFUSE_HOST")
    assert doctor.check_langfuse() == []  # Langfuse not in use: nothing to say


def test_doctor_services_phase_wants_the_app(fake_cloud, monkeypatch):
    monkeypatch.setenv("GOAT_LANGFUSE_ON_MODAL", "1")

    class Cloud:
        environment = "goat-test"

        def check(self) -> None: ...
        def environments(self) -> set[str]:
            return {"goat-test"}

        def secrets(self) -> set[str]:
            return {"goat-llm-providers", "goat-litellm", "goat-langfuse", "goat-hf-token", "goat-vllm"}

        def volumes(self) -> set[str]:
            return set()

        def app_tags(self, name: str) -> dict | None:
            return fake_cloud.app_tags(name)

    checks = doctor.check_modal(Cloud(), None)
    by_name = {c.name: c for c in checks}
    assert by_name["goat-langfuse-server"].status == "fail"  # its secret, checked only when on
    assert "goat-langfuse-data" in by_name["volumes"].detail
    assert by_name["goat-langfuse"].status == "fail" and "goat setup" in by_name["goat-langfuse"].fix
    fake_cloud.tags["goat-langfuse"] = {"goat-spec": "x"}
    assert {c.name: c for c in doctor.check_modal(Cloud(), None)}["goat-langfuse"].status == "pass"
