"""The `local` sandbox: warm workers on this machine, one per parallel slot.

Each slot is one long-lived `sandbox_worker.py` process (its host end: local_worker.py), started
once inside bubblewrap (bwrap.py: what the worker may see):

- new PID, network (loopback only), IPC, UTS and cgroup namespaces; `--die-with-parent`;
- a read-only view of /usr, the Python interpreter and a few /etc files; nothing else of the host
  (no /home, /root, /work, /var, no host /tmp); a private size-capped tmpfs /tmp;
- the slot's work directory, mounted at /workspace, is the only writable place on disk;
- no capabilities, `no_new_privs`, and (when the harness runs as root) a per-slot unprivileged uid
  so the process-count rlimit applies, while the worker runs as a second uid of its own that task
  code cannot signal (a task that runs `kill -9 -1` or `pkill python` kills only its own processes);
- an environment of an allow-list only (`sandbox.scrubbed_env`).

Per task the worker kills everything left over, empties /workspace and /tmp, and runs each command
in a forked child with rlimits, a wall-clock timeout that kills its process group, and capped
output. Because the worker is already running, a task costs a fork, not a container start — and
`python ...` commands fork the warm interpreter instead of starting a new one.

Without bubblewrap the pool refuses to start: task code would run on the host itself, able to
read its files, reach the network and signal its processes. `GOAT_SANDBOX_BWRAP=0` accepts that on
purpose: the same worker then runs as a plain subprocess and a warning names what is weaker — but
never as root (a task's `kill -9 -1` would take the machine down), only as an unprivileged uid or
the harness's own non-root user. Where task code can reach the worker (not root: one uid for both),
a command that kills it comes back as an `ExecResult` with `killed="sandbox"` (the task's own
doing, not an infrastructure error) and the next request starts a new worker.
"""

from __future__ import annotations

import base64
import logging
import os
import py_compile
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from goat_dagster.bench import sandbox_worker
from goat_dagster.bench.bwrap import (
    CHECK_PYTHON,
    NO_BWRAP_ERROR,
    NO_BWRAP_WARNING,
    RELAY_DIR,
    SANDBOX_PATH,
    SUPPORT,
    WORKDIR,
    WORKER_PROGRAM,
    WORKER_SOURCE,
    base_interpreter,
    bwrap_command,
    bwrap_turned_off,
    find_bwrap,
    others_can_read,
)
from goat_dagster.bench.local_worker import WorkerExited, WorkerProcess
from goat_dagster.bench.sandbox import (
    CheckPlan,
    CheckRun,
    Entry,
    ExecResult,
    PoolOptions,
    Sandbox,
    SandboxError,
    SandboxFileError,
    SandboxPathError,
    SandboxPool,
    scrubbed_env,
)

log = logging.getLogger(__name__)


