"""`goat serve --models-dir DIR`: every GGUF in a folder served without a registry entry (seed 003's
`--models-dir`). Each file becomes a local model named after it (`tinyllama-q4.gguf` ->
`tinyllama-q4`; a split model by its first shard, `-00001-of-0000N` left out of the name), with
llama.cpp's defaults: the chat template in the GGUF, 4096 tokens of context.

The folder is looked at again when its content changes (a GGUF copied in is served on the next
request). A registry model of the same name wins: models.yaml says more about a model than a file
name does. These models are `goat serve`'s alone: the LiteLLM proxy routes registry models only
(give a GGUF a `weights: {source: path}` entry to benchmark it).
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from goat_dagster.registry import ModelEntry, PathWeights, slugify

log = logging.getLogger("goat.serve")
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})$", re.IGNORECASE)
TAG = "models-dir"


def model_name(gguf: Path) -> str | None:
    """The model name of a GGUF file, or None for a shard other than the first."""
    stem = gguf.name[: -len(".gguf")]
    shard = _SHARD.search(stem)
    if shard:
        if int(shard.group(1)) != 1:
            return None
        stem = stem[: shard.start()]
    return slugify(stem) or None


def scan_models_dir(directory: Path) -> list[ModelEntry]:
    """A local model entry per GGUF under `directory` (hidden files and folders skipped); a name
    found twice is told apart by its folder (`sub-dir-model`)."""
    found: dict[str, ModelEntry] = {}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts) or not path.name.lower().endswith(".gguf"):
            continue
        if not path.is_file():
            continue
        name = model_name(path)
        if name is None:
            continue
        if name in found:
            name = slugify("-".join([*rel.parent.parts, name]))
        found[name] = ModelEntry(
            key=name,
            provider="local",
            engine="llama.cpp",
            description=f"{rel} in {directory} (goat serve --models-dir)",
            weights=PathWeights(source="path", path=str(path.resolve())),
            tags=[TAG],
        )
    return list(found.values())


class ModelsDir:
    """The GGUFs of one folder, scanned again at most every `ttl_s` seconds."""

    def __init__(self, directory: Path | str, ttl_s: float = 2.0) -> None:
        self.directory = Path(directory).expanduser().resolve()
        if not self.directory.is_dir():
            raise FileNotFoundError(f"--models-dir {directory}: not a directory")
        self.ttl_s = ttl_s
        self._entries: list[ModelEntry] = []
        self._scanned = float("-inf")

    def entries(self) -> list[ModelEntry]:
        now = time.monotonic()
        if now - self._scanned >= self.ttl_s:
            before = {e.key for e in self._entries}
            try:
                self._entries = scan_models_dir(self.directory)
            except OSError as exc:  # the folder went away: serve what was found, say why
                log.warning("--models-dir %s: %s", self.directory, exc)
            self._scanned = now
            added = sorted({e.key for e in self._entries} - before)
            if added:
                log.info("--models-dir %s: serving %s", self.directory, ", ".join(added))
        return self._entries
