"""Weights from the Hugging Face hub: a repo at a revision, fetched with `snapshot_download` into the
hub cache layout under `$GOAT_HOME/models/hf` (only the files matching `weights.files`).

A pinned revision (a 40-hex commit) is looked up in the cache first with no network at all; only if
the files are missing is the hub asked. A branch or tag is resolved online (the hub falls back to the
cached ref when it cannot be reached). `HF_HUB_OFFLINE=1` and an unreachable hub give an error that
says what was looked for and where.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import filter_repo_objects

from goat_dagster.registry import HFWeights
from goat_dagster.serving.backend import ServingError


class HubError(ServingError):
    """The hub files could not be found or fetched (message says which, where, and what to do)."""


@dataclass(frozen=True)
class HubSnapshot:
    folder: Path
    commit: str
    files: list[Path]
    fetched_from: str  # "cache" | "hub"


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it only once, at import)."""
    env = os.environ.get("HF_HUB_OFFLINE")
    if env is not None:
        return env.strip().upper() in {"1", "ON", "YES", "TRUE"}
    return bool(constants.HF_HUB_OFFLINE)


def _matching_files(folder: Path, patterns: list[str]) -> list[Path]:
    rel = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    keep = list(filter_repo_objects(rel, allow_patterns=patterns))
    return [folder / r for r in keep if (folder / r).exists()]


def fetch_snapshot(
    weights: HFWeights,
    cache_dir: Path,
    *,
    download: bool = True,
    log: Callable[[str], None] | None = None,
) -> HubSnapshot:
    """Locate (and, if allowed, download) the files of `weights` into `cache_dir`."""
    say = log or (lambda _m: None)
    where = f"{weights.repo}@{weights.revision} (files {', '.join(weights.files)})"
    kwargs = {
        "repo_id": weights.repo,
        "revision": weights.revision,
        "cache_dir": str(cache_dir),
        "allow_patterns": list(weights.files),
        "endpoint": os.environ.get("HF_ENDPOINT") or None,
    }

    def done(folder: str, fetched_from: str) -> HubSnapshot | None:
        path = Path(folder)
        files = _matching_files(path, weights.files)
        if not files:
            return None
        return HubSnapshot(path, path.name, files, fetched_from)

    offline = hub_offline()
    if weights.pinned or offline or not download:
        try:
            snap = done(snapshot_download(**kwargs, local_files_only=True), "cache")
        except LocalEntryNotFoundError:  # includes IncompleteSnapshotError
            snap = None
        if snap is not None:
            say(f"{where}: found in the cache {snap.folder}")
            return snap
        if offline or not download:
            why = "HF_HUB_OFFLINE is set" if offline else "downloading is not allowed here"
            raise HubError(
                f"{where} is not in the local cache {cache_dir} and {why}. Materialize `model_weights` "
                "for this model with network access to the hub (unset HF_HUB_OFFLINE), or use a "
                "`path` weights source."
            )

    endpoint = kwargs["endpoint"] or "https://huggingface.co"
    say(f"{where}: fetching from {endpoint} into {cache_dir}")
    try:
        folder = snapshot_download(**kwargs)
    except GatedRepoError:
        raise HubError(
            f"{weights.repo} is gated: accept its licence on the hub and set HF_TOKEN to a token that "
            "has access (the token is read from the environment and never logged)."
        ) from None
    except RepositoryNotFoundError:
        raise HubError(
            f"{weights.repo}: repository not found on {endpoint} (or private: set HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise HubError(f"{weights.repo}: revision {weights.revision!r} not found on {endpoint}") from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HubError(
            f"could not fetch {where} from {endpoint} and it is not in the cache {cache_dir}: "
            f"{type(exc).__name__}: {first}. Check the network (or HF_ENDPOINT), or use a `path` source."
        ) from None
    except Exception as exc:  # httpx transport errors and the like, not OSError subclasses
        raise HubError(
            f"could not reach {endpoint} to fetch {where}: {type(exc).__name__}: {exc}. "
            f"Nothing usable is in the cache {cache_dir}."
        ) from None
    snap = done(folder, "hub")
    if snap is None:
        raise HubError(f"{where}: the repository has no file matching {weights.files}")
    if not weights.pinned:
        say(f"{weights.repo}: revision {weights.revision!r} is not pinned; it resolved to {snap.commit}")
    return snap
