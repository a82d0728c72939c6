"""Spend limits: monthly budgets per provider in models.yaml, the `spend` view, the
`spend_within_budget` check (warn at 80%, fail at 100%) and `goat run`'s refusal of a run whose
projected cost would pass a budget.

The runs of the cloud model here are lake rows written as a run of it would write them: a cloud
API is out of this machine's reach, and what is under test is what goat does with what was spent.
The `goat run` at the end is real (the oracle needs no model call).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from dagster import AssetCheckSeverity, materialize

from goat_dagster.analysis.spend import budget_status, provider_spend, spend_rows, this_month
from goat_dagster.analysis.warehouse import ensure_warehouse
from goat_dagster.assets.leaderboard import leaderboard, spend_within_budget
from goat_dagster.bench.journal import RunJournal, RunSpec
from goat_dagster.bench.lake import ResultRow, write_results
from goat_dagster.registry import RegistryError, load_registry, parse_registry
from goat_dagster.resources.registry import RegistryResource
from tests.bench.test_bench_cli import goat

MODELS = """\
budgets:
  azure: {monthly_usd: 1.00}     # 80% warns, 100% fails
  groq: 5
models:
  nano:
    provider: cloud
    engine: azure
    litellm_model: azure/gpt-5-nano
    pricing: {input_per_mtok: 0.05, output_per_mtok: 0.40}
  mini:
    provider: cloud
    engine: azure
    litellm_model: azure/gpt-5-mini
  llama:
    provider: cloud
    engine: groq
    litellm_model: groq/llama-3.3-70b-versatile
  pod:
    provider: openai_compatible
    engine: vllm
    billed_by: runpod
    api_base: http://127.0.0.1:9/v1
  smol:
    provider: local
    engine: llama.cpp
    weights: {source: path, path: /m.gguf}
