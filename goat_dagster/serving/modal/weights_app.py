"""`goat-weights`: a CPU Modal function that downloads HF weights into Volume `goat-model-cache`.

The vLLM apps mount the same Volume at the same place (`HF_HOME=/root/.cache/huggingface`), so a
snapshot downloaded here by revision is what `vllm serve --revision <commit>` finds at start-up,
and a GPU never waits on a download. `modal_deploy.ensure_modal_weights` runs it (an ephemeral
`app.run()`), one model at a time::

    modal run --env goat -m goat_dagster.serving.modal.weights_app \
        --repo Qwen/Qwen3-4B-Instruct-2507 --revision <sha>

The function answers with what is on the Volume: the resolved commit (a branch like `main` is
resolved and recorded), every file with its size and its hub etag (the sha256 for LFS files, as
the HF cache names its blobs), and the total bytes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import modal
from huggingface_hub import snapshot_download

from goat_dagster.serving.modal.spec import HF_CACHE_DIR, HF_HUB_VERSION, SECRET_HF, VOLUME_MODELS

APP_NAME = "goat-weights"
DOWNLOAD_TIMEOUT_S = 4 * 3600  # 221 GB (qwen3-235b-fp8) at ~200 MB/s is ~20 min; leave room
IMAGE_PACKAGES = (f"huggingface_hub[hf_transfer]=={HF_HUB_VERSION}",)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def snapshot_inventory(snapshot_dir: Path) -> dict[str, Any]:
    """Files of one HF-cache snapshot (`.../snapshots/<commit>/`): path, bytes, etag, sha256.

    In the HF cache every file in a snapshot is a symlink to `blobs/<etag>`; for LFS files (the
    weights) the etag is the file's sha256, so it is recorded without reading 100 GB again.
    """
    files = []
    for p in sorted(snapshot_dir.rglob("*")):
        if p.is_dir():
            continue
        target = Path(os.path.realpath(p))
        etag = target.name if p.is_symlink() else None
        files.append(
            {
                "path": p.relative_to(snapshot_dir).as_posix(),
                "bytes": target.stat().st_size,
                "etag": etag,
                "sha256": etag if etag and _HEX64.match(etag) else None,
            }
        )
    return {
        "commit": snapshot_dir.name,
        "files": files,
        "n_files": len(files),
        "bytes": sum(f["bytes"] for f in files),
    }


def download_snapshot(repo: str, revision: str, allow_patterns: list[str] | None) -> dict[str, Any]:
    """Download (or find) a snapshot in HF_HOME and describe it. Runs in the container."""
    path = snapshot_download(repo, revision=revision, allow_patterns=allow_patterns or None)
    return {"repo": repo, "revision": revision, **snapshot_inventory(Path(path))}


image = (
    modal.Image.debian_slim(python_version="3.12")
    .uv_pip_install(*IMAGE_PACKAGES)
    .env({"HF_HOME": HF_CACHE_DIR, "HF_HUB_ENABLE_HF_TRANSFER": "1"})
)
models_volume = modal.Volume.from_name(VOLUME_MODELS, create_if_missing=True)
app = modal.App(APP_NAME)


@app.function(
    image=image,
    volumes={HF_CACHE_DIR: models_volume},
    secrets=[modal.Secret.from_name(SECRET_HF)],
    timeout=DOWNLOAD_TIMEOUT_S,
    cpu=2,
    memory=4096,
)
def download(repo: str, revision: str, allow_patterns: list[str] | None = None) -> dict[str, Any]:
    result = download_snapshot(repo, revision, allow_patterns)
    models_volume.commit()  # make the files visible to other containers now, not at exit
    return result


@app.local_entrypoint()
def main(repo: str, revision: str = "main") -> None:
    result = download.remote(repo, revision, None)
    print(f"{result['repo']}@{result['commit']}: {result['n_files']} files, {result['bytes'] / 1e9:.2f} GB")
