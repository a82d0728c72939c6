"""The `modal` sandbox, offline.

Modal's cloud cannot be reached from this machine, so `LocalModalStandIn` stands in for a created
`modal.Sandbox`: it has the Modal 1.6 surface the harness uses (`exec(*args, timeout=, workdir=,
env=, text=)` returning a process with `stdout.read()`, `stderr.read()`, `wait()`;
`filesystem.write_bytes/read_bytes` raising Modal's filesystem exceptions; `terminate()`) and
runs each exec as a real local process in a temporary directory that plays /workspace. Everything
of ours — creation arguments, rate limiting, retries, the exec wrapper, path checks, file
transfer, a whole run — is the real code; only `modal.Sandbox.create` itself is not called.
"""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import modal.exception as me
import pytest

from goat_dagster.bench.journal import RunError
from goat_dagster.bench.modal_sandbox import ModalSandboxPool, RateLimiter, create_with_retry
from goat_dagster.bench.run_request import RetryPolicy
from goat_dagster.bench.sandbox import PoolOptions, SandboxError, SandboxLimits, SandboxPathError
from goat_dagster.bench.usage import AgentLimits
from goat_dagster.routing.gateway import SCOPED_KEY_GRACE_S
from tests.conftest import benchmark


class _Stdin:
    """Modal's `ContainerProcess.stdin`: write() buffers, write_eof() closes after the data,
    drain() sends (here: to the process, once it is read from)."""

    def __init__(self) -> None:
        self.data = b""
        self.eof = False

    def write(self, data: bytes | str) -> None:
        assert not self.eof, "Stdin is closed"
        self.data += data.encode() if isinstance(data, str) else data

    def write_eof(self) -> None:
        self.eof = True

    def drain(self) -> None:
        pass


class _Proc:
    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], text: bool) -> None:
        self.p = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=text,
        )
        self.text = text
        self.stdin = _Stdin()
        self.result: tuple[Any, Any] | None = None
        self.stdout = type("R", (), {"read": lambda _s: self._done()[0]})()
        self.stderr = type("R", (), {"read": lambda _s: self._done()[1]})()

    def _done(self) -> tuple[Any, Any]:
        if self.result is None:
            data = self.stdin.data.decode() if self.text else self.stdin.data
            self.result = self.p.communicate(data)
        return self.result

    def wait(self) -> int:
        self._done()
        return self.p.returncode


