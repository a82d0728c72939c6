"""The builtin agent's prompts as versioned files. A *prompt set* is a directory holding:

- `system.md`: the system prompt; `{{workdir}}` is the sandbox's working directory (required);
- `task.md`: the first user message; `{{instruction}}` is the task's instruction (required),
  `{{files}}` the files the task starts with, `{{workdir}}` as above;
- `tools.yaml`: the tools as the model sees them (OpenAI function schemas), checked against what the
  harness implements (`tools.TOOL_SIGNATURES`): descriptions are free, a tool or an optional
  argument may be left out, names and types are the harness's.

`load_prompt_set(name_or_path)` reads and validates one: a name is a directory under
`GOAT_PROMPTS_DIR` (`./prompts`; `builtin` is the default, `GOAT_PROMPTS`), anything else a path to
a directory. A file that cannot be used raises `PromptError` naming the file, the line where there
is one, and the problem. A template is the file's text as written, less the newlines that end the
file.

`PromptSet.sha256` is the content hash of what the model is shown — the two templates' text and the
tools as JSON (comments and layout of tools.yaml do not count): the prompt part of a run's manifest
(manifest.py), the data version of the `agent_prompts` asset and what `agent_prompts_sensor` watches.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, SchemaError

from goat_dagster import config
from goat_dagster.bench.tools import TOOL_SIGNATURES
from goat_dagster.yaml_lines import LineDict, YamlProblem, load_yaml

SYSTEM, TASK, TOOLS = "system.md", "task.md", "tools.yaml"
PROMPT_FILES = (SYSTEM, TASK, TOOLS)
# placeholders each template may use, and those it must
TEMPLATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    SYSTEM: (("workdir",), ("workdir",)),
    TASK: (("instruction", "files", "workdir"), ("instruction",)),
}
_PLACEHOLDER = re.compile(r"\{\{([^{}\n]*)\}\}")
_NAME = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*$")
_TOOL_KEYS = ("name", "description", "parameters")


class PromptError(ValueError):
    """A prompt set that cannot be used; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class PromptSet:
    """A validated prompt set (see the module docstring)."""

    name: str
    path: Path
    system: str
    task: str
    tools: tuple[dict[str, Any], ...]  # OpenAI `tools` entries: {"type": "function", "function": {...}}
    sha256: str

    def system_prompt(self, *, workdir: str) -> str:
        return _render(self.system, {"workdir": workdir})

    def task_prompt(self, *, instruction: str, files: str, workdir: str) -> str:
        return _render(self.task, {"instruction": instruction, "files": files, "workdir": workdir})

    @property
    def tool_schemas(self) -> list[dict[str, Any]]:
        """The `tools` of a chat-completion request."""
        return [json.loads(json.dumps(t)) for t in self.tools]

    @property
    def offered(self) -> dict[str, tuple[str, ...]]:
        """Tool name -> the arguments the model is shown (what a call may use)."""
        return {
            t["function"]["name"]: tuple(t["function"]["parameters"].get("properties", {}))
            for t in self.tools
        }

    def table(self) -> list[dict[str, Any]]:
        """One row per tool, for the asset's metadata."""
        return [
            {
                "tool": t["function"]["name"],
                "arguments": ", ".join(
                    a + ("*" if a in t["function"]["parameters"].get("required", []) else "")
                    for a in t["function"]["parameters"].get("properties", {})
                ),
                "description": t["function"]["description"],
            }
            for t in self.tools
        ]


def _render(template: str, values: Mapping[str, str]) -> str:
    """Each `{{name}}` replaced by its value, in one pass (a value is never scanned for more)."""
    return _PLACEHOLDER.sub(lambda m: values[_NAME.match(m.group(1)).group(1)], template)  # type: ignore[union-attr]


