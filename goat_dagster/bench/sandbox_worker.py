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

import base64
import contextlib
import ctypes
import json
import os
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


class PathError(Exception):
    """A path the agent may not use; the message is shown to the model as a tool error."""


class Worker:
    def __init__(self, root: str, tmp: str | None, task_uid: int | None = None) -> None:
        self.root = os.path.realpath(root)
        self.tmp = tmp
        self.task_uid = task_uid  # commands run as this uid (the worker itself runs as another)
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
        me = os.getpid()
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
        if not plain_words(cmd):
            return None
        try:
            argv = shlex.split(cmd)
        except ValueError:
            return None
        if not argv or argv[0] not in self.interpreters:
            return None
        if any(
            k.startswith("PYTHON") and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED") for k in env
        ):
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

    def op_exec(self, req: dict) -> dict:
        cmd: str = req["cmd"]
        env: dict = req.get("env") or {}
        timeout = float(req.get("timeout", 60))
        cap = int(req.get("cap", 64 * 1024))
        hard_cap = int(req.get("hard_cap", 16 * 1024 * 1024))
        limits = req.get("limits") or {}
        cwd = os.path.normpath(os.path.join(self.root, self.resolve(req.get("cwd") or ".")))
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
                os.dup2(null, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                os.closerange(3, 65536)
                if self.task_uid is not None:
                    become_task_user(self.task_uid)
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
        pidfd = os.pidfd_open(pid)
        bufs = {out_r: bytearray(), err_r: bytearray()}
        total = 0
        open_fds = {out_r, err_r}
        killed = None
        status = None
        deadline = started + timeout
        poller = select.poll()
        for fd in (out_r, err_r, pidfd):
            poller.register(fd, select.POLLIN)
        exited_at = None
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
                        _, status = os.waitpid(pid, 0)
                        exited_at = time.monotonic()
                    poller.unregister(pidfd)
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    continue
                total += len(chunk)
                room = cap - len(bufs[fd])
                if room > 0:
                    bufs[fd] += chunk[:room]
                if total > hard_cap and killed is None:
                    killed = "output"
                    kill_group(pid)
        kill_group(pid)
        os.close(pidfd)
        for fd in (out_r, err_r):
            os.close(fd)
        if status is None:
            _, status = os.waitpid(pid, 0)
        self.wait_group_gone(pid)
        exit_code = os.waitstatus_to_exitcode(status)
        if exit_code < 0 and killed is None:
            sig = -exit_code
            killed = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "file_size"}.get(sig, f"signal {sig}")
        return {
            "ok": True,
            "exit": exit_code,
            "stdout": bufs[out_r].decode("utf-8", "replace"),
            "stderr": bufs[err_r].decode("utf-8", "replace"),
            "truncated": total > len(bufs[out_r]) + len(bufs[err_r]),
            "output_bytes": total,
            "killed": killed,
            "duration": time.monotonic() - started,
            "warm": warm is not None,
        }

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
        return {
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
    import io
    import runpy

    kind, target, args, flags = spec
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
    code = 0
    try:
        if kind == "file":
            sys.argv = [target, *args]
            script = os.path.normpath(os.path.join(cwd, target))  # __main__.__file__ is absolute
            sys.path[0] = os.path.dirname(script)
            if os.path.isdir(script) or not os.path.isfile(script):
                runpy.run_path(target, run_name="__main__")  # a directory/zip with __main__.py
            else:
                run_main_source(script)
        elif kind == "-m":
            sys.argv = [target, *args]
            sys.path[0] = cwd
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            sys.argv = ["-c", *args]
            sys.path[0] = ""
            run_main_source(None, target)
    except SystemExit as exc:
        code = exit_code_of(exc)
    except BaseException as exc:
        print_user_traceback(exc)
        code = 1
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

    skip = {os.path.abspath(__file__), os.path.abspath(runpy.__file__), "<frozen runpy>"}
    tb = exc.__traceback__
    while tb is not None and (
        tb.tb_frame.f_code.co_filename in skip or os.path.abspath(tb.tb_frame.f_code.co_filename) in skip
    ):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)


LIBC = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int) -> None:
    if LIBC.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}, {value}): {os.strerror(err)}")


def capset(caps: tuple[int, ...]) -> None:
    """Set this thread's effective and permitted capabilities to exactly `caps` (none inheritable)."""

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
    if LIBC.capset(ctypes.byref(header), data) != 0:
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
    LIBC.setfsgid(task_uid)
    LIBC.setfsuid(task_uid)
    if LIBC.setfsuid(-1) != task_uid or LIBC.setfsgid(-1) != task_uid:  # -1 only reports it
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

    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--tmp", default=None, help="a private /tmp to empty between tasks")
    ap.add_argument("--uid", type=int, default=None, help="the uid task commands run as (from root)")
    ap.add_argument("--worker-uid", type=int, default=None, help="the worker's own uid (from root)")
    args = ap.parse_args()
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    task_uid = None
    if args.uid is not None and os.geteuid() == 0:
        if args.worker_uid is None or args.worker_uid == args.uid:
            ap.error("--uid needs a different --worker-uid: task code must not be able to signal the worker")
        become_worker_user(args.worker_uid, args.uid)
        task_uid = args.uid
    worker = Worker(args.root, args.tmp, task_uid)
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


if __name__ == "__main__":
    main()