def _sweep_stale() -> None:
    """Remove the sandbox dirs of harness processes that died without cleaning up (SIGKILL)."""
    for d in Path(tempfile.gettempdir()).glob("goat-sandbox-*-*"):
        pid = d.name.split("-")[2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


def _slot_uid(index: int) -> int:
    # distinct per slot and (almost surely) per harness process, so RLIMIT_NPROC counts per slot
    return 200_000 + ((os.getpid() & 0xFFFF) << 5) + index


def _worker_uid(index: int) -> int:
    # the slot's worker: a uid no task of any slot runs as (task uids stay below 2_300_000)
    return 4_200_000 + _slot_uid(index)


class LocalSlot:
    """A slot: its directories and its worker."""

    def __init__(self, pool: LocalSandboxPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.dir = pool.base / f"slot-{index}"
        self.work = self.dir / "work"
        self.tmp = self.dir / "tmp"
        self.relay = self.dir / "relay"
        for d in (self.work, self.tmp, self.relay):
            d.mkdir(parents=True, exist_ok=True)
        self.uid = _slot_uid(index) if os.geteuid() == 0 and pool.can_drop_root else None
        self.worker_uid = _worker_uid(index) if self.uid is not None else None
        if self.uid is not None:
            for d in (self.work, self.tmp):
                os.chown(d, self.uid, self.uid)
            self.relay.chmod(0o755)
        self.worker = WorkerProcess(
            pool.command_for(self),
            env=pool.worker_env(),
            cwd=self.work,
            log_path=self.dir / "worker.log",
            spawn=pool.spawn,
        )

    @property
    def root(self) -> str:
        """The work dir as task code sees it."""
        return WORKDIR if self.pool.bwrap else str(self.work)


class LocalSandbox(Sandbox):
    kind = "local"

    def __init__(self, slot: LocalSlot) -> None:
        self.slot = slot
        self.pool = slot.pool
        self.workdir = slot.root
        self.isolation = self.pool.isolation

    def _call(self, req: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        try:
            resp = self.slot.worker.request(req, timeout=timeout)
        except WorkerExited:
            if req["op"] == "exec":
                raise
            # file and process ops are idempotent: a task's leftover that killed the worker while
            # it served one (where it can) does not get to turn the attempt into an infra error
            resp = self.slot.worker.request(req, timeout=timeout)
        if not resp.get("ok"):
            kind = resp.get("kind")
            if kind == "path":
                raise SandboxPathError(resp["error"])
            if kind in ("not_found", "is_dir", "os"):
                raise SandboxFileError(resp["error"])
            raise SandboxError(f"sandbox worker: {resp.get('error')}")
        return resp

    def exec(
        self, command: str, *, timeout_s: float, env: Mapping[str, str] | None = None, cwd: str | None = None
    ) -> ExecResult:
        return self._exec(command, timeout_s=timeout_s, env=env, cwd=cwd)[0]

    def _exec(
        self,
        command: str,
        *,
        timeout_s: float,
        env: Mapping[str, str] | None,
        cwd: str | None,
        check: dict[str, Any] | None = None,
    ) -> tuple[ExecResult, dict[str, Any] | None]:
        limits = self.pool.options.limits
        started = time.monotonic()
        req = {
            "op": "exec",
            "cmd": command,
            "timeout": timeout_s,
            "env": self.pool.env(env, self.slot),
            "cwd": cwd,
            "cap": limits.output_keep_bytes,
            "hard_cap": limits.output_hard_bytes,
            "limits": limits.rlimits(),
            "warm": self.pool.warm,
        }
        if check is not None:
            req["check"] = check
        try:
            resp = self._call(req, timeout=timeout_s + 30)
        except WorkerExited as exc:
            # The worker died while this command ran: where task code can signal the worker (one
            # uid for both), the command did it (`kill -9 -1`, `pkill python`). That is the task's
            # failure, not the infrastructure's; the next request starts a new worker.
            log.warning("sandbox slot %s: the worker died during `%s`: %s", self.slot.index, command, exc)
            return ExecResult(
                exit_code=-int(signal.SIGKILL),
                stdout="",
                stderr=(
                    "sandbox: this command killed the sandbox (its worker process died while the "
                    "command ran); its processes are gone, the files stay, and the next command "
                    "runs in a new sandbox process"
                ),
                duration_s=time.monotonic() - started,
                killed="sandbox",
            ), None
        return ExecResult(
            exit_code=resp["exit"],
            stdout=resp["stdout"],
            stderr=resp["stderr"],
            duration_s=resp["duration"],
            killed=resp["killed"],
            truncated=resp["truncated"],
            output_bytes=resp["output_bytes"],
            warm=resp["warm"],
        ), resp

    def run_check(self, command: str, *, timeout_s: float, plan: CheckPlan) -> CheckRun:
        # the seal is made by the worker after it forks the check and checked there: it never
        # leaves the sandbox's worker (another uid than task code, not dumpable)
        result, resp = self._exec(command, timeout_s=timeout_s, env=None, cwd=None, check=plan.as_dict())
        check = (resp or {}).get("check") or {}
        return CheckRun(result, bool(check.get("sealed")), tuple(check.get("notes") or ()))

    def write_files(self, files: Mapping[str, str | bytes]) -> None:
        if not files:
            return
        payload = []
        for path, data in files.items():
            if isinstance(data, bytes):
                payload.append({"path": path, "b64": base64.b64encode(data).decode()})
            else:
                payload.append({"path": path, "text": data})
        self._call({"op": "write", "files": payload})

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes:
        return base64.b64decode(self._call({"op": "read", "path": path, "limit": limit})["b64"])

    def walk(self, limit: int = 5000) -> list[Entry]:
        resp = self._call({"op": "walk", "limit": limit})
        return [Entry(p, k, s, t) for p, k, s, t in resp["entries"]]

    def kill_processes(self) -> None:
        self._call({"op": "kill"})

    def gateway_url(self, relay_socket: str) -> str:
        inside = f"{RELAY_DIR}/{Path(relay_socket).name}" if self.pool.bwrap else relay_socket
        port = self._call({"op": "bridge", "unix": inside})["port"]
        return f"http://127.0.0.1:{port}/v1"

    @property
    def relay_dir(self) -> Path:
        """Host directory whose unix sockets the sandbox can reach (at RELAY_DIR inside)."""
        return self.slot.relay

    def reset(self) -> None:
        self._call({"op": "reset"}, timeout=60)


class LocalSandboxPool(SandboxPool):
    kind = "local"

    def __init__(self, options: PoolOptions, *, bwrap: str | bool | None = True, warm: bool = True) -> None:
        """`bwrap`: True finds bubblewrap (refusing to run without it unless GOAT_SANDBOX_BWRAP=0),
        a path names the binary, False runs without it on purpose."""
        super().__init__()
        self.options = options
        self.warm = warm
        if bwrap is True:
            self.bwrap = find_bwrap()
            if self.bwrap is None and not bwrap_turned_off():
                raise SandboxError(NO_BWRAP_ERROR, transient=False)
        else:
            self.bwrap = bwrap or None
        self.isolation = "bwrap" if self.bwrap else "none"
        self.python = base_interpreter()
        # as root, tasks run as an unprivileged per-slot uid; without bubblewrap that uid must be
        # able to reach the interpreter on the host (under /root it usually cannot)
        self.can_drop_root = bool(self.bwrap) or others_can_read(Path(sys.base_prefix).resolve())
        if os.geteuid() == 0 and not self.can_drop_root:
            raise SandboxError(
                "the local sandbox does not run task code as root: without bubblewrap it would run on "
                f"this machine as root (the interpreter under {sys.base_prefix} is not readable by an "
                "unprivileged user, so it cannot drop to one). Install bubblewrap (apt-get install "
                "bubblewrap), or run goat as a non-root user.",
                transient=False,
            )
        if not self.bwrap:
            self.warnings.append(NO_BWRAP_WARNING)
            warnings.warn(NO_BWRAP_WARNING, stacklevel=2)
        _sweep_stale()
        self.base = Path(tempfile.mkdtemp(prefix=f"goat-sandbox-{os.getpid()}-"))
        os.chmod(self.base, 0o755)
        self._support()
        self.slots: queue.Queue[LocalSlot] = queue.Queue()
        self._all: list[LocalSlot] = []
        self._closed = False
        self._lock = threading.Lock()
        # every worker is started from this one thread: --die-with-parent ties bwrap to the thread
        # that spawned it, so a worker restarted from a task thread would die with that thread
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="goat-sandbox-spawner")
        try:
            for i in range(max(1, options.size)):
                slot = LocalSlot(self, i)
                self._all.append(slot)
                slot.worker.launch()
            for slot in self._all:  # launched side by side, then each waited for
                slot.worker.wait_ready()
                self.slots.put(slot)
        except BaseException:
            self.close()
            raise

    # ---- set-up --------------------------------------------------------------------------

    def _support(self) -> None:
        """/opt/goat in the sandbox: the worker, `python`/`python3`, a passwd naming the sandbox user."""
        sup = self.base / "support"
        (sup / "bin").mkdir(parents=True)
        shutil.copy2(sandbox_worker.__file__, sup / WORKER_SOURCE)
        source = f"{SUPPORT}/{WORKER_SOURCE}" if self.bwrap else str(sup / WORKER_SOURCE)
        py_compile.compile(str(sup / WORKER_SOURCE), str(sup / WORKER_PROGRAM), dfile=source, doraise=True)
        for name in ("python", "python3"):
            (sup / "bin" / name).symlink_to(self.python)
        # checks run under an execute-only copy: a process whose binary it cannot read is made
        # non-dumpable by the kernel, so task code of its uid cannot read a check's memory (the
        # check zygote, sandbox_worker.Zygote, and every check it forks)
        shutil.copyfile(self.python, sup / "bin" / CHECK_PYTHON)
        (sup / "etc").mkdir()
        uid = "{uid}"
        (sup / "etc" / "passwd").write_text(
            f"root:x:0:0:root:/root:/bin/sh\nsandbox:x:{uid}:{uid}:sandbox:/tmp:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        )
        (sup / "etc" / "group").write_text("root:x:0:\nsandbox:x:{uid}:\nnogroup:x:65534:\n")
        for p in sup.rglob("*"):
            if not p.is_symlink():
                p.chmod(0o755 if p.is_dir() else 0o644)
        (sup / "bin" / CHECK_PYTHON).chmod(0o111)
        sup.chmod(0o755)
        self.support = sup

    def _passwd_for(self, slot: LocalSlot) -> Path:
        uid = slot.uid if slot.uid is not None else (os.getuid() if not self.bwrap else 1000)
        etc = slot.dir / "etc"
        etc.mkdir(exist_ok=True)
        for name in ("passwd", "group"):
            (etc / name).write_text((self.support / "etc" / name).read_text().replace("{uid}", str(uid)))
            (etc / name).chmod(0o644)
        return etc

    def command_for(self, slot: LocalSlot) -> list[str]:
        check_python = (
            f"{SUPPORT}/bin/{CHECK_PYTHON}" if self.bwrap else str(self.support / "bin" / CHECK_PYTHON)
        )
        worker_args = ["--root", slot.root, "--tmp", "/tmp" if self.bwrap else str(slot.tmp)]
        worker_args += ["--check-python", check_python]
        if slot.uid is not None:
            worker_args += ["--uid", str(slot.uid), "--worker-uid", str(slot.worker_uid)]
        if not self.bwrap:
            return [str(self.python), "-E", "-s", "-B", str(self.support / WORKER_PROGRAM), *worker_args]
        return bwrap_command(
            self.bwrap,
            support=self.support,
            work=slot.work,
            relay=slot.relay,
            etc=self._passwd_for(slot),
            tmp_mb=self.options.limits.tmp_mb,
            ro_paths=self.options.ro_paths,
            env=self.worker_env(),
            worker_args=worker_args,
        )

    def spawn(self, start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        """Run `start` (a Popen) on the pool's spawner thread, which lives as long as the pool."""
        try:
            future = self._spawner.submit(start)
        except RuntimeError:  # shut down
            raise SandboxError("the sandbox pool is closed", transient=False) from None
        return future.result()

    def worker_env(self) -> dict[str, str]:
        """The worker's own environment: nothing from the host but the allow-list."""
        path = SANDBOX_PATH if self.bwrap else f"{self.support}/bin:/usr/local/bin:/usr/bin:/bin"
        return scrubbed_env(path=path)

    def env(self, extra: Mapping[str, str] | None, slot: LocalSlot) -> dict[str, str]:
        if self.bwrap:
            return scrubbed_env(extra, path=SANDBOX_PATH)
        return scrubbed_env(
            extra, path=f"{self.support}/bin:/usr/local/bin:/usr/bin:/bin", home=str(slot.tmp)
        )

    # ---- sessions ------------------------------------------------------------------------

    @contextmanager
    def session(self, image: str | None = None) -> Iterator[LocalSandbox]:
        if self._closed:
            raise SandboxError("the sandbox pool is closed", transient=False)
        if image is not None:
            note = f"task image {image!r} is for the modal sandbox; the local one runs the host's Python"
            with self._lock:
                if note not in self.warnings:
                    self.warnings.append(note)
                    log.warning(note)
        slot = self.slots.get()
        try:
            sb = LocalSandbox(slot)
            sb.reset()  # nothing left of the previous task: no process, no file
            yield sb
        finally:
            if self._closed:  # closed under a running task (a stopped run): its worker is gone already
                slot.worker.kill()
            else:
                try:
                    sb.kill_processes()  # nothing keeps running between tasks
                except (SandboxError, UnboundLocalError) as exc:
                    log.warning(
                        "sandbox slot %s: cleanup failed (%s); restarting its worker", slot.index, exc
                    )
                    slot.worker.kill()
            self.slots.put(slot)

    def close(self) -> None:
        self._closed = True
        for slot in self._all:
            slot.worker.kill()
        self._spawner.shutdown(wait=True)
        shutil.rmtree(self.base, ignore_errors=True)
