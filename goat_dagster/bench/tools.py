"""The builtin agent's tools — Bash, Read, Write, Edit, Glob, Grep — executed inside the sandbox.

The model only ever sees text: a tool's result, or a tool error it can act on ("Error: ..."):
unknown tool, arguments that are not a JSON object, a missing or mistyped argument, a path that
leaves the work dir (`..`, an absolute path elsewhere, a symlink out: the sandbox refuses those),
an Edit whose old text is not in the file, or of a file Edit cannot rewrite whole and intact
(larger than MAX_READ_BYTES, not UTF-8). A tool problem never ends the agent's run.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from goat_dagster.bench.sandbox import Sandbox, SandboxFileError, SandboxPathError

MAX_READ_BYTES = 256 * 1024


class ToolError(Exception):
    """Shown to the model as the tool's result."""


@dataclass(frozen=True)
class ToolLimits:
    command_timeout_s: float = 60.0
    max_output_chars: int = 8000
    max_matches: int = 200


@dataclass(frozen=True)
class ToolSignature:
    """What the harness's implementation of a tool takes: each argument's JSON Schema type, and which
    arguments it cannot do without. The tools as the model sees them (descriptions, which tools and
    optional arguments it is offered) are a prompt set's `tools.yaml` (prompts.py), checked against
    these."""

    args: dict[str, str]
    required: tuple[str, ...]


TOOL_SIGNATURES: dict[str, ToolSignature] = {
    "Bash": ToolSignature({"command": "string"}, ("command",)),
    "Read": ToolSignature({"path": "string", "offset": "integer", "limit": "integer"}, ("path",)),
    "Write": ToolSignature({"path": "string", "content": "string"}, ("path", "content")),
    "Edit": ToolSignature(
        {"path": "string", "old_string": "string", "new_string": "string", "replace_all": "boolean"},
        ("path", "old_string", "new_string"),
    ),
    "Glob": ToolSignature({"pattern": "string"}, ("pattern",)),
    "Grep": ToolSignature({"pattern": "string", "path": "string", "glob": "string"}, ("pattern",)),
}
TOOL_NAMES = tuple(TOOL_SIGNATURES)
_TYPES = {"string": str, "integer": int, "boolean": bool}


def parse_arguments(
    name: str, raw: Any, offered: Mapping[str, Collection[str]] | None = None
) -> dict[str, Any]:
    """The call's arguments checked against the tool (a ToolError the model can read otherwise).

    `offered`: the tools the model was given and the arguments each was shown (None: every tool,
    every argument); a tool or argument it was not offered is refused like an unknown one.
    """
    offered = offered if offered is not None else {n: tuple(s.args) for n, s in TOOL_SIGNATURES.items()}
    if name not in offered or name not in TOOL_SIGNATURES:
        raise ToolError(f"unknown tool {name!r}; the tools are {', '.join(offered)}")
    if isinstance(raw, dict):
        args = raw
    else:
        try:
            args = json.loads(raw or "{}")
        except (TypeError, ValueError) as exc:
            raise ToolError(
                f"the arguments of {name} must be a JSON object; could not parse them: {exc}"
            ) from None
    if not isinstance(args, dict):
        raise ToolError(f"the arguments of {name} must be a JSON object, got {type(args).__name__}")
    signature, shown = TOOL_SIGNATURES[name], offered[name]
    missing = [k for k in signature.required if k not in args]
    if missing:
        raise ToolError(f"{name} needs the argument(s) {', '.join(missing)}")
    for key, value in args.items():
        if key not in shown:
            raise ToolError(f"{name} has no argument {key!r}; it takes {', '.join(shown)}")
        kind = signature.args[key]
        want = _TYPES[kind]
        if want is int and isinstance(value, str) and value.strip().lstrip("-").isdigit():
            args[key] = value = int(value)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ToolError(f"{name}: argument {key!r} must be a {kind}")
    return args


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit} characters cut] ...\n{text[-half:]}"


def _rel(sb: Sandbox, path: str) -> str:
    """A glob/grep scope as a path relative to the work dir (file ops check paths in the sandbox)."""
    p = path.strip() or "."
    if p.startswith("/"):
        norm = posixpath.normpath(p)
        if norm != sb.workdir and not norm.startswith(sb.workdir.rstrip("/") + "/"):
            raise ToolError(
                f"{path}: absolute paths outside the working directory {sb.workdir} are not allowed"
            )
        p = posixpath.relpath(norm, sb.workdir)
    norm = posixpath.normpath(p)
    if norm == ".." or norm.startswith("../"):
        raise ToolError(f"{path}: '..' leads outside the working directory {sb.workdir}")
    return norm


