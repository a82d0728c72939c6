"""YAML loading that remembers line numbers and refuses duplicate keys.

PyYAML silently keeps the last of two equal mapping keys; for a registry or a suite that hides a
mistake, so here a duplicate is an error naming both lines. Every mapping comes back as a
`LineDict`, a plain dict that also knows the line of each of its keys, so validation errors can
point at the line a person has to edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


class LineDict(dict):
    """A dict from YAML that remembers where it and each of its keys were."""

    line: int = 0
    key_lines: dict[Any, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines = {}


class YamlProblem(Exception):
    """A YAML file that cannot be read: syntax error, duplicate key, wrong top-level type."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {message}")


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


class _LineLoader(yaml.SafeLoader):
    pass


# The same loader over libyaml's parser (about six times faster: models.yaml in 3 ms, not 18), first;
# a document it refuses is parsed again by the pure-Python one, whose messages and marks are the
# ones reported (a file that one accepts and libyaml does not is thus read all the same).
_FastLineLoader = type("_FastLineLoader", (getattr(yaml, "CSafeLoader", _LineLoader),), {})


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in out:
            raise _DuplicateKey(
                problem=f"duplicate key {key!r} (first defined on line {out.key_lines[key]})",
                problem_mark=key_node.start_mark,
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


for _loader in (_LineLoader, _FastLineLoader):
    _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path | str, text: str | None = None) -> Any:
    """Parse YAML (from `text`, or read from `path`), raising `YamlProblem` with file and line."""
    path = Path(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise YamlProblem(path, None, "file not found") from None
        except OSError as exc:
            raise YamlProblem(path, None, f"cannot read: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_FastLineLoader)
    except yaml.YAMLError:
        pass  # said again below, in the pure-Python parser's words
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or str(exc)
        if exc.context and not isinstance(exc, _DuplicateKey):
            what = f"{exc.context}: {what}"
        raise YamlProblem(path, line, f"invalid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(path, None, f"invalid YAML: {exc}") from None


def line_of(data: Any, loc: Sequence[Any]) -> int | None:
    """The line of the deepest key along `loc` that exists in `data` (a LineDict tree), or None
    when not even the first key exists (the caller knows the enclosing line)."""
    line: int | None = None
    node = data
    for part in loc:
        if isinstance(node, LineDict) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            line = getattr(node, "line", None) or line
        else:
            break
    return line
