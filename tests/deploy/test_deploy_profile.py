"""The cluster profile (deploy/): its Dagster instance loaded for real, a run launched through it as a
Kubernetes Job, and the manifests, the Dockerfile and the instance agreeing with each other.

What runs for real: the profile's dagster.yaml unchanged, on a real PostgreSQL (the session's
pgserver, a database of its own); goat's run coordinator; dagster-k8s's K8sRunLauncher with the
official kubernetes client, loading its in-cluster config as in a pod; the code location started
with the Dockerfile's own CMD, serving goat_dagster.definitions over gRPC. What cannot run here is a
cluster (no Kubernetes, no Docker engine): the Kubernetes API server is stood in for by an HTTPS
server on loopback that accepts `POST .../jobs` as the API does (201 and the Job back) and keeps
what it was sent, so the test reads the Job a real cluster would have been asked to run.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg2
import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.conftest import PROJECT, free_port, send_json

pytestmark = pytest.mark.integration
DEPLOY = PROJECT / "deploy"
K8S = DEPLOY / "k8s"
IMAGE = "registry.example/goat-dagster:test-1"


def manifests() -> dict[tuple[str, str], dict]:
    """(kind, name) -> document of every manifest the kustomization lists."""
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    out = {}
    for res in kust["resources"]:
        for doc in yaml.safe_load_all((K8S / res).read_text()):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def dockerfile_cmd() -> list[str]:
    cmd = re.search(r"^CMD (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert cmd, "deploy/Dockerfile has an exec-form CMD"
    return json.loads(cmd.group(1))


def env_names(path: Path) -> set[str]:
    return {
        line.split("=", 1)[0]
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }


# ---- a stand-in Kubernetes API server (HTTPS on loopback) -----------------------------------------


def self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "ca.crt", tmp / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


class FakeKubernetes:
    """Accepts Jobs the way the API server does and keeps them: (namespace, body, auth header)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.jobs: list[tuple[str, dict, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                m = re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs", self.path.split("?")[0])
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                if not m:
                    self.send_response(404)
                    self.end_headers()
                    return
                outer.jobs.append((m.group(1), body, self.headers.get("authorization", "")))
                body.setdefault("metadata", {})["uid"] = str(uuid.uuid4())
                send_json(self, 201, body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def in_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKubernetes:
    """This process as a pod of the cluster sees itself: KUBERNETES_SERVICE_HOST/PORT and the
    service account's token and CA, which `load_incluster_config` reads."""
    from kubernetes.config import incluster_config

    cert, key = self_signed(tmp_path)
    api = FakeKubernetes(cert, key)
    token = tmp_path / "token"
    token.write_text("service-account-token-of-goat-dagster")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.port))
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(cert))
    yield api
    api.server.shutdown()


@pytest.fixture
def profile_home(pg_instance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """DAGSTER_HOME holding the profile's dagster.yaml as the ConfigMap mounts it, and
    DAGSTER_PG_URL naming a fresh database on the session's real PostgreSQL."""
    base = os.environ["DAGSTER_PG_URL"]
    db = f"goat_profile_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(base.replace("postgresql+psycopg2://", "postgresql://"))
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {db}")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(K8S / "dagster.yaml", home / "dagster.yaml")
    url = make_url(base).set(database=db).render_as_string(hide_password=False)
    monkeypatch.setenv("DAGSTER_PG_URL", url)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    yield home
    admin.cursor().execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    admin.close()


def load_profile_instance():
    from dagster import DagsterInstance

    return DagsterInstance.get()


# ---- the tests ---------------------------------------------------------------------------------


def test_profile_instance_loads_on_postgres_with_the_k8s_run_launcher(profile_home, in_pod):
    from dagster_k8s import K8sRunLauncher
    from dagster_postgres import PostgresRunStorage

    from goat_dagster.run_queue import ServingBackendRunCoordinator

    instance = load_profile_instance()
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert instance.get_runs_count() == 0  # its own, fresh database answers
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, ServingBackendRunCoordinator)
        launcher = instance.run_launcher
        assert isinstance(launcher, K8sRunLauncher)
        assert launcher.job_namespace == "goat" and launcher.instance_config_map == "goat-dagster-instance"
        assert launcher.env_config_maps == ["goat-env"] and launcher.env_secrets == ["goat-secrets"]
        assert launcher.volume_mounts == [{"name": "goat-data", "mountPath": "/goat"}]
    finally:
        instance.dispose()


