"""`goat models history|promote|rollback` against the real instance on embedded PostgreSQL.

A local model whose weights come from the Hugging Face hub at a pinned revision: two revisions of
it sit in the hub cache under $GOAT_HOME/models/hf (the real SmolLM2 GGUF plus a file that differs
per revision, laid out as huggingface_hub lays out its cache: the hub itself is out of this
machine's reach, and a pinned commit found in the cache needs no network). `model_weights` really
fetches them from there, `benchmark_results` really runs the oracle on a smoke task in bubblewrap,
the CLI edits models.yaml, and the registry sensor picks the edit up.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from dagster import AssetKey, build_sensor_context, materialize

from goat_dagster.assets.benchmarks import benchmark_results, benchmark_suite
from goat_dagster.assets.registry import model_registry
from goat_dagster.assets.weights import model_weights
from goat_dagster.cli import main
from goat_dagster.partitions import MODELS_PARTITIONS_NAME
from goat_dagster.registry import load_registry
from goat_dagster.registry.editing import pin_revision
from goat_dagster.resources.litellm import litellm_resource_from_env
from goat_dagster.resources.registry import RegistryResource
from goat_dagster.resources.sandbox import SandboxResource
from goat_dagster.resources.serving import serving_resource_from_env
from goat_dagster.sensors.registry import MODEL_CHAIN, model_registry_sensor
from tests.conftest import smollm2_gguf

pytestmark = pytest.mark.integration

REV_A = "a" * 8 + "1" * 32
REV_B = "b" * 8 + "2" * 32
REV_C = "c" * 8 + "3" * 32  # never fetched
REPO = "goat-test/tiny-revisions"

MODELS = f"""\
# a registry of one local model pinned at a hub revision
version: 1

models:
  tiny:   # the one under test
    provider: local
    engine: llama.cpp
    weights:
      source: hf
      repo: {REPO}
      revision: {REV_A}   # pinned: promote/rollback move this
      files: ["*.gguf", "*.md"]
    context_length: 2048
    engine_args: {{chat_format: chatml-function-calling, n_threads: 1}}

  other:
    provider: cloud
    engine: groq
    litellm_model: groq/x
    enabled: false