"""


def rows(
    run_id: str, model: str, costs: list[float], start: datetime, suite: str = "smoke"
) -> list[ResultRow]:
    return [
        ResultRow(
            run_id=run_id,
            suite=suite,
            suite_version="v",
            model=model,
            agent="builtin",
            sandbox="local",
            task_id=f"t{i}",
            epoch=1,
            status="passed",
            started_at=start + timedelta(seconds=i),
            finished_at=start + timedelta(seconds=i + 1),
            wall_s=1.0,
            prompt_tokens=1000,
            completion_tokens=100,
            cost_usd=c,
        )
        for i, c in enumerate(costs)
    ]


@pytest.fixture
def registry_file(goat_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(MODELS)
    monkeypatch.setenv("GOAT_MODELS_FILE", str(path))
    return path


def test_budgets_are_validated_with_clear_errors() -> None:
    reg = parse_registry(MODELS, "models.yaml")
    assert {k: b.monthly_usd for k, b in reg.budgets.items()} == {"azure": 1.0, "groq": 5.0}
    assert {m.key: m.billing_provider for m in reg.models.values()} == {
        "nano": "azure", "mini": "azure", "llama": "groq", "pod": "runpod", "smol": "local",
    }  # fmt: skip
    bad = MODELS.replace("  groq: 5\n", "  grok: 5\n  runpod: {monthly_usd: 0}\n  local: {usd: 1}\n")
    with pytest.raises(RegistryError) as err:
        parse_registry(bad, "models.yaml")
    text = str(err.value)
    assert "models.yaml:3: budgets.grok: no model in this file is billed by 'grok'" in text
    assert "providers here: azure, groq, local, runpod" in text
    assert "models.yaml:4: budgets.runpod.monthly_usd: Input should be greater than 0" in text
    assert "models.yaml:5: budgets.local.usd: unknown field; expected monthly_usd, warn_fraction" in text
    with pytest.raises(RegistryError, match=r"models.pod.billed_by: must be a provider name"):
        parse_registry(MODELS.replace("billed_by: runpod", "billed_by: Run Pod!"), "models.yaml")
    # budgets added to a file change the registry's content, not any model's
    plain = parse_registry("models:\n" + MODELS.split("models:\n", 1)[1], "models.yaml")
    assert plain.content_hash != reg.content_hash
    assert plain.models["nano"].content_hash() == reg.models["nano"].content_hash()


def test_spend_view_and_the_budget_check(goat_home: Path, registry_file: Path, pg_instance) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    last_month = (now.replace(day=1) - timedelta(days=1)).replace(hour=12)
    write_results("n1", rows("n1", "nano", [0.30, 0.20], now - timedelta(minutes=30)))
    write_results("m1", rows("m1", "mini", [0.15], now - timedelta(minutes=20)))
    write_results("l1", rows("l1", "llama", [0.5], now - timedelta(minutes=10)))
    write_results("old", rows("old", "nano", [9.0], last_month))  # another month: not held against this one
    write_results("gone", rows("gone", "retired-model", [0.01], now))

    spend = {(r["provider"], r["model"], r["month"]): r for r in spend_rows()}
    nano = spend[("azure", "nano", this_month())]
    assert (nano["cost_usd"], nano["runs"], nano["attempts"]) == (pytest.approx(0.5), 1, 2)
    assert spend[("azure", "nano", last_month.strftime("%Y-%m"))]["cost_usd"] == pytest.approx(9.0)
    assert spend[("unknown", "retired-model", this_month())]["cost_usd"] == pytest.approx(0.01)
    assert ensure_warehouse().state in ("created", "updated")  # the same view, for people's own queries
    with duckdb.connect(str(goat_home / "warehouse.duckdb"), read_only=True) as con:
        by_provider = dict(
            con.execute(
                "SELECT provider, sum(cost_usd) FROM spend WHERE month = ? GROUP BY provider", [this_month()]
            ).fetchall()
        )
    assert by_provider["azure"] == pytest.approx(0.65) and by_provider["groq"] == pytest.approx(0.5)

    def check():
        result = materialize([leaderboard, spend_within_budget], instance=pg_instance,
                             resources={"registry": RegistryResource()})  # fmt: skip
        [evaluation] = result.get_asset_check_evaluations()
        return evaluation

    states = {s.provider: s.state for s in budget_status(load_registry())}
    assert states == {"azure": "ok", "groq": "ok"}  # 65% and 10%
    assert check().passed

    # a run killed before it reached the lake is spend all the same (its journal says so)
    spec = RunSpec(run_id="n2", suite="smoke", suite_version="v", model="nano", agent="builtin",
                   sandbox="local", epochs=1)  # fmt: skip
    journal = RunJournal(spec)
    journal.append(rows("n2", "nano", [0.2], now)[0])
    journal.close()
    assert provider_spend(load_registry(), this_month())["azure"] == pytest.approx(0.85)
    warned = check()
    assert not warned.passed and warned.severity == AssetCheckSeverity.WARN
    assert "azure has spent 85% of its $1.00" in warned.description

    write_results("n3", rows("n3", "nano", [0.2], now))
    failed = check()
    assert not failed.passed and failed.severity == AssetCheckSeverity.ERROR
    assert "azure has spent 105%" in failed.description
    assert "| azure |" in failed.metadata["budgets"].value and "| over |" in failed.metadata["budgets"].value


def test_goat_run_refuses_a_run_past_the_budget(goat_home: Path, registry_file: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    write_results("n1", rows("n1", "nano", [0.10, 0.10, 0.10, 0.10, 0.10], now - timedelta(hours=1)))
    write_results("n2", rows("n2", "nano", [0.2], now - timedelta(minutes=30), suite="other"))
    env = {"GOAT_MODELS_FILE": str(registry_file)}

    # spent $0.70; five smoke tasks at $0.10 each (its earlier attempts there) would make $1.20
    res = goat(goat_home, "run", "--suite", "smoke", "--model", "nano", "--agent", "oracle", env=env)
    assert res.returncode == 1
    assert "goat run: nano is billed by azure, whose budget is $1.00 a month" in res.stderr
    assert "spent in" in res.stderr and "$0.7000" in res.stderr
    assert "projected cost $0.5000 (5 attempts x $0.1000, from 5 earlier attempts of nano on smoke)" in (
        res.stderr
    )
    assert "would take it to $1.2000" in res.stderr and "--over-budget" in res.stderr
    assert "--budget-usd 0.3000" in res.stderr
    assert not (goat_home / "runs").exists() or not any((goat_home / "runs").iterdir())  # nothing started

    # capped by --budget-usd, it fits
    ok = goat(goat_home, "run", "-s", "smoke", "-m", "nano", "--agent", "oracle", "--budget-usd", "0.3",
              "--json", env=env)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["passed"] == 5
    # another model of the same provider, never run on smoke: priced from the other models' tokens
    res = goat(goat_home, "run", "-s", "smoke", "-m", "mini", "--agent", "oracle", env=env)
    assert res.returncode == 0, res.stderr  # mini has no prices: $0 projected
    # --over-budget starts it anyway
    write_results("n4", rows("n4", "nano", [0.5], now))
    res = goat(goat_home, "run", "-s", "smoke", "-m", "nano", "--agent", "oracle", env=env)
    assert res.returncode == 1 and "whose budget is $1.00" in res.stderr
    res = goat(goat_home, "run", "-s", "smoke", "-m", "nano", "--agent", "oracle", "--over-budget", env=env)
    assert res.returncode == 0, res.stderr
    # a provider with no budget is never held back
    res = goat(goat_home, "run", "-s", "smoke", "-m", "smol", "--agent", "oracle", "--json", env=env)
    assert res.returncode == 0, res.stderr
