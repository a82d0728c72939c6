"""Whether runs can be compared: their manifests (bench/manifest.py, the warehouse's `run_manifests`
view) and what differs between them apart from the model.

- `manifest_differences(a, b)`: what two runs (their manifests, `manifests_of`) differ in — every
  SETUP field, and the MODEL fields when both ran the same model (`goat compare`, the leaderboard's
  A/B); `ManifestDifferences` the same for many pairs, once per distinct pair of manifests.
- `board_mismatches(con, rows)`: for runs ranked together (a leaderboard), per suite, each field
  they do not all agree on and which runs hold which value. A ranking across such runs is refused
  unless asked for (`allow_mismatch`).
- `outdated_runs(con)`: each (model, suite) whose latest run is not on the leaderboard because it
  was made with another prompt set, harness or grader than the current ones (or before manifests).

A run without a manifest (made before manifests) differs from every run in `manifest`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from goat_dagster.analysis.snapshot import query
from goat_dagster.bench.manifest import (
    MODEL_FIELDS,
    Difference,
    RunManifest,
    compared_fields,
    differences,
    disagreements,
    flat_differences,
    flat_fields,
)

NO_MANIFEST = "none (made before manifests)"


@dataclass(frozen=True)
class Mismatch:
    """A field the runs of one suite do not agree on: each value, with the runs that hold it."""

    suite: str
    field: str
    values: dict[str, list[str]]  # the value as shown -> the runs' labels (model, or model (run id))

    def __str__(self) -> str:
        return f"{self.field}: " + "; ".join(f"{v} ({', '.join(who)})" for v, who in self.values.items())

    def as_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "field": self.field, "values": self.values}


def manifests_of(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> dict[str, RunManifest]:
    rows = query(con, "SELECT * FROM run_manifests WHERE list_contains(?, run_id)", [list(run_ids)])
    return {r["run_id"]: RunManifest.model_validate(r) for r in rows}


def manifest_differences(a: RunManifest | None, b: RunManifest | None) -> list[Difference]:
    """What run B differs from run A in, apart from the model (and what served it, for two models),
    from their manifests (None: a run made before manifests)."""
    if a is None or b is None:
        shown = [NO_MANIFEST if m is None else "recorded" for m in (a, b)]
        return [Difference("manifest", shown[0], shown[1])]
    return differences(a, b)


class ManifestDifferences:
    """`manifest_differences` of many pairs of some runs (run id -> manifest), each computed once per
    distinct pair of what is compared (a leaderboard's 400 pairs of runs made with one setup are a
    handful): the runs' compared fields flattened once each."""

    def __init__(self, manifests: Mapping[str, RunManifest]) -> None:
        self.manifests = manifests
        self._flat: dict[tuple[str, bool], tuple[str, dict[str, Any]]] = {}
        self._made: dict[tuple[str, str], list[Difference]] = {}

    def _of(self, run_id: str, same_model: bool) -> tuple[str, dict[str, Any]]:
        """The run's compared fields, flattened, and a key of exactly them (values and order)."""
        key = (run_id, same_model)
        if key not in self._flat:
            flat = flat_fields(self.manifests[run_id], compared_fields(same_model))
            self._flat[key] = (json.dumps(list(flat.items()), default=str), flat)
        return self._flat[key]

    def __call__(self, run_a: str, run_b: str) -> list[Difference]:
        a, b = self.manifests.get(run_a), self.manifests.get(run_b)
        if a is None or b is None:
            return manifest_differences(a, b)
        same = a.model == b.model
        (key_a, flat_a), (key_b, flat_b) = self._of(run_a, same), self._of(run_b, same)
        if (key_a, key_b) not in self._made:
            self._made[(key_a, key_b)] = flat_differences(flat_a, flat_b)
        return list(self._made[(key_a, key_b)])


def _show(value: Any) -> str:
    text = "(none)" if value is None else json.dumps(value) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def board_mismatches(con: duckdb.DuckDBPyConnection, rows: Sequence[dict[str, Any]]) -> list[Mismatch]:
    """Per suite, the fields the ranked runs do not all agree on (SETUP fields; MODEL fields between
    runs of one model)."""
    out: list[Mismatch] = []
    manifests = manifests_of(con, [r["run_id"] for r in rows])
    for suite in sorted({r["suite"] for r in rows}):
        runs = sorted((r for r in rows if r["suite"] == suite), key=lambda r: (r["model"], r["run_id"]))
        if len(runs) < 2:
            continue
        models = [r["model"] for r in runs]
        label = {
            r["run_id"]: r["model"] if models.count(r["model"]) == 1 else f"{r['model']} ({r['run_id']})"
            for r in runs
        }
        missing = [label[r["run_id"]] for r in runs if r["run_id"] not in manifests]
        if missing:
            present = [label[r["run_id"]] for r in runs if r["run_id"] in manifests]
            values = {NO_MANIFEST: missing, **({"recorded": present} if present else {})}
            if len(values) > 1:
                out.append(Mismatch(suite, "manifest", values))
        found = {label[r["run_id"]]: manifests[r["run_id"]] for r in runs if r["run_id"] in manifests}
        for field, by_run in disagreements(found).items():
            grouped: dict[str, list[str]] = {}
            for who, value in by_run.items():
                grouped.setdefault(_show(value), []).append(who)
            out.append(Mismatch(suite, field, grouped))
        out += _same_model_mismatches(suite, runs, manifests, label)
    return out


def _same_model_mismatches(
    suite: str, runs: list[dict[str, Any]], manifests: dict[str, RunManifest], label: dict[str, str]
) -> list[Mismatch]:
    """Two runs of one model ranked together: what served the model must not differ either."""
    out = []
    for model in sorted({r["model"] for r in runs}):
        mine = [r["run_id"] for r in runs if r["model"] == model and r["run_id"] in manifests]
        for other in mine[1:]:
            for d in differences(manifests[mine[0]], manifests[other], same_model=True):
                if d.field.split(".")[0] in MODEL_FIELDS:
                    values = {_show(d.a): [label[mine[0]]], _show(d.b): [label[other]]}
                    out.append(Mismatch(suite, d.field, values))
    return out


OUTDATED_SQL = """
SELECT s.model, s.suite, s.run_id, m.run_id IS NOT NULL AS has_manifest,
    m.prompt_sha256, m.harness_version, m.grader_version,
    c.prompt_sha256 AS current_prompt_sha256, c.harness_version AS current_harness_version,
    c.grader_version AS current_grader_version
FROM run_summary s
LEFT JOIN run_manifests m ON m.run_id = s.run_id
CROSS JOIN current_setup c
WHERE s.recency = 1 AND s.run_id NOT IN (SELECT run_id FROM leaderboard)
ORDER BY s.suite, s.model"""


def outdated_runs(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The latest run of each (model, suite) the leaderboard leaves out, with why (`why`)."""
    out = []
    for r in query(con, OUTDATED_SQL):
        if not r["has_manifest"]:
            why = ["made before manifests"]
        else:
            why = [
                f"{name} {str(r[col])[:12]} (now {str(r['current_' + col])[:12]})"
                for name, col in (
                    ("prompt set", "prompt_sha256"),
                    ("harness", "harness_version"),
                    ("grader", "grader_version"),
                )
                if r[col] is not None and r["current_" + col] is not None and r[col] != r["current_" + col]
            ]
        out.append({"model": r["model"], "suite": r["suite"], "run_id": r["run_id"], "why": "; ".join(why)})
    return out
