"""The `modal` sandbox: one `modal.Sandbox` per task attempt, in the cloud (Modal 1.6 API).

- created with `modal.Sandbox.create(app=..., image=..., timeout=<lifetime>, cpu=(request, limit),
  memory=(request, limit), block_network=True, workdir=/workspace)`; the network is opened only
  when the agent itself must reach the model gateway (a `command:` agent), no Modal secret is
  attached, so no provider key is ever inside;
- creation is rate-limited (Modal accepts about 5 sandbox creations per second per workspace) and
  retried with exponential backoff on transient errors (rate limiting, connection, internal);
- files go in and out through the sandbox filesystem API (`sb.filesystem.write_bytes/read_bytes`),
  after the same path checks as the local sandbox (`..`, absolute paths elsewhere, symlinks out);
- commands run through a small bash wrapper: rlimits (`ulimit`), a wall-clock `timeout -s KILL`
  on the command's process group, and stdout/stderr cut at the hard output cap;
- the sandbox is terminated when the attempt ends.

Everything but `_modal_create` runs offline; tests drive it with a stand-in for the cloud. The
`modal` package is imported only where a Modal sandbox is used: importing it takes about a second,
which a local run should not pay.
"""

from __future__ import annotations

import ipaddress
import json
import math
import posixpath
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from goat_dagster.bench import sandbox_worker
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
from goat_dagster.bench.sandbox_worker import SEAL_DONE, SEAL_LEN, channel_notes, parse_python_command
from goat_dagster.config import settings

APP_NAME = "goat-sandboxes"
WORKDIR = "/workspace"
CREATIONS_PER_SECOND = 5.0
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
TASK_MARK = "GOAT_TASK_PROCESS"

# rlimits; the command in its own process group (`timeout` makes one) killed at the deadline and,
# when it ends, with everything it left in the background; stdout/stderr cut at the hard cap
_WRAPPER = """\
ulimit -c 0; ulimit -v {mem_kb}; ulimit -f {fsize_kb}; ulimit -u {nproc}; ulimit -n {nofile}
d=$(mktemp -d); mkfifo "$d/o" "$d/e"
head -c {hard} <"$d/o" >"$d/out" & h1=$!
head -c {hard} <"$d/e" >"$d/err" & h2=$!
timeout -s KILL {timeout} bash -c "$1" </dev/null >"$d/o" 2>"$d/e" &
pid=$!
wait $pid
code=$?
kill -KILL -- -$pid 2>/dev/null
wait $h1 $h2
cat "$d/out"; cat "$d/err" >&2; rm -rf "$d"
exit $code
"""


# A check: the same limits, the program run by sandbox_worker's check runner in a new interpreter
# (`python3 -I`: no work dir on sys.path before the runner's own imports). The seal comes on stdin
# (kept in fd 5 here, handed to the runner only), the runner's channel is fd 3 = this process's
# stdout, then a boundary line, then the program's own stdout; its stderr as for any command.
_CHECK_WRAPPER = """\
ulimit -c 0; ulimit -v {mem_kb}; ulimit -f {fsize_kb}; ulimit -u {nproc}; ulimit -n {nofile}
exec 5<&0 0</dev/null
d=$(mktemp -d); mkfifo "$d/o" "$d/e"
head -c {hard} <"$d/o" >"$d/out" 5<&- & h1=$!
head -c {hard} <"$d/e" >"$d/err" 5<&- & h2=$!
timeout -s KILL {timeout} python3 -I -B -c "$1" --run-check "$2" <&5 5<&- 3>&1 >"$d/o" 2>"$d/e" &
pid=$!
exec 5<&-
wait $pid
code=$?
kill -KILL -- -$pid 2>/dev/null
wait $h1 $h2
printf '\n%s\n' "$3"
cat "$d/out"; cat "$d/err" >&2; rm -rf "$d"
exit $code
"""
RUNNER_SOURCE = Path(sandbox_worker.__file__).read_text(encoding="utf-8")


