"""Editing models.yaml in place: the pinned revision of a model's weights (`goat models promote` and
`rollback`), through ruamel.yaml's round trip, so every comment, blank line, flow mapping and key
order a person wrote stays as it was and only that one value changes.

The new text is validated as a registry before it replaces the file, the file is replaced
atomically (written aside, then renamed, with its mode kept), and an edit made by someone else
between the read and the write is refused rather than overwritten.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from goat_dagster.atomic import written_aside
from goat_dagster.registry.loading import Problem, RegistryError, parse_registry
from goat_dagster.registry.schema import HFWeights, ModelEntry, Registry


@dataclass(frozen=True)
class RevisionEdit:
    """What `pin_revision` changed: `path`'s entry `key` went from `old` to `new`."""

    path: Path
    key: str
    old: str
    new: str
    registry: Registry  # the file as it is now


def _round_trip() -> YAML:
    yaml = YAML()  # round-trip: comments, order, flow style and quotes are kept
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _refuse(path: Path, message: str) -> RegistryError:
    return RegistryError([Problem(str(path), None, None, None, message)])


def hub_weights(entry: ModelEntry, path: Path | str) -> HFWeights:
    """The entry's `hf` weights, whose revision can be pinned; `RegistryError` for any other source."""
    if not isinstance(entry.weights, HFWeights):
        source = entry.weights.source if entry.weights is not None else "none (served elsewhere)"
        raise _refuse(
            Path(path),
            f"models.{entry.key}.weights: source {source!r} has no revision to pin; promote and rollback "
            "move the `revision` of an `hf` weights source",
        )
    return entry.weights


def pin_revision(path: Path, key: str, revision: str) -> RevisionEdit:
    """Set `models.<key>.weights.revision` in `path` to `revision` (an `hf` weights source).

    Raises `RegistryError` when the file is invalid before or after the edit, the entry has no hub
    revision to pin, or the file changed while it was being edited.
    """
    text = path.read_text(encoding="utf-8")
    entry = parse_registry(text, path).get(key)
    old = hub_weights(entry, path).revision
    yaml = _round_trip()
    doc = yaml.load(text)
    weights = doc["models"][entry.key]["weights"]
    if not isinstance(weights, CommentedMap):  # validated above: a mapping with source hf
        raise _refuse(path, f"models.{entry.key}.weights is not a mapping")
    weights["revision"] = revision
    out = io.StringIO()
    yaml.dump(doc, out)
    after = parse_registry(out.getvalue(), path)  # never write a file that does not validate
    _replace(path, out.getvalue(), expected_sha256=hashlib.sha256(text.encode()).hexdigest())
    return RevisionEdit(path, entry.key, old, revision, after)


def _replace(path: Path, text: str, *, expected_sha256: str) -> None:
    """Write `text` beside `path` and rename it over `path`, unless `path` changed meanwhile."""
    with written_aside(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        if hashlib.sha256(path.read_bytes()).hexdigest() != expected_sha256:
            raise _refuse(path, "the file changed while it was being edited; nothing was written, try again")
