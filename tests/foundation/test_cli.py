"""The `goat` command: every verb of DESIGN §8 answers --help; errors are messages, not tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from goat_dagster.cli import main

VERBS = [
    ["demo"],
    ["run"],
    ["results"],
    ["models"],
    ["serve"],
    ["traces"],
    ["traces", "verify"],
    ["setup"],
    ["doctor"],
    ["ui"],
    ["view"],
]


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
def test_every_verb_has_help(verb: list[str]) -> None:
    out = CliRunner().invoke(main, [*verb, "--help"])
    assert out.exit_code == 0, out.output
    assert "Usage: main" in out.output or "Usage: goat" in out.output


def test_models_json(goat_home: Path) -> None:
    out = CliRunner().invoke(main, ["models", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    keys = [m["key"] for m in data["models"]]
    assert "smollm2-135m" in keys and "gpt-oss-120b" in keys
    smol = next(m for m in data["models"] if m["key"] == "smollm2-135m")
    assert smol["enabled"] is True and smol["gateway_name"] == "smollm2-135m-local"
    assert data["router"]["routing_strategy"] == "simple-shuffle"


def test_models_table(goat_home: Path) -> None:
    out = CliRunner().invoke(main, ["models", "--enabled"])
    assert out.exit_code == 0
    assert "smollm2-135m" in out.output and "gpt-5-nano" not in out.output


def test_broken_registry_is_a_message(
    goat_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "models.yaml"
    bad.write_text("models:\n  x:\n    provider: nowhere\n    engine: e\n")
    monkeypatch.setenv("GOAT_MODELS_FILE", str(bad))
    out = CliRunner().invoke(main, ["models"])
    assert out.exit_code == 1
    assert f"{bad}:3: models.x.provider: unknown provider 'nowhere'" in out.output
    assert "Traceback" not in out.output
