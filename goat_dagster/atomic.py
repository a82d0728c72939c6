"""Files replaced atomically: written aside, then renamed over the target.

Every file goat writes that another process may read meanwhile (a lake's Parquet file, a record of a
served endpoint or a daemon, the LiteLLM config, caches under `$GOAT_HOME`, a run's manifest) is
written through `written_aside`: a reader sees the old file or the new one, never half of one. The
file aside has a name of its own per process and call, so two writers of the same target never share
one (the last rename wins, each complete); it is hidden and ends in `.tmp` unless told otherwise, so a
lake's `*.parquet` glob never lists it; it is removed when the write or a check before the rename
fails, and the target is then left as it was.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def written_aside(target: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A path beside `target` to write the new file to; renamed over `target` when the block ends
    without an exception, removed either way. `suffix`: the end of its name (a tool that infers the
    format from it, or a check that reads it, may need the target's own)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(target: Path, text: str) -> Path:
    """`text` (UTF-8) as the file `target`, replaced atomically."""
    with written_aside(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target