def glob_regex(pattern: str) -> re.Pattern[str]:
    """`**` spans directories, `*` and `?` stay within one, `[...]` is a character class."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and "]" in pattern[i + 1 :]:
            j = pattern.index("]", i + 1)
            body = pattern[i + 1 : j]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


class Tools:
    """The tools bound to one sandbox."""

    def __init__(
        self,
        sandbox: Sandbox,
        limits: ToolLimits | None = None,
        offered: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        self.sb = sandbox
        self.limits = limits or ToolLimits()
        self.offered = offered  # the tools (and their arguments) the model was shown; None: all

    def call(self, name: str, raw_args: Any, *, time_left_s: float | None = None) -> tuple[str, bool]:
        """(text for the model, ok). Never raises for anything the model did."""
        try:
            args = parse_arguments(name, raw_args, self.offered)
            method = getattr(self, name.lower())
            if name == "Bash":
                return method(**args, time_left_s=time_left_s), True
            return method(**args), True
        except ToolError as exc:
            return f"Error: {exc}", False
        except SandboxPathError as exc:
            return f"Error: {exc}", False
        except SandboxFileError as exc:
            return f"Error: {exc}", False

    # ---- the tools -------------------------------------------------------------------------

    def bash(self, command: str, time_left_s: float | None = None) -> str:
        if not command.strip():
            raise ToolError("Bash needs a non-empty command")
        timeout = self.limits.command_timeout_s
        if time_left_s is not None:
            timeout = max(1.0, min(timeout, time_left_s))
        res = self.sb.exec(command, timeout_s=timeout)
        head = f"exit code {res.exit_code}"
        if res.killed == "timeout":
            head = f"killed: the command ran longer than {timeout:.0f}s"
        elif res.killed:
            head = f"killed ({res.killed}), exit code {res.exit_code}"
        body = res.stdout + (("\n[stderr]\n" + res.stderr) if res.stderr else "")
        if res.truncated:
            body += "\n[output truncated]"
        return _clip(f"{head}\n{body}".rstrip(), self.limits.max_output_chars)

    def read(self, path: str, offset: int | None = None, limit: int | None = None) -> str:
        data = self.sb.read_file(path, limit=MAX_READ_BYTES)
        if b"\0" in data[:8192]:
            raise ToolError(f"{path}: is a binary file")
        text = data.decode("utf-8", "replace")
        if offset or limit:
            lines = text.splitlines(keepends=True)
            start = max(1, offset or 1) - 1
            text = "".join(lines[start : start + limit if limit else None])
        return _clip(text, self.limits.max_output_chars) if text else "(empty file)"

    def write(self, path: str, content: str) -> str:
        self.sb.write_files({path: content})
        return f"wrote {len(content.encode())} bytes to {path}"

    def edit(self, path: str, old_string: str, new_string: str, replace_all: bool = False) -> str:
        if not old_string:
            raise ToolError("old_string must not be empty (use Write to create a file)")
        data = self.sb.read_file(path, limit=MAX_READ_BYTES + 1)
        if len(data) > MAX_READ_BYTES:  # Edit rewrites the whole file: it must have all of it
            raise ToolError(
                f"{path} is larger than {MAX_READ_BYTES // 1024} KiB, too large for Edit; "
                "change it with a Bash command (e.g. python or sed)"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ToolError(
                f"{path} is not UTF-8 text (byte {exc.start}), so Edit cannot change it without "
                "damaging it; use a Bash command"
            ) from None
        count = text.count(old_string)
        if count == 0:
            raise ToolError(f"old_string was not found in {path}")
        if count > 1 and not replace_all:
            raise ToolError(
                f"old_string occurs {count} times in {path}; give more context or set replace_all"
            )
        self.sb.write_files({path: text.replace(old_string, new_string, -1 if replace_all else 1)})
        return f"replaced {count if replace_all else 1} occurrence(s) in {path}"

    def glob(self, pattern: str) -> str:
        rx = glob_regex(_rel(self.sb, pattern) if pattern.startswith("/") else pattern)
        hits = [e.path for e in self.sb.walk() if e.kind in ("file", "link") and rx.match(e.path)]
        if not hits:
            return "no files match"
        return _clip("\n".join(hits[: self.limits.max_matches]), self.limits.max_output_chars)

    def grep(self, pattern: str, path: str = ".", glob: str | None = None) -> str:
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"invalid regular expression {pattern!r}: {exc}") from None
        scope = _rel(self.sb, path)
        only = glob_regex(glob) if glob else None
        files = [
            e.path
            for e in self.sb.walk()
            if e.kind == "file"
            and (scope == "." or e.path == scope or e.path.startswith(scope + "/"))
            and (only is None or only.match(e.path) or only.match(posixpath.basename(e.path)))
        ]
        out: list[str] = []
        for f in files:
            data = self.sb.read_file(f, limit=MAX_READ_BYTES)
            if b"\0" in data[:8192]:
                continue
            for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
                if rx.search(line):
                    out.append(f"{f}:{n}: {line[:300]}")
                    if len(out) >= self.limits.max_matches:
                        break
            if len(out) >= self.limits.max_matches:
                break
        return _clip("\n".join(out), self.limits.max_output_chars) if out else "no matches"
