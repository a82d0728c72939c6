"""The local sandbox holds: no way out by path, environment, network or processes, and no way to
exhaust the host. Real bubblewrap, real processes."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from goat_dagster.bench.bwrap import find_bwrap
from goat_dagster.bench.local_sandbox import LocalSandboxPool
from goat_dagster.bench.sandbox import PoolOptions, SandboxLimits, SandboxPathError
from goat_dagster.bench.tools import Tools

pytestmark = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap is not installed")


def test_sandbox_is_bubblewrapped_and_unprivileged(pool: LocalSandboxPool) -> None:
    with pool.session() as sb:
        assert sb.isolation == "bwrap"
        res = sb.exec("id -u; cat /proc/self/status | grep -E '^(CapEff|NoNewPrivs)'; ls /", timeout_s=10)
        uid, cap, nnp, *root = res.stdout.split("\n")
        assert int(uid) != 0
        assert cap.split()[1] == "0000000000000000"
        assert nnp.split()[1] == "1"
        # nothing of the host's filesystem but the system dirs: no /home, /root's files, /work, /var
        assert "home" not in root and "work" not in root and "var" not in root


def test_path_traversal_is_refused(pool: LocalSandboxPool) -> None:
    with pool.session() as sb:
        sb.write_files({"solution.py": "x = 1\n"})
        sb.exec("ln -s /etc/passwd out; ln -s / root; ln -s solution.py inside", timeout_s=10)
        for path in ("../x", "a/../../x", "/etc/passwd", "out", "root/etc/hostname"):
            with pytest.raises(SandboxPathError):
                sb.read_file(path)
            with pytest.raises(SandboxPathError):
                sb.write_files({path: "pwned"})
        assert sb.read_file("inside") == b"x = 1\n"  # a symlink that stays inside is fine
        assert sb.read_file(f"{sb.workdir}/solution.py") == b"x = 1\n"

        tools = Tools(sb)
        for name, args in [
            ("Read", {"path": "../../etc/passwd"}),
            ("Read", {"path": "/etc/passwd"}),
            ("Read", {"path": "out"}),
            ("Write", {"path": "root/tmp/x", "content": "x"}),
            ("Edit", {"path": "out", "old_string": "root", "new_string": "toor"}),
            ("Grep", {"pattern": "root", "path": "/etc"}),
            ("Glob", {"pattern": "/etc/*"}),
        ]:
            text, ok = tools.call(name, args)
            assert not ok and text.startswith("Error:"), (name, args, text)
            assert "outside the working directory" in text, text
        text, ok = tools.call("Read", {"path": "out"})
        assert "symlink" in text


def test_host_environment_never_reaches_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = "sk-proj-FAKE-PROVIDER-KEY-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", fake)
    monkeypatch.setenv("AZURE_API_KEY", fake)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", fake)
    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql://u:" + fake + "@h/db")
    monkeypatch.setenv("GOAT_LLM_API_KEY", fake)
    with LocalSandboxPool(PoolOptions(size=1)) as p, p.session() as sb:
        res = sb.exec(
            "env; cat /proc/1/environ /proc/self/environ 2>/dev/null | tr '\\0' '\\n'", timeout_s=10
        )
        assert res.exit_code == 0
        assert fake not in res.stdout + res.stderr
        for name in ("OPENAI_API_KEY", "AZURE_API_KEY", "LANGFUSE", "DAGSTER", "GOAT_LLM"):
            assert name not in res.stdout
        # the host's processes (and their environments) are not even visible
        ps = sb.exec("ls /proc | grep -c '^[0-9]'", timeout_s=10)
        assert int(ps.stdout) < 10
        py = sb.exec('python -c "import os; print(sorted(os.environ))"', timeout_s=10)
        assert "OPENAI_API_KEY" not in py.stdout and "GOAT_SANDBOX" in py.stdout


def test_no_network(pool: LocalSandboxPool) -> None:
    # a service on the host's loopback, like the LiteLLM proxy or the Dagster webserver
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    accepted: list[object] = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    try:
        with pool.session() as sb:
            code = (
                "import socket, sys\n"
                f"for host, port in [('127.0.0.1', {port}), ('8.8.8.8', 53), ('1.1.1.1', 443)]:\n"
                "    s = socket.socket(); s.settimeout(2)\n"
                "    try:\n"
                "        s.connect((host, port)); print('CONNECTED', host)\n"
                "    except OSError as e:\n"
                "        print('refused', host, e.errno)\n"
                "print(open('/proc/net/dev').read())\n"
            )
            sb.write_files({"net.py": code})
            res = sb.exec("python net.py", timeout_s=20)
            assert res.exit_code == 0, res.stderr
            assert "CONNECTED" not in res.stdout
            assert res.stdout.count("refused") == 3
            # only the loopback interface exists
            devices = [ln.split(":")[0].strip() for ln in res.stdout.splitlines() if ":" in ln]
            assert devices == ["lo"]
            dns = sb.exec("getent hosts pypi.org || echo no-dns", timeout_s=20)
            assert "no-dns" in dns.stdout
        assert not accepted
    finally:
        server.close()


def test_only_the_work_dir_is_writable(pool: LocalSandboxPool) -> None:
    marker = f"goat-sandbox-probe-{os.getpid()}-{time.time_ns()}"
    with pool.session() as sb:
        res = sb.exec(
            "for d in /usr /etc /opt/goat /root /bin /run /run/goat; do"
            " touch $d/x 2>/dev/null && echo WROTE $d; done;"
            f" touch /workspace/ok && touch /tmp/{marker} && echo fine",
            timeout_s=10,
        )
        assert "WROTE" not in res.stdout
        assert "fine" in res.stdout
        assert [e.path for e in sb.walk()] == ["ok"]
    assert not Path("/tmp", marker).exists()  # the sandbox's /tmp is its own, not the host's


def test_fork_bomb_is_contained() -> None:
    limits = SandboxLimits(processes=64)
    with LocalSandboxPool(PoolOptions(size=1, limits=limits)) as p, p.session() as sb:
        t0 = time.monotonic()
        res = sb.exec("bomb() { bomb | bomb & }; bomb; sleep 30", timeout_s=3)
        took = time.monotonic() - t0
        assert res.killed == "timeout" or res.exit_code != 0
        assert took < 15
        sb.kill_processes()
        left = sb.exec("ps -eo comm=", timeout_s=10).stdout.split()
        assert left.count("sh") == 1, left  # only the shell running this very `ps`
        assert len(left) <= 5, left  # bwrap's init, the worker, sh, ps
        # the sandbox (and the host) still work
        assert sb.exec("echo alive", timeout_s=10).stdout.strip() == "alive"
    assert os.fork is not None  # the test process itself was never touched


def test_infinite_output_is_capped(pool: LocalSandboxPool) -> None:
    with pool.session() as sb:
        t0 = time.monotonic()
        res = sb.exec("yes goat", timeout_s=30)
        assert time.monotonic() - t0 < 10
        assert res.killed == "output"
        assert res.truncated
        assert len(res.stdout) <= 64 * 1024
        # python printing forever through the warm interpreter: same
        res = sb.exec("python -c \"while True: print('x' * 1000)\"", timeout_s=30)
        assert res.killed == "output" and res.warm
        # a huge file hits the file-size limit
        res = sb.exec("head -c 200M /dev/zero > big", timeout_s=30)
        assert res.exit_code != 0
        assert sb.exec("stat -c %s big", timeout_s=5).stdout.strip() == str(64 * 1024 * 1024)


def test_timeouts_kill_the_whole_process_group(pool: LocalSandboxPool) -> None:
    with pool.session() as sb:
        t0 = time.monotonic()
        res = sb.exec("sleep 100 & sleep 100 & python -c 'import time; time.sleep(100)'", timeout_s=1)
        assert res.killed == "timeout"
        assert time.monotonic() - t0 < 5
        assert "sleep" not in sb.exec("ps -eo comm", timeout_s=5).stdout


def test_each_task_gets_a_fresh_sandbox(pool: LocalSandboxPool) -> None:
    with pool.session() as sb:
        sb.write_files({"left.txt": "from task 1"})
        sb.exec(
            "echo secret > /tmp/leak; (setsid sleep 300 &) ; mkdir -p locked && chmod 000 locked", timeout_s=5
        )
    with pool.session() as sb:
        assert sb.walk() == []
        res = sb.exec("ls -A /tmp; ps -eo comm", timeout_s=5)
        assert "leak" not in res.stdout
        assert "sleep" not in res.stdout


def test_memory_limit(pool: LocalSandboxPool) -> None:
    with pool.session() as sb:
        res = sb.exec('python -c "x = bytearray(3 * 1024 ** 3)"', timeout_s=20)
        assert res.exit_code != 0
        assert "MemoryError" in res.stderr


def test_a_task_cannot_kill_its_sandbox(pool: LocalSandboxPool) -> None:
    """`kill -9 -1` and `pkill -f python` in task code end the task's own processes, never the
    worker that serves the sandbox: the worker runs under a uid task code cannot signal."""
    with pool.session() as sb:
        before = sb.slot.worker.request({"op": "ping"})
        assert before["uid"] != before["task_uid"]
        vandal = [
            "sleep 60 & kill -9 -1; wait; echo still here",  # kill(-1) spares the caller only
            "pkill -f python; echo pkill done",  # the shell's own command line names python
            "python -c 'import os, signal; os.kill(-1, signal.SIGKILL)'",  # through the warm fork
            "kill -9 1 2",  # the namespace's init and the worker, by pid
        ]
        results = [sb.exec(cmd, timeout_s=10) for cmd in vandal]
        assert results[0].stdout == "still here\n"
        assert results[1].killed == "signal 15"  # pkill killed its own shell
        assert "Operation not permitted" in results[3].stderr and results[3].exit_code != 0
        assert all(r.killed != "sandbox" for r in results)
        after = sb.slot.worker.request({"op": "ping"})
        assert after["pid"] == before["pid"]  # the same worker served every command
        assert sb.exec("echo alive", timeout_s=5).stdout == "alive\n"
    with pool.session() as sb:
        assert sb.exec("echo next task", timeout_s=5).stdout == "next task\n"


def _worker_host_pid(sb: object) -> int:
    """The host pid of the sandbox's worker: the first python process under bwrap's own ones."""
    todo = [sb.slot.worker.proc.pid]  # type: ignore[attr-defined]
    while todo:
        pid = todo.pop(0)
        if Path(f"/proc/{pid}/comm").read_text().startswith("python"):
            return pid
        for task in Path(f"/proc/{pid}/task").iterdir():
            todo += [int(c) for c in (task / "children").read_text().split()]
    raise AssertionError("no worker process found")


def test_a_worker_that_dies_during_a_command_is_that_commands_failure(pool: LocalSandboxPool) -> None:
    """Where task code can reach its worker (a harness not running as root: one uid for both),
    a command that kills the worker gets an ExecResult saying so — the task's failure, not an
    infrastructure error — and the next command runs in a new worker. Here the worker is killed
    from outside while a command runs, the same event as seen from the host."""
    with pool.session() as sb:
        sb.write_files({"kept.txt": "files survive\n"})
        worker_pid = _worker_host_pid(sb)
        out: list = []
        t = threading.Thread(target=lambda: out.append(sb.exec("sleep 30", timeout_s=60)))
        t.start()
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split():
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.01)
        os.kill(worker_pid, 9)
        t.join(20)
        [res] = out
        assert res.killed == "sandbox" and res.exit_code == -9
        assert "killed the sandbox" in res.stderr
        assert sb.exec("cat kept.txt", timeout_s=5).stdout == "files survive\n"
        assert _worker_host_pid(sb) != worker_pid