class RateLimiter:
    """At most `rate` acquisitions per second across threads (a simple spacing limiter)."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate
        self.clock, self.sleep = clock, sleep
        self.next_at = 0.0
        self.lock = threading.Lock()

    def acquire(self) -> None:
        with self.lock:
            now = self.clock()
            at = max(now, self.next_at)
            self.next_at = at + self.interval
        if at > now:
            self.sleep(at - now)


CREATION_LIMITER = RateLimiter(CREATIONS_PER_SECOND)  # one per process: Modal's limit is per workspace


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: Modal rate limiting, connection trouble, internal errors, timeouts."""
    import modal.exception as me  # modal is imported where a Modal sandbox is used: ~1 s of start-up

    if isinstance(exc, me.AuthError | me.InvalidError | me.NotFoundError | me.PermissionDeniedError):
        return False
    return isinstance(
        exc,
        me.ResourceExhaustedError
        | me.ConnectionError
        | me.InternalError
        | me.ServiceError
        | me.TimeoutError
        | ConnectionError
        | TimeoutError,
    )


def create_with_retry(
    create: Callable[[], Any],
    *,
    attempts: int = 5,
    backoff_s: float = 1.0,
    limiter: RateLimiter = CREATION_LIMITER,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """`create()` within the creation rate limit, tried again with exponential backoff while it fails
    for a transient reason; SandboxError (transient or not) when it does not succeed."""
    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=backoff_s),  # backoff_s, x2 each time
        before=lambda _state: limiter.acquire(),
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(create)
    except Exception as exc:
        raise SandboxError(
            f"cannot create a Modal sandbox: {type(exc).__name__}: {exc}", transient=is_transient(exc)
        ) from exc


def _modal_create(kwargs: dict[str, Any]) -> Any:
    """The network edge: the real `modal.Sandbox.create`."""
    import modal  # lazily, as everywhere here (start-up cost)

    return modal.Sandbox.create(**kwargs)