class _FS:
    def __init__(self) -> None:
        self.ops: list[tuple[str, str]] = []

    def write_bytes(self, data: bytes, remote_path: str) -> None:
        self.ops.append(("write", remote_path))
        p = Path(remote_path)
        if p.is_dir():
            raise me.SandboxFilesystemIsADirectoryError(remote_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    def read_bytes(self, remote_path: str) -> bytes:
        self.ops.append(("read", remote_path))
        p = Path(remote_path)
        if not p.exists():
            raise me.SandboxFilesystemNotFoundError(remote_path)
        return p.read_bytes()


class LocalModalStandIn:
    def __init__(self, workdir: str, image_bin: str) -> None:
        self.workdir = workdir
        self.image_bin = image_bin  # the image's /usr/local/bin, where debian_slim has `python`
        self.filesystem = _FS()
        self.terminated = False

    def exec(
        self,
        *args: str,
        timeout: int | None = None,
        workdir: str | None = None,
        env: dict[str, str] | None = None,
        text: bool = True,
    ) -> _Proc:
        assert timeout is not None and timeout > 0
        env = {"PATH": "/usr/bin:/bin", **(env or {})}
        env["PATH"] = f"{self.image_bin}:{env['PATH']}"
        return _Proc(list(args), workdir or self.workdir, env, text)

    def terminate(self) -> None:
        self.terminated = True


class Factory:
    """Records every creation request; can fail the first few like a rate-limited Modal would."""

    def __init__(self, workdir: Path, failures: list[Exception] | None = None) -> None:
        self.workdir = workdir
        self.failures = list(failures or [])
        self.calls: list[dict[str, Any]] = []
        self.made: list[LocalModalStandIn] = []

    def __call__(self, kwargs: dict[str, Any]) -> LocalModalStandIn:
        self.calls.append(kwargs)
        if self.failures:
            raise self.failures.pop(0)
        for p in self.workdir.iterdir():  # a new sandbox starts empty
            subprocess.run(["rm", "-rf", str(p)], check=True)
        image_bin = self.workdir.parent / "image-bin"
        if not image_bin.exists():
            image_bin.mkdir()
            for name in ("python", "python3"):  # debian_slim's /usr/local/bin has both
                (image_bin / name).symlink_to(sys.executable)
        sb = LocalModalStandIn(str(self.workdir), str(image_bin))
        self.made.append(sb)
        return sb


def make_pool(tmp_path: Path, **kw: Any) -> tuple[ModalSandboxPool, Factory]:
    work = tmp_path / "workspace"
    work.mkdir(exist_ok=True)
    factory = Factory(work, kw.pop("failures", None))
    options = kw.pop("options", PoolOptions(size=2))
    pool = ModalSandboxPool(
        options,
        create=factory,
        app="app",
        image="image",
        workdir=str(work),
        limiter=RateLimiter(1000),
        retry_backoff_s=0.001,
    )
    return pool, factory


def test_creation_arguments(tmp_path: Path) -> None:
    pool, factory = make_pool(tmp_path, options=PoolOptions(limits=SandboxLimits(cpus=2.0, memory_mb=4096)))
    with pool.session() as sb:
        assert sb.exec("echo hi", timeout_s=10).stdout == "hi\n"
    [kw] = factory.calls
    assert kw["block_network"] is True  # no network unless the agent must reach the gateway
    assert kw["cpu"] == (2.0, 2.0) and kw["memory"] == (4096, 4096)
    assert kw["timeout"] == 3600 and kw["secrets"] == [] and kw["app"] == "app" and kw["image"] == "image"
    assert factory.made[0].terminated
    pool, factory = make_pool(tmp_path, options=PoolOptions(network=True))
    with pool.session():
        pass
    assert factory.calls[0]["block_network"] is False
    # a command agent's sandbox may reach its gateway only: by name, or by address
    for host, key, allowed in [
        (
            "goat--goat-services-proxy.modal.run",
            "outbound_domain_allowlist",
            ["goat--goat-services-proxy.modal.run"],
        ),
        ("203.0.113.7", "outbound_cidr_allowlist", ["203.0.113.7/32"]),
    ]:
        pool, factory = make_pool(tmp_path, options=PoolOptions(network=True, gateway_host=host))
        with pool.session():
            pass
        kw = factory.calls[0]
        assert kw["block_network"] is False and kw[key] == allowed


def test_a_task_runs_in_its_own_image(tmp_path: Path) -> None:
    """`image:` of a task is the registry image of its Modal sandbox (built once per tag; offline,
    building a `modal.Image` sends nothing); tasks without one get the pool's default."""
    import modal

    pool, factory = make_pool(tmp_path, options=PoolOptions(size=1))
    for image in ("python:3.12-slim", None, "python:3.12-slim"):
        with pool.session(image=image):
            pass
    tagged, default, again = (kw["image"] for kw in factory.calls)
    assert isinstance(tagged, modal.Image) and tagged is again  # one object per tag
    assert default == "image"  # the pool's own (here the stand-in's)


def test_creation_is_rate_limited() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(5, clock=lambda: now[0], sleep=sleep)
    for _ in range(11):
        limiter.acquire()
    assert now[0] == pytest.approx(2.0)  # 11 creations at 5/s: the last one at t = 2 s
    # and across threads, with the real clock
    limiter = RateLimiter(50)
    stamps: list[float] = []
    import time

    def grab() -> None:
        limiter.acquire()
        stamps.append(time.monotonic())

    threads = [threading.Thread(target=grab) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    assert stamps[-1] - stamps[0] >= 9 * 0.02 * 0.9


def test_creation_retries_transient_errors_only(tmp_path: Path) -> None:
    pool, factory = make_pool(
        tmp_path, failures=[me.ResourceExhaustedError("rate limited"), me.ConnectionError("reset")]
    )
    with pool.session() as sb:
        assert sb.exec("true", timeout_s=5).exit_code == 0
    assert len(factory.calls) == 3
    pool, factory = make_pool(tmp_path, failures=[me.AuthError("bad token")])
    with pytest.raises(SandboxError, match="AuthError") as err, pool.session():
        pass
    assert not err.value.transient and len(factory.calls) == 1
    slept: list[float] = []
    with pytest.raises(SandboxError):
        create_with_retry(
            lambda: (_ for _ in ()).throw(me.InternalError("boom")),
            attempts=3,
            backoff_s=0.5,
            limiter=RateLimiter(1000),
            sleep=slept.append,
        )
    assert slept == [0.5, 1.0]


def test_exec_limits_and_paths(tmp_path: Path) -> None:
    limits = SandboxLimits(output_hard_bytes=1 << 20, output_keep_bytes=1000)
    pool, factory = make_pool(tmp_path, options=PoolOptions(limits=limits))
    with pool.session() as sb:
        res = sb.exec("echo out; echo err >&2; exit 4", timeout_s=10)
        assert (res.exit_code, res.stdout, res.stderr) == (4, "out\n", "err\n")
        res = sb.exec("sleep 30", timeout_s=1)
        assert res.killed == "timeout" and res.duration_s < 10
        res = sb.exec("yes", timeout_s=20)
        assert res.killed == "output" and len(res.stdout) == 1000 and res.truncated
        assert "OPENAI_API_KEY" not in sb.exec("env", timeout_s=5).stdout
        sb.write_files({"pkg/a.py": "x = 1\n"})
        assert sb.read_file("pkg/a.py") == b"x = 1\n"
        assert ("write", f"{sb.workdir}/pkg/a.py") in factory.made[0].filesystem.ops  # the filesystem API
        assert [e.path for e in sb.walk()] == ["pkg", "pkg/a.py"]
        sb.exec("ln -s /etc/passwd out", timeout_s=5)
        for bad in ("../x", "/etc/passwd", "out"):
            with pytest.raises(SandboxPathError):
                sb.read_file(bad)
        res = sb.exec("sleep 300 & echo started", timeout_s=30)  # leftovers do not hold the exec open
        assert res.stdout == "started\n" and res.duration_s < 10
        sb.kill_processes()


def test_a_run_on_the_modal_backend(goat_home: Path, tmp_path: Path) -> None:
    pool, factory = make_pool(tmp_path, options=PoolOptions(size=1))
    s = benchmark(suite="smoke", model="smollm2-135m", agent="oracle", sandbox="modal", pool=pool, parallel=1)
    assert (s.n, s.passed, s.sandbox, s.isolation) == (5, 5, "modal", "modal")
    assert len(factory.calls) == 5 and all(sb.terminated for sb in factory.made)  # one sandbox per task


def test_sandbox_keys_are_minted_one_way_with_one_ttl_policy() -> None:
    """`routing.gateway.sandbox_gateway` (the Dagster resource's) and a cloud `command:` agent's key
    both come from `sandbox_key`: valid for the sandbox's work plus the same grace period."""
    from goat_dagster.registry import load_registry
    from goat_dagster.routing.auth import verify_scoped_key
    from goat_dagster.routing.gateway import sandbox_gateway
    from goat_dagster.routing.proxy import ProxySettings

    master = "sk-master-of-the-proxy"
    proxy = ProxySettings(mode="external", url="https://proxy.example/v1", master_key=master)
    entry = load_registry().get("smollm2-135m")
    client = sandbox_gateway(entry, run_id="r1", work_s=900, proxy=proxy)
    assert client.base_url == "https://proxy.example/v1" and client.model == "smollm2-135m-local"
    claims = verify_scoped_key(master, client.api_key.get_secret_value())
    assert claims.models == ("smollm2-135m-local",) and claims.run_id == "r1"
    assert (
        time.time() + 900 + SCOPED_KEY_GRACE_S - 60
        < claims.expires_at
        <= time.time() + 900 + SCOPED_KEY_GRACE_S
    )


def test_command_agent_in_a_cloud_sandbox_gets_a_scoped_key(goat_home: Path, tmp_path: Path) -> None:
    from goat_dagster.routing.auth import verify_scoped_key
    from goat_dagster.routing.gateway import Gateway

    master = "sk-master-of-the-proxy"
    show_env = "command:env"
    pool, _ = make_pool(tmp_path, options=PoolOptions(size=1, network=True))
    # a proxy a cloud sandbox could reach: not on loopback (here: this machine's outward address)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.254.254.254", 1))  # no packet is sent; picks the outward interface
        address = probe.getsockname()[0]
    except OSError:
        pytest.skip("no non-loopback interface")
    finally:
        probe.close()
    server = ThreadingHTTPServer((address, 0), BaseHTTPRequestHandler)  # answers 501: it is there
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://{address}:{server.server_address[1]}/v1"
    remote = Gateway(base_url=base, api_key=master, model="qwen3-4b-local")
    run = functools.partial(
        benchmark,
        suite="smoke",
        model="smollm2-135m",
        agent=show_env,
        sandbox="modal",
        pool=pool,
        task_ids=["fizzbuzz"],
    )
    s = run(gateway=remote)
    entry = json.loads(Path(s.journal_dir, "results.jsonl").read_text().splitlines()[-1])
    env = dict(
        ln.split("=", 1)
        for ln in entry["detail"]["attempts"][-1]["notes"][-1].split("output: ")[1].splitlines()
        if "=" in ln
    )
    assert env["OPENAI_BASE_URL"] == remote.base_url and env["OPENAI_MODEL"] == "qwen3-4b-local"
    assert master not in json.dumps(env)
    claims = verify_scoped_key(master, env["OPENAI_API_KEY"])
    assert claims.models == ("qwen3-4b-local",) and claims.run_id == s.run_id
    # the one TTL policy of sandbox keys: the work they are for (the agent's time limit) + grace
    ttl = AgentLimits().max_seconds + SCOPED_KEY_GRACE_S
    assert time.time() < claims.expires_at <= time.time() + ttl
    assert claims.expires_at > time.time() + ttl - 120
    server.shutdown()

    # a proxy on this machine's loopback cannot be reached from the cloud: refused before any
    # task runs (not a run of infra errors; nothing needs to answer there), and nothing is recorded
    local = Gateway(base_url="http://127.0.0.1:9/v1", api_key=master, model="qwen3-4b-local")
    with pytest.raises(RunError, match=r"loopback.*GOAT_LITELLM_URL"):
        run(gateway=local, run_id="loopback-refused", retry=RetryPolicy(retries=0))
    assert not (goat_home / "lake" / "results" / "loopback-refused.parquet").exists()
    journal = goat_home / "runs" / "loopback-refused" / "results.jsonl"
    assert not journal.exists() or journal.read_text() == ""