"""


def seed_hub_cache(home: Path) -> None:
    """Two revisions of REPO in the hub cache layout huggingface_hub reads with no network."""
    repo_dir = home / "models" / "hf" / ("models--" + REPO.replace("/", "--"))
    shutil.rmtree(repo_dir, ignore_errors=True)
    for rev, note in ((REV_A, "revision A"), (REV_B, "revision B: retrained")):
        snap = repo_dir / "snapshots" / rev
        snap.mkdir(parents=True)
        (snap / "model.gguf").symlink_to(smollm2_gguf())
        (snap / "README.md").write_text(note)
    (repo_dir / "refs").mkdir()


def resources() -> dict:
    return {
        "registry": RegistryResource(),
        "serving": serving_resource_from_env(),
        "litellm": litellm_resource_from_env(),
        "sandbox": SandboxResource(),
    }


def fetch(instance, *, benchmark: bool) -> None:
    """model_weights (and, if asked, an oracle benchmark on one smoke task) for partition tiny."""
    selection = [model_registry, model_weights] + ([benchmark_suite, benchmark_results] if benchmark else [])
    result = materialize(
        [model_registry, model_weights, benchmark_suite, benchmark_results],
        selection=selection,
        partition_key="tiny",
        instance=instance,
        resources=resources(),
        run_config={
            "ops": {"benchmark_results": {"config": {"agent": "oracle", "tasks": ["fizzbuzz"]}}}
            if benchmark
            else {}
        },
    )
    assert result.success


def goat(*args: str) -> tuple[int, str]:
    out = CliRunner().invoke(main, list(args))
    assert "Traceback" not in out.output, out.output
    return out.exit_code, out.output


def test_history_promote_rollback_and_the_sensor(pg_instance, tmp_path, monkeypatch) -> None:
    home = Path(os.environ["GOAT_HOME"])
    seed_hub_cache(home)
    models = tmp_path / "models.yaml"
    models.write_text(MODELS)
    monkeypatch.setenv("GOAT_MODELS_FILE", str(models))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pg_instance.add_dynamic_partitions(MODELS_PARTITIONS_NAME, ["tiny"])
    baseline = model_registry_sensor(build_sensor_context(instance=pg_instance, cursor=None))

    code, text = goat("models", "history", "tiny")
    assert code == 0 and "model_weights was never materialized" in text

    fetch(pg_instance, benchmark=True)  # revision A, benchmarked: the oracle passes fizzbuzz
    code, text = goat("models", "history", "tiny", "--json")
    assert code == 0, text
    history = json.loads(text)
    assert history["pinned_revision"] == REV_A
    [rev_a] = history["revisions"]
    assert rev_a["revision"] == REV_A and rev_a["pinned"] and rev_a["benchmarked"]
    assert len(rev_a["sha256"]) == 64
    [run] = rev_a["runs"]
    assert (run["suite"], run["passed"], run["failed"], run["pass_rate"]) == ("smoke", 1, 0, 1.0)

    # a revision never fetched is refused, and nothing is written
    code, text = goat("models", "promote", "tiny", "--revision", REV_B)
    assert code == 1 and "was never fetched" in text and "--force" in text
    assert models.read_text() == MODELS

    # --force pins it; only the one value changes, comments and layout stay
    code, text = goat("models", "promote", "tiny", "--revision", REV_B, "--force")
    assert code == 0 and f"{REV_A} -> {REV_B}" in text and "registry sensor" in text, text
    diff = [
        ln for ln in difflib.unified_diff(MODELS.splitlines(), models.read_text().splitlines(), lineterm="")
        if ln[:1] in "+-" and ln[:3] not in ("+++", "---")
    ]  # fmt: skip
    assert diff == [
        f"-      revision: {REV_A}   # pinned: promote/rollback move this",
        f"+      revision: {REV_B}   # pinned: promote/rollback move this",
    ]
    assert load_registry(models).get("tiny").weights.revision == REV_B

    # the registry sensor sees an edit like any other: the model's whole chain, once
    tick = model_registry_sensor(build_sensor_context(instance=pg_instance, cursor=baseline.cursor))
    [request] = [r for r in tick.run_requests if r.partition_key == "tiny"]
    assert request.asset_selection == MODEL_CHAIN and MODEL_CHAIN[0] == AssetKey("model_registry")
    assert request.tags["goat/reason"] == "model changed in models.yaml"

    fetch(pg_instance, benchmark=False)  # the chain's first steps: B fetched, not benchmarked yet
    history = json.loads(goat("models", "history", "tiny", "--json")[1])
    assert [(r["revision"], r["pinned"], r["benchmarked"]) for r in history["revisions"]] == [
        (REV_B, True, False),
        (REV_A, False, True),
    ]
    assert history["revisions"][0]["sha256"] != history["revisions"][1]["sha256"]
    code, text = goat("models", "history", "tiny")
    assert "never benchmarked" in text and "smoke 100.0% (1/1)" in text and "* pinned in" in text

    # rollback: back to the revision that was benchmarked
    code, text = goat("models", "rollback", "tiny", "--json")
    assert code == 0, text
    assert json.loads(text) == {
        "model": "tiny",
        "from": REV_B,
        "to": REV_A,
        "changed": True,
        "file": str(models),
    }
    assert models.read_text() == MODELS  # byte for byte what it was

    # B was fetched but never benchmarked: promote refuses it (a unique prefix names it)
    code, text = goat("models", "promote", "tiny", "--revision", REV_B[:10])
    assert code == 1 and "never benchmarked" in text
    # once B is benchmarked (the chain a promote starts, here run by hand), it promotes without
    # --force, named by a prefix; the full commit is written
    pin_revision(models, "tiny", REV_B)
    fetch(pg_instance, benchmark=True)
    pin_revision(models, "tiny", REV_A)
    code, text = goat("models", "promote", "tiny", "-r", REV_B[:10])
    assert code == 0 and REV_B in models.read_text(), text
    code, text = goat("models", "promote", "tiny", "-r", REV_B)
    assert code == 0 and "already pinned" in text

    # a model with no hub revision has nothing to pin; an unknown model is named
    code, text = goat("models", "promote", "other", "--revision", REV_C, "--force")
    assert code == 1 and "has no revision to pin" in text
    code, text = goat("models", "history", "nope")
    assert code == 1 and "model 'nope' is not in" in text