def test_a_run_of_the_code_location_image_becomes_a_kubernetes_job(profile_home, in_pod, tmp_path):
    """The code location started as the image starts it (Dockerfile CMD, DAGSTER_CURRENT_IMAGE as
    the manifest sets it); a run of one model's partition submitted through the profile's instance
    (goat's coordinator tags it) and launched: the launcher asks the API server for a Job that runs
    exactly this run in its own pod, from the code location's image."""
    from dagster._core.test_utils import create_run_for_test
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    port = free_port()
    cmd = dockerfile_cmd()
    cmd[cmd.index("-p") + 1] = str(port)
    cmd[cmd.index("-h") + 1] = "127.0.0.1"
    exe = Path(sys.executable).parent / cmd[0]
    goat_home = tmp_path / "goat"
    env = {
        **os.environ,
        "DAGSTER_CURRENT_IMAGE": IMAGE,
        "GOAT_HOME": str(goat_home),
        "GOAT_PROJECT_DIR": str(PROJECT),
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)
    log = tmp_path / "code-server.log"
    with log.open("wb") as out:
        server = subprocess.Popen([str(exe), *cmd[1:]], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        health = [str(Path(sys.executable).parent / "dagster"), "api", "grpc-health-check", "-p", str(port)]
        deadline = time.monotonic() + 120
        while subprocess.run(health, capture_output=True, env=env).returncode != 0:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"code server did not come up:\n{log.read_text()}"
            time.sleep(1)
        ws = yaml.safe_load((K8S / "workspace.yaml").read_text())
        ws["load_from"][0]["grpc_server"]["host"] = "127.0.0.1"
        ws["load_from"][0]["grpc_server"]["port"] = port
        ws_file = tmp_path / "workspace.yaml"
        ws_file.write_text(yaml.safe_dump(ws))

        instance = load_profile_instance()
        with WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(ws_file)])) as ctx:
            workspace = ctx.create_request_context()
            location = workspace.get_code_location("goat_dagster")
            repo = location.get_repository(location.get_repository_names()[0])
            job = repo.get_full_job("__ASSET_JOB")
            assert job.get_python_origin().repository_origin.container_image == IMAGE
            run = create_run_for_test(
                instance,
                job_name=job.name,
                remote_job_origin=job.get_remote_origin(),
                job_code_origin=job.get_python_origin(),
                tags={"dagster/partition": "smollm2-135m"},
            )
            instance.submit_run(run.run_id, workspace)
            queued = instance.get_run_by_id(run.run_id)
            assert queued.status.value == "QUEUED"
            assert queued.tags["goat/serving-backend"] == "local"  # goat's coordinator did it
            instance.launch_run(run.run_id, workspace)
        instance.dispose()
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:  # dagster's code server, not ours: don't leave it behind
            server.kill()
            server.wait(10)

    assert len(in_pod.jobs) == 1
    namespace, body, auth = in_pod.jobs[0]
    assert namespace == "goat" and auth.lower() == "bearer service-account-token-of-goat-dagster"
    pod = body["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == IMAGE
    assert container["args"][:3] == ["dagster", "api", "execute_run"]
    assert run.run_id in " ".join(container["args"])
    assert {"configMapRef": {"name": "goat-env"}} in container["envFrom"]
    assert {"secretRef": {"name": "goat-secrets"}} in container["envFrom"]
    env_vars = {e["name"]: e.get("value") for e in container["env"]}
    assert env_vars["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/goat"] == "goat-data"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["goat-data"]["persistentVolumeClaim"]["claimName"] == "goat-data"
    # the run pod's instance is the profile's, handed over in the Job's args (dagster-k8s passes the
    # instance ref): the same storage, its URL still a reference to the Secret's DAGSTER_PG_URL
    args = " ".join(container["args"])
    assert "ServingBackendRunCoordinator" in args and "K8sRunLauncher" in args
    assert "DAGSTER_PG_URL" in args
    assert os.environ["DAGSTER_PG_URL"] not in args
    assert pod["serviceAccountName"] == "goat-dagster"
    assert pod["securityContext"] == {"runAsUser": 10001, "fsGroup": 10001}
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert body["spec"]["backoffLimit"] == 0
    assert body["metadata"]["labels"]["dagster/run-id"] == run.run_id


def test_manifests_the_image_and_the_instance_agree():
    """Every name dagster.yaml relies on is made by the kustomization; the code location serves on
    the port the workspace dials; goat.env sets only settings goat has."""
    from goat_dagster.config import GoatSettings

    instance = yaml.safe_load((K8S / "dagster.yaml").read_text())
    launcher = instance["run_launcher"]["config"]
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    generated = {g["name"] for g in kust["configMapGenerator"]}
    docs = manifests()

    assert launcher["instance_config_map"] in generated and set(launcher["env_config_maps"]) <= generated
    assert ("ServiceAccount", launcher["service_account_name"]) in docs
    claim = launcher["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in docs
    assert kust["namespace"] == launcher["job_namespace"]
    assert instance["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}
    assert "DAGSTER_PG_URL" in env_names(K8S / "secrets.example.env")

    cmd = dockerfile_cmd()
    assert (
        cmd[:3] == ["dagster", "code-server", "start"]
        and cmd[cmd.index("-m") + 1] == "goat_dagster.definitions"
    )
    grpc = yaml.safe_load((K8S / "workspace.yaml").read_text())["load_from"][0]["grpc_server"]
    service = docs[("Service", grpc["host"])]
    assert service["spec"]["ports"][0]["port"] == grpc["port"] == int(cmd[cmd.index("-p") + 1])
    assert "--extra k8s" in (DEPLOY / "Dockerfile").read_text()

    code = docs[("Deployment", "goat-code")]["spec"]["template"]["spec"]["containers"][0]
    assert code["env"][0]["name"] == "DAGSTER_CURRENT_IMAGE"
    target = kust["replacements"][0]["targets"][0]["fieldPaths"][0]
    assert target.endswith("env.[name=DAGSTER_CURRENT_IMAGE].value")
    for name in ("goat-webserver", "goat-daemon"):
        args = docs[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]["command"]
        assert "/opt/dagster/workspace/workspace.yaml" in shlex.join(args)

    known = {GoatSettings.env_name(f) for f in GoatSettings.model_fields}
    assert env_names(K8S / "goat.env") <= known
    assert env_names(K8S / "secrets.example.env") <= known | {"MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"}
