"""What of the host a `command:` agent sees in a local sandbox: only what it needs to run.

- The executable or script files its command names by absolute path (`/opt/goat-eval/goat-eval`,
  `python /srv/agents/run.py`): regular files that are executable, start with `#!`, or have a
  script suffix. Any other word of the command — `/` in `ls -la /`, a directory, a data file —
  is an argument, not a mount: inside the sandbox it means the sandbox's own file.
- The paths given explicitly (`goat run --mount PATH`, the `mounts` of the asset's run config): a
  script's package directory, a tool's data.

All of it is mounted read-only at the path the command uses. Refused, with the reason: `/`, a
top-level directory (`/etc`, `/home`, `/usr`, ...), a home directory, anything holding
credentials (`~/.ssh`, `~/.aws`, ...), `$GOAT_HOME` (the proxy's master key, every run's journal)
or a directory that holds it or the project checkout (its `.env`), and the sandbox's own places.
"""

from __future__ import annotations

import os
import pwd
import shlex
import stat
from collections.abc import Iterable
from pathlib import Path

from goat_dagster import config
from goat_dagster.bench.journal import RunError

SCRIPT_SUFFIXES = {".py", ".sh", ".bash", ".js", ".mjs", ".cjs", ".ts", ".rb", ".pl", ".php", ".lua"}
# where a home keeps credentials: never shown to a sandbox, whoever's home it is
CREDENTIALS = (
    ".ssh", ".aws", ".gnupg", ".config", ".docker", ".kube", ".azure", ".netrc", ".modal.toml",
    ".git-credentials", ".pypirc", ".npmrc", ".cache/huggingface",
)  # fmt: skip
# what the sandbox itself puts there (bwrap.py), and the kernel's file systems
SANDBOX_OWN = ("/workspace", "/opt/goat", "/run/goat", "/proc", "/sys", "/dev")


class MountError(RunError):
    """A path an agent asked to see in its sandbox is refused; the message says which and why."""


def _inside(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def _homes() -> set[Path]:
    homes = {Path.home().resolve()}
    for entry in pwd.getpwall():
        if entry.pw_dir and entry.pw_dir != "/" and Path(entry.pw_dir).is_absolute():
            homes.add(Path(entry.pw_dir).resolve())
    return homes


def refusal(path: Path) -> str | None:
    """Why `path` (absolute, symlinks resolved) must not be shown to a sandbox; None if it may."""
    if path == Path("/"):
        return "the whole file system"
    homes = _homes()
    if path in homes:
        return "a home directory"
    if path.is_dir() and path.parent == Path("/"):
        return "a top-level directory"
    home = config.goat_home()
    if _inside(path, home):
        return f"inside $GOAT_HOME ({home}: the proxy's master key, every run's journal)"
    for place in SANDBOX_OWN:
        if _inside(path, Path(place)):
            return f"{place} is the sandbox's own"
    for h in homes:
        for name in CREDENTIALS:
            if _inside(path, h / name):
                return f"credentials ({h / name})"
    if path.is_dir():
        for held, what in ((home, "$GOAT_HOME"), (config.project_dir(), "the project checkout and its .env")):
            if _inside(held.resolve(), path):
                return f"it holds {what} ({held})"
    return None


def checked(named: str, why: str) -> str:
    """`named` (an absolute path), refused with a message naming it, else as named."""
    if not os.path.isabs(named):
        raise MountError(f"{why} {named!r}: give an absolute path")
    real = Path(named).resolve()
    if not real.exists():
        raise MountError(f"{why} {named!r}: no such file or directory")
    for p in {real, Path(os.path.abspath(named))}:
        reason = refusal(p)
        if reason is not None:
            raise MountError(
                f"{why} {named!r}: refused, {reason}. Mount only what the agent needs: its executable "
                "or script, or the one directory it lives in (--mount PATH)"
            )
    return os.path.abspath(named)


def is_program(path: Path) -> bool:
    """A regular file something would run: executable, a `#!` script, or named like a script."""
    try:
        st = path.stat()
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    if st.st_mode & 0o111 or path.suffix in SCRIPT_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            return fh.read(2) == b"#!"
    except OSError:
        return False


def command_files(command: str) -> list[str]:
    """The executable and script files `command` names by absolute path (checked); not /usr's,
    which every sandbox sees already."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    out: list[str] = []
    for w in words:
        if not w.startswith("/") or w.startswith("/usr/") or not is_program(Path(w)):
            continue
        path = checked(w, "the agent's command names")
        if path not in out:
            out.append(path)
    return out


def sandbox_mounts(command_paths: Iterable[str], explicit: Iterable[str]) -> tuple[str, ...]:
    """Everything a run's local sandboxes show read-only: the agent's files and `--mount` paths."""
    out: list[str] = list(command_paths)
    for p in explicit:
        path = checked(os.path.expanduser(p), "--mount")
        if path not in out:
            out.append(path)
    return tuple(out)
