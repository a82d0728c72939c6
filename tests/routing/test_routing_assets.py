"""The `litellm_config` and `trace_export` assets, materialized through Dagster against the session's
real proxy and sink."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest
from dagster import AssetCheckSeverity, AssetKey, AssetMaterialization, DagsterInstance, materialize

from goat_dagster.assets.routing import litellm_config
from goat_dagster.assets.traces import trace_export
from goat_dagster.config import paths
from goat_dagster.partitions import MODELS_PARTITIONS_NAME
from goat_dagster.resources.langfuse import LangfuseResource
from goat_dagster.resources.litellm import LiteLLMProxyResource
from goat_dagster.resources.registry import RegistryResource
from goat_dagster.routing import proxy
from goat_dagster.tracing.schema import CallRecord, call_metadata, new_id
from goat_dagster.tracing.sink_store import read_sink_lines
from tests.analysis.conftest import manifest, write_manifest_file
from tests.conftest import free_port

from .conftest import FAKE_KEYS, gateway, wait_until

pytestmark = pytest.mark.integration
PARTITION = "smollm2-135m"


def _metadata_text(result, key: AssetKey) -> str:
    mats = result.asset_materializations_for_node(key.path[-1])
    return json.dumps({k: str(getattr(v, "value", v)) for m in mats for k, v in m.metadata.items()})


def test_litellm_config_asset_reuses_the_running_proxy(proxy_url, routing_env):
    before = proxy.read_state()
    result = materialize(
        [litellm_config],
        resources={
            "litellm": LiteLLMProxyResource(port=routing_env.proxy_port),
            "registry": RegistryResource(),
        },
    )
    assert result.success
    [mat] = result.asset_materializations_for_node("litellm_config")
    md = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    assert md["proxy_action"] == "reused" and md["changed"] is False
    assert md["config_sha256"] == before.config_sha256 and proxy.read_state().pid == before.pid
    # six models, and the group any-small over two of them: 7 names, 8 deployments
    assert (md["n_models"], md["n_deployments"]) == (7, 8) and md["proxy_url"] == proxy_url
    assert "smollm2-135m-local" in md["deployments"] and "os.environ/GROQ_API_KEY" not in md["deployments"]
    text = _metadata_text(result, AssetKey("litellm_config"))
    for name, value in FAKE_KEYS.items():
        assert value not in text, name


def _journal(routing_env, run_id: str, n: int) -> list[CallRecord]:
    client = gateway(PARTITION)
    recs = []
    for step in range(n):
        trace_id, call_id = new_id(), new_id()
        client.openai().chat.completions.create(
            model=client.model,
            messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=6,
            extra_body={
                "metadata": call_metadata(
                    run_id=run_id,
                    suite="smoke",
                    model=client.model,
                    task_id="colour",
                    epoch=0,
                    trace_id=trace_id,
                    call_id=call_id,
                    step=step,
                )
            },
        )
        recs.append(
            CallRecord(
                run_id=run_id,
                suite="smoke",
                model=client.model,
                task_id="colour",
                epoch=0,
                step=step,
                trace_id=trace_id,
                call_id=call_id,
                started_at=datetime.now(UTC),
            )
        )
    f = routing_env.home / "runs" / run_id / "calls.jsonl"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("".join(r.model_dump_json() + "\n" for r in recs))
    assert wait_until(lambda: len(read_sink_lines(run_id)) == n, 10)
    return recs


def test_trace_export_writes_parquet_and_checks_every_call(proxy_url, routing_env):
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(MODELS_PARTITIONS_NAME, [PARTITION])
    run_id = "run-asset-export"
    recs = _journal(routing_env, run_id, 2)
    # what benchmark_results records: the run id of the run it made for this partition
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key="benchmark_results", partition=PARTITION, metadata={"run_id": run_id})
    )
    # Langfuse not configured: traces come from the local sink
    resources = {"langfuse": LangfuseResource(), "registry": RegistryResource()}

    ok = materialize([trace_export], partition_key=PARTITION, instance=instance, resources=resources)
    assert ok.success
    [check] = ok.get_asset_check_evaluations()
    assert check.passed and check.metadata["found"].value == 2 and check.metadata["missing"].value == 0
    [mat] = ok.asset_materializations_for_node("trace_export")
    assert mat.metadata["run_id"].value == run_id and mat.metadata["source"].value == "sink"
    table = pq.read_table(mat.metadata["path"].value)
    assert table.num_rows == 2 and set(table.column("call_id").to_pylist()) == {r.call_id for r in recs}
    text = _metadata_text(ok, AssetKey("trace_export"))
    for name, value in FAKE_KEYS.items():
        assert value not in text, name

    lost = recs[0].model_copy(update={"call_id": new_id(), "step": 7})
    with (routing_env.home / "runs" / run_id / "calls.jsonl").open("a") as fh:
        fh.write(lost.model_dump_json() + "\n")
    bad = materialize([trace_export], partition_key=PARTITION, instance=instance, resources=resources)
    [check] = bad.get_asset_check_evaluations()
    assert not check.passed and check.metadata["missing"].value == 1
    assert lost.call_id in check.metadata["missing_calls"].value


def test_langfuse_unreachable_exports_the_sink_and_the_leaderboard_builds(proxy_url, routing_env):
    """Degrade, don't block: Langfuse configured (keys and host) but nothing listening at its port.
    `trace_export` exports the local sink (which holds every call), says so in the log, in its
    metadata and in a WARN `every_call_has_trace`; the leaderboard still builds; `goat demo` prints
    the problem as one line. (No Langfuse server is reachable here; a closed port is what an
    unreachable one is to the real SDK client.)"""
    from goat_dagster.assets.leaderboard import leaderboard
    from goat_dagster.bench.lake import ResultRow, write_results
    from goat_dagster.demo import problem_lines

    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(MODELS_PARTITIONS_NAME, [PARTITION])
    run_id = "run-langfuse-down"
    recs = _journal(routing_env, run_id, 2)
    now = datetime.now(UTC)
    identity = dict(run_id=run_id, suite="smoke", suite_version="v1", model=PARTITION, agent="builtin")
    rows = [
        ResultRow(**identity, sandbox="local", task_id="colour", epoch=1, status="passed",
                  started_at=now, finished_at=now, wall_s=1.0, trace_id=recs[0].trace_id),
        ResultRow(**identity, sandbox="local", task_id="shape", epoch=1, status="failed",
                  started_at=now, finished_at=now, wall_s=2.0, trace_id=recs[1].trace_id),
    ]  # fmt: skip
    write_results(run_id, rows)
    # made with the current setup, so the leaderboard ranks it
    write_manifest_file(paths(), manifest(run_id, PARTITION))
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key="benchmark_results", partition=PARTITION, metadata={"run_id": run_id})
    )
    langfuse = LangfuseResource(
        public_key="pk-lf-test", secret_key="sk-lf-test", host=f"http://127.0.0.1:{free_port()}"
    )
    result = materialize(
        [trace_export, leaderboard],
        partition_key=PARTITION,
        instance=instance,
        resources={"langfuse": langfuse, "registry": RegistryResource()},
    )
    assert result.success
    [mat] = result.asset_materializations_for_node("trace_export")
    md = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    assert md["source"] == "sink" and md["rows"] == 2
    assert "unreachable" in md["source_note"] and "local trace sink instead" in md["source_note"]
    assert set(pq.read_table(md["path"]).column("call_id").to_pylist()) == {r.call_id for r in recs}
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.metadata["found"].value == 2 and check.metadata["missing"].value == 0
    assert check.description.startswith("every call has a trace in the local trace sink")
    assert "unreachable" in check.metadata["warning"].value
    warnings = [
        e.user_message
        for e in instance.all_logs(result.run_id)
        if e.level == logging.WARNING and "unreachable" in e.user_message
    ]
    assert len(warnings) == 1 and "local trace sink" in warnings[0]
    [board] = result.asset_materializations_for_node("leaderboard")
    assert PARTITION in board.metadata["leaderboard"].value
    lines = problem_lines(result, PARTITION)
    assert len(lines) == 1 and lines[0].startswith(f"warning: {PARTITION}: trace_export every_call_has_trace")
    assert "unreachable" in lines[0] and "\n" not in lines[0] and "Traceback" not in lines[0]