def content_hash(system: str, task: str, tools: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> str:
    doc = {"system": system, "task": task, "tools": list(tools)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ---- finding and reading ---------------------------------------------------------------------------


def prompt_set_dir(name_or_path: str | None = None) -> tuple[str, Path]:
    """(name, directory) of a prompt set: a name under GOAT_PROMPTS_DIR, or a path (None: GOAT_PROMPTS)."""
    given = name_or_path if name_or_path is not None else config.settings().prompts
    candidate = Path(given).expanduser()
    if "/" in given or given.startswith(".") or candidate.is_absolute():
        return str(candidate.resolve()), candidate.resolve()
    return given, config.prompts_dir() / given


def available_prompt_sets() -> list[str]:
    d = config.prompts_dir()
    return sorted(p.name for p in d.iterdir() if p.is_dir() and (p / SYSTEM).exists()) if d.is_dir() else []


def load_prompt_set(name_or_path: str | None = None) -> PromptSet:
    """Read and validate a prompt set (None: GOAT_PROMPTS, `builtin` unless set)."""
    name, path = prompt_set_dir(name_or_path)
    if not path.is_dir():
        known = ", ".join(available_prompt_sets()) or "none"
        raise PromptError(
            f"{path}: no prompt set {name!r} there (a directory with {', '.join(PROMPT_FILES)}; "
            f"prompt sets in {config.prompts_dir()}: {known})"
        )
    system = _template(path / SYSTEM)
    task = _template(path / TASK)
    tools = _tools(path / TOOLS)
    return PromptSet(
        name=name,
        path=path,
        system=system,
        task=task,
        tools=tuple(tools),
        sha256=content_hash(system, task, tools),
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptError(
            f"{path}: missing (a prompt set is a directory with {', '.join(PROMPT_FILES)})"
        ) from None
    except UnicodeDecodeError as exc:
        raise PromptError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise PromptError(f"{path}: cannot read: {exc.strerror}") from None


def _template(path: Path) -> str:
    """A template file's text, its placeholders checked."""
    text = _read(path).rstrip("\n")
    if not text.strip():
        raise PromptError(f"{path}: is empty")
    allowed, required = TEMPLATES[path.name]
    known = ", ".join("{{" + n + "}}" for n in allowed)
    found: set[str] = set()
    for m in _PLACEHOLDER.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        name = _NAME.match(m.group(1))
        if name is None or name.group(1) not in allowed:
            raise PromptError(
                f"{path}:{line}: unknown placeholder {m.group(0)!r}; {path.name} may use {known}"
            )
        found.add(name.group(1))
    spans = [m.span() for m in _PLACEHOLDER.finditer(text)]
    for stray in re.finditer(r"\{\{|\}\}", text):
        if not any(a <= stray.start() < b for a, b in spans):
            line = text.count("\n", 0, stray.start()) + 1
            raise PromptError(
                f"{path}:{line}: {stray.group(0)!r} without its pair; placeholders are written {known}"
            )
    for name in required:
        if name not in found:
            raise PromptError(f"{path}: the placeholder {{{{{name}}}}} is missing; {path.name} must use it")
    return text


def _tools(path: Path) -> list[dict[str, Any]]:
    """tools.yaml as OpenAI `tools` entries, checked against the harness's tools."""
    try:
        data = load_yaml(path, _read(path))
    except YamlProblem as exc:
        raise PromptError(str(exc)) from None
    if not isinstance(data, LineDict) or set(data) != {"tools"}:
        raise PromptError(f"{path}: expected one key, `tools:`, holding a list of tools")
    items = data["tools"]
    if not isinstance(items, list) or not items:
        raise PromptError(f"{path}:{data.key_lines['tools']}: tools: expected a non-empty list of tools")
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        where = f"{path}:{getattr(item, 'line', data.key_lines['tools'])}: tools[{i}]"
        tool = _tool(item, where, seen)
        seen[tool["name"]] = getattr(item, "line", 0)
        out.append({"type": "function", "function": tool})
    return out


def _tool(item: Any, where: str, seen: dict[str, int]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise PromptError(f"{where}: expected a mapping with {', '.join(_TOOL_KEYS)}")
    unknown = sorted(set(item) - set(_TOOL_KEYS))
    missing = [k for k in _TOOL_KEYS if k not in item]
    if unknown or missing:
        what = f"unknown key(s) {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
        raise PromptError(f"{where}: {what}; a tool has {', '.join(_TOOL_KEYS)}")
    name = item["name"]
    if name not in TOOL_SIGNATURES:
        raise PromptError(
            f"{where}: unknown tool {name!r}; the harness implements {', '.join(TOOL_SIGNATURES)}"
        )
    where = f"{where} ({name})"
    if name in seen:
        raise PromptError(f"{where}: {name} is listed twice (first on line {seen[name]})")
    if not isinstance(item["description"], str) or not item["description"].strip():
        raise PromptError(f"{where}: description: expected non-empty text")
    params = json.loads(json.dumps(item["parameters"]))  # plain dicts (a LineDict is one, with lines)
    _check_parameters(params, name, where)
    return {"name": name, "description": item["description"].strip(), "parameters": params}


def _check_parameters(params: Any, name: str, where: str) -> None:
    """`parameters` is a JSON Schema of an object whose properties are the harness's arguments."""
    if not isinstance(params, dict):
        raise PromptError(f"{where}: parameters: expected a JSON Schema (a mapping)")
    try:
        Draft202012Validator.check_schema(params)
    except SchemaError as exc:
        at = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise PromptError(f"{where}: parameters is not a valid JSON Schema at {at}: {exc.message}") from None
    signature = TOOL_SIGNATURES[name]
    if params.get("type") != "object" or not isinstance(params.get("properties", {}), dict):
        raise PromptError(f"{where}: parameters: expected `type: object` with `properties`")
    for arg, schema in params.get("properties", {}).items():
        if arg not in signature.args:
            raise PromptError(
                f"{where}: parameters.properties.{arg}: {name} has no argument {arg!r} "
                f"(it takes {', '.join(signature.args)})"
            )
        if not isinstance(schema, dict) or schema.get("type") != signature.args[arg]:
            raise PromptError(
                f"{where}: parameters.properties.{arg}: must be `type: {signature.args[arg]}` "
                f"(what {name} takes)"
            )
    required = params.get("required", [])
    shown = set(params.get("properties", {}))
    for arg in signature.required:
        if arg not in shown or arg not in required:
            raise PromptError(
                f"{where}: parameters: {arg!r} must be a property and `required` "
                f"({name} cannot run without it)"
            )
    for arg in required:
        if arg not in shown:
            raise PromptError(f"{where}: parameters.required names {arg!r}, which is not a property")