class ModalSandbox(Sandbox):
    kind = "modal"
    isolation = "modal"

    def __init__(self, sb: Any, pool: ModalSandboxPool) -> None:
        self.sb = sb
        self.pool = pool
        self.workdir = pool.workdir

    # ---- paths ---------------------------------------------------------------------------

    def _abs(self, path: str) -> str:
        if not isinstance(path, str) or not path.strip() or "\0" in path:
            raise SandboxPathError(f"invalid path {path!r}")
        root = self.workdir.rstrip("/")
        norm = posixpath.normpath(path if path.startswith("/") else f"{root}/{path}")
        if norm != root and not norm.startswith(root + "/"):
            if path.startswith("/"):
                raise SandboxPathError(
                    f"{path}: absolute paths outside the working directory {root} are not allowed"
                )
            raise SandboxPathError(f"{path}: '..' leads outside the working directory {root}")
        return norm

    def _checked(self, paths: list[str]) -> list[str]:
        """Absolute paths, refused if they (or a symlink on the way) leave the work dir."""
        absolute = [self._abs(p) for p in paths]
        res = self._run_plain(["realpath", "-m", "--", *absolute])
        real = res.splitlines()
        root = self.workdir.rstrip("/")
        for given, r in zip(paths, real, strict=False):
            if r != root and not r.startswith(root + "/"):
                raise SandboxPathError(
                    f"{given}: is a symlink that leads outside the working directory (to {r})"
                )
        return absolute

    def _run_plain(self, argv: list[str]) -> str:
        p = self.sb.exec(*argv, timeout=60, text=True)
        out = p.stdout.read()
        if p.wait() != 0:
            raise SandboxError(f"`{argv[0]}` failed in the Modal sandbox: {p.stderr.read()[:300]}")
        return out

    def wrapper(self, template: str, timeout_s: float) -> str:
        """A command wrapper (`_WRAPPER`, `_CHECK_WRAPPER`) with this pool's limits filled in."""
        lim = self.pool.options.limits
        return template.format(
            mem_kb=lim.memory_mb * 1024,
            fsize_kb=lim.file_size_mb * 1024,
            nproc=lim.processes,
            nofile=lim.open_files,
            timeout=max(1, math.ceil(timeout_s)),
            hard=lim.output_hard_bytes,
        )

    # ---- Sandbox -------------------------------------------------------------------------

    def exec(
        self, command: str, *, timeout_s: float, env: Mapping[str, str] | None = None, cwd: str | None = None
    ) -> ExecResult:
        lim = self.pool.options.limits
        script = self.wrapper(_WRAPPER, timeout_s)
        full_env = {**scrubbed_env(env, path=SANDBOX_PATH), TASK_MARK: "1"}
        t0 = time.monotonic()
        try:
            p = self.sb.exec(
                "bash",
                "-c",
                script,
                "goat",
                command,
                timeout=math.ceil(timeout_s) + 30,
                workdir=self._abs(cwd or "."),
                env=full_env,
                text=False,
            )
            out, err = p.stdout.read(), p.stderr.read()
            code = p.wait()
        except SandboxPathError:
            raise
        except Exception as exc:
            raise SandboxError(f"Modal exec failed: {type(exc).__name__}: {exc}") from exc
        took = time.monotonic() - t0
        total = len(out) + len(err)
        killed = None
        if code == 137 and took >= timeout_s:
            killed = "timeout"
        elif len(out) >= lim.output_hard_bytes or len(err) >= lim.output_hard_bytes:
            killed = "output"
        keep = lim.output_keep_bytes
        return ExecResult(
            exit_code=-9 if killed == "timeout" else code,
            stdout=out[:keep].decode("utf-8", "replace"),
            stderr=err[:keep].decode("utf-8", "replace"),
            duration_s=took,
            killed=killed,
            truncated=total > min(len(out), keep) + min(len(err), keep),
            output_bytes=total,
        )

    def run_check(self, command: str, *, timeout_s: float, plan: CheckPlan) -> CheckRun:
        """The check under sandbox_worker's runner; the seal (made here, per check) goes in on stdin
        and is looked for in what comes out: only the runner's keeper writes it, once the program
        returned normally."""
        spec = parse_python_command(command)
        if spec is None:
            bad = ExecResult(127, "", f"a check must be one Python program: {command}", 0.0)
            return CheckRun(bad, False, ("violation the check is not one Python program",))
        lim = self.pool.options.limits
        script = self.wrapper(_CHECK_WRAPPER, timeout_s)
        payload = {"spec": [*spec[:3], sorted(spec[3])], "check": plan.as_dict(), "seal_fd": 0, "chan_fd": 3}
        seal = secrets.token_hex(SEAL_LEN // 2).encode()
        boundary = f"goat-check-end-{secrets.token_hex(8)}"
        full_env = {**scrubbed_env(None, path=SANDBOX_PATH), TASK_MARK: "1"}
        t0 = time.monotonic()
        try:
            p = self.sb.exec(
                "bash",
                "-c",
                script,
                "goat",
                RUNNER_SOURCE,
                json.dumps(payload),
                boundary,
                timeout=math.ceil(timeout_s) + 30,
                workdir=self.workdir,
                env=full_env,
                text=False,
            )
            p.stdin.write(seal)
            p.stdin.write_eof()
            p.stdin.drain()
            out, err = p.stdout.read(), p.stderr.read()
            code = p.wait()
        except Exception as exc:
            raise SandboxError(f"Modal exec failed: {type(exc).__name__}: {exc}") from exc
        took = time.monotonic() - t0
        channel, sep, program_out = out.partition(f"\n{boundary}\n".encode())
        if not sep:
            channel, program_out = out, b""
        sealed = SEAL_DONE + seal + b"\n" in channel
        killed = "timeout" if code == 137 and took >= timeout_s else None
        if len(program_out) >= lim.output_hard_bytes or len(err) >= lim.output_hard_bytes:
            killed = killed or "output"
        keep = lim.output_keep_bytes
        result = ExecResult(
            exit_code=-9 if killed == "timeout" else code,
            stdout=program_out[:keep].decode("utf-8", "replace"),
            stderr=err[:keep].decode("utf-8", "replace"),
            duration_s=took,
            killed=killed,
            truncated=len(program_out) > keep or len(err) > keep,
            output_bytes=len(program_out) + len(err),
        )
        return CheckRun(result, sealed, tuple(channel_notes(channel.replace(seal, b"<seal>"))))

    def write_files(self, files: Mapping[str, str | bytes]) -> None:
        if not files:
            return
        targets = self._checked(list(files))
        for target, data in zip(targets, files.values(), strict=True):
            payload = data.encode("utf-8") if isinstance(data, str) else data
            try:
                self.sb.filesystem.write_bytes(payload, target)
            except Exception as exc:
                raise _file_error(exc, target) from exc

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes:
        [target] = self._checked([path])
        try:
            return self.sb.filesystem.read_bytes(target)[:limit]
        except Exception as exc:
            raise _file_error(exc, path) from exc

    def walk(self, limit: int = 5000) -> list[Entry]:
        out = self._run_plain(["find", self.workdir, "-mindepth", "1", "-printf", r"%P\t%y\t%s\t%l\n"])
        entries = []
        for line in out.splitlines()[:limit]:
            rel, kind, size, target = [*line.split("\t"), "", "", ""][:4]
            kind = {"f": "file", "d": "dir", "l": "link"}.get(kind, "file")
            entries.append(Entry(rel, kind, int(size or 0) if kind == "file" else 0, target or None))
        return sorted(entries, key=lambda e: e.path)

    def kill_processes(self) -> None:
        # every command ran with TASK_MARK in its environment: kill whatever still carries it
        script = (
            f"for e in /proc/[0-9]*/environ; do grep -qz '^{TASK_MARK}=1$' $e 2>/dev/null && "
            "p=${e#/proc/} && kill -9 ${p%/environ} 2>/dev/null; done; true"
        )
        self._run_plain(["bash", "-c", script])


def _file_error(exc: Exception, path: str) -> Exception:
    name = type(exc).__name__
    if "NotFound" in name or isinstance(exc, FileNotFoundError):
        return SandboxFileError(f"{path}: no such file or directory")
    if "IsADirectory" in name or isinstance(exc, IsADirectoryError):
        return SandboxFileError(f"{path}: is a directory")
    if "Filesystem" in name or isinstance(exc, OSError):
        return SandboxFileError(f"{path}: {exc}")
    return SandboxError(f"Modal filesystem: {name}: {exc}")


class ModalSandboxPool(SandboxPool):
    kind = "modal"
    isolation = "modal"

    def __init__(
        self,
        options: PoolOptions,
        *,
        create: Callable[[dict[str, Any]], Any] = _modal_create,
        app: Any = None,
        image: Any = None,
        workdir: str = WORKDIR,
        limiter: RateLimiter = CREATION_LIMITER,
        retry_backoff_s: float = 1.0,
    ) -> None:
        super().__init__()
        self.options = options
        self.workdir = workdir
        self._create = create
        self._app = app
        # registry tag (None: Debian slim) -> modal.Image; `image` stands for the pool's default
        self._images: dict[str | None, Any] = {options.image: image} if image is not None else {}
        self.limiter = limiter
        self.retry_backoff_s = retry_backoff_s
        self._lock = threading.Lock()
        self._resources()  # fail fast (no credentials, no network) before any task starts

    def _resources(self, image: str | None = None) -> tuple[Any, Any]:
        """The Modal app (looked up once, lazily: this is where the network starts) and the image
        for `image` (a registry tag; None: the pool's default), each built once."""
        with self._lock:
            import modal  # lazily, as everywhere here (start-up cost)

            if self._app is None:
                try:
                    self._app = modal.App.lookup(
                        APP_NAME, environment_name=settings().modal_environment, create_if_missing=True
                    )
                except Exception as exc:
                    raise SandboxError(
                        f"Modal app {APP_NAME!r}: {type(exc).__name__}: {exc}", transient=is_transient(exc)
                    ) from exc
            name = image or self.options.image
            if name not in self._images:
                self._images[name] = (
                    modal.Image.from_registry(name)
                    if name
                    else modal.Image.debian_slim(python_version="3.11")
                )
            return self._app, self._images[name]

    def create_kwargs(self, image: str | None = None) -> dict[str, Any]:
        app, image_obj = self._resources(image)
        lim = self.options.limits
        kwargs: dict[str, Any] = {
            "app": app,
            "image": image_obj,
            "timeout": self.options.lifetime_s,
            "cpu": (lim.cpus, lim.cpus),
            "memory": (lim.memory_mb, lim.memory_mb),
            "block_network": not self.options.network,
            "workdir": self.workdir,
            "secrets": [],
            "tags": {"goat": "task"},
        }
        host = self.options.gateway_host
        if self.options.network and host:  # a command agent: out to the gateway, nowhere else
            try:
                kwargs["outbound_cidr_allowlist"] = [f"{ipaddress.ip_address(host)}/32"]
            except ValueError:
                kwargs["outbound_domain_allowlist"] = [host]
        return kwargs

    @contextmanager
    def session(self, image: str | None = None) -> Iterator[ModalSandbox]:
        kwargs = self.create_kwargs(image)
        sb = create_with_retry(
            lambda: self._create(kwargs), backoff_s=self.retry_backoff_s, limiter=self.limiter
        )
        try:
            box = ModalSandbox(sb, self)
            box._run_plain(["mkdir", "-p", self.workdir])
            yield box
        finally:
            with suppress(Exception):  # the attempt's result does not depend on a clean goodbye
                sb.terminate()


__all__ = ["ModalSandbox", "ModalSandboxPool", "RateLimiter", "create_with_retry", "is_transient"]
