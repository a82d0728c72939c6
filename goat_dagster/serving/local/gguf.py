"""What a GGUF file says about itself: architecture, size, quantization, context and the shapes the
KV cache is sized from. Read with the `gguf` package (llama.cpp's own reader).

Reading parses the whole header (the tokenizer vocabulary included): 1-4 s for a 50k-token vocab,
so results are cached per (path, size, mtime): in memory and in `$GOAT_HOME/models/gguf-info.json`
(the `model_weights` asset fills it; the control plane's first load then skips the parse).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from goat_dagster import atomic, config


class GGUFError(ValueError):
    """The file is not a readable GGUF (names the file)."""


@dataclass(frozen=True)
class GGUFInfo:
    path: str
    file_bytes: int
    architecture: str
    name: str | None
    size_label: str | None
    parameter_count: int
    quantization: str
    context_length: int | None
    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    key_length: int
    value_length: int
    vocab_size: int
    has_chat_template: bool

    def kv_bytes_per_token(self, bytes_per_element: float = 2.0) -> float:
        """KV cache bytes one token of context costs (f16 K and V by default)."""
        return (
            self.block_count * self.head_count_kv * (self.key_length + self.value_length) * bytes_per_element
        )

    def as_metadata(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("path")
        return out


def _value(reader: Any, key: str) -> Any:
    field = reader.get_field(key)
    if field is None:
        return None
    try:
        return field.contents()
    except Exception:  # an odd type we do not need; treat as absent
        return None


def _int(value: Any, default: int = 0) -> int:
    """An integer from a scalar or a per-layer array (then the largest, which sizes the cache)."""
    if value is None:
        return default
    if isinstance(value, list):
        return int(max(value)) if value else default
    return int(value)


def _quantization(reader: Any) -> str:
    import gguf  # lazily, as in _parse

    file_type = _value(reader, gguf.Keys.General.FILE_TYPE)
    if file_type is not None:
        try:
            return gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            return f"file_type_{file_type}"
    # No file_type key: name the most common tensor type, weighted by elements.
    counts: dict[str, int] = {}
    for t in reader.tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + int(t.n_elements)
    return max(counts, key=counts.__getitem__) if counts else "unknown"


def read_gguf_info(path: Path | str) -> GGUFInfo:
    """Metadata of one GGUF file (cached while the file is unchanged)."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise GGUFError(f"{p}: file not found") from None
    return _read_cached(str(p), st.st_size, st.st_mtime_ns)


def _disk_cache_file() -> Path:
    return config.paths().models / "gguf-info.json"


def _disk_cache() -> dict[str, Any]:
    try:
        data = json.loads(_disk_cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


@lru_cache(maxsize=32)
def _read_cached(path: str, size: int, mtime_ns: int) -> GGUFInfo:
    stamp = f"{size}:{mtime_ns}"
    hit = _disk_cache().get(path)
    if isinstance(hit, dict) and hit.get("stamp") == stamp:
        with contextlib.suppress(TypeError):
            return GGUFInfo(**hit["info"])
    info = _parse(path)
    cache = _disk_cache()
    cache[path] = {"stamp": stamp, "info": asdict(info)}
    with contextlib.suppress(OSError):
        atomic.write_text(_disk_cache_file(), json.dumps(cache, indent=1, sort_keys=True))
    return info


def _parse(path: str) -> GGUFInfo:
    # imported here, not at the top: gguf brings numpy (~0.5 s of import) into every process that
    # imports the serving code (each Dagster run worker loading the code location), and only a parse
    # of a file not in the cache needs it
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:
        raise GGUFError(f"{path}: not a readable GGUF file ({type(exc).__name__}: {exc})") from None
    arch = _value(reader, gguf.Keys.General.ARCHITECTURE)
    if not arch:
        raise GGUFError(f"{path}: GGUF header has no general.architecture")

    def arch_key(template: str) -> Any:
        return _value(reader, template.format(arch=arch))

    n_embd = _int(arch_key(gguf.Keys.LLM.EMBEDDING_LENGTH))
    n_head = _int(arch_key(gguf.Keys.Attention.HEAD_COUNT), 1) or 1
    n_head_kv = _int(arch_key(gguf.Keys.Attention.HEAD_COUNT_KV), n_head) or n_head
    head_dim = n_embd // n_head if n_embd else 0
    vocab = _int(arch_key(gguf.Keys.LLM.VOCAB_SIZE))
    if not vocab:
        tokens = reader.get_field(gguf.Keys.Tokenizer.LIST)
        vocab = len(tokens.data) if tokens is not None else 0
    param_count = _value(reader, "general.parameter_count")
    if param_count is None:
        param_count = sum(int(t.n_elements) for t in reader.tensors)
    ctx = arch_key(gguf.Keys.LLM.CONTEXT_LENGTH)
    return GGUFInfo(
        path=path,
        file_bytes=os.path.getsize(path),
        architecture=str(arch),
        name=_value(reader, gguf.Keys.General.NAME),
        size_label=_value(reader, "general.size_label"),
        parameter_count=int(param_count),
        quantization=_quantization(reader),
        context_length=_int(ctx) if ctx is not None else None,
        block_count=_int(arch_key(gguf.Keys.LLM.BLOCK_COUNT)),
        embedding_length=n_embd,
        head_count=n_head,
        head_count_kv=n_head_kv,
        key_length=_int(arch_key(gguf.Keys.Attention.KEY_LENGTH), head_dim),
        value_length=_int(arch_key(gguf.Keys.Attention.VALUE_LENGTH), head_dim),
        vocab_size=vocab,
        has_chat_template=reader.get_field(gguf.Keys.Tokenizer.CHAT_TEMPLATE) is not None,
    )
