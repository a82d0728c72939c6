"""A model's revisions, from the Dagster instance: `goat models history|promote|rollback`.

`history` lists what was fetched and benchmarked; `promote` and `rollback` pin a revision in
models.yaml (`registry.editing`, comments and layout kept), refusing one that was never fetched or
never benchmarked unless forced. The edit is an edit like any other: the registry sensor sees the
file change and re-materializes the model's chain.

Every materialization of a `model_weights` partition records what was fetched — repo, revision,
resolved commit (or package and version), and a content hash of the files (its data version). Every
materialization of `benchmark_results` of the same partition points at the `model_weights` event it
consumed (Dagster's `dagster/input_event_pointer/model_weights` tag, as `model_weights` is one of
its dependencies) and names its harness run. Together they say which revisions of a model were
fetched, when, and which benchmark runs ran on each; the runs' numbers come from the warehouse SQL
(`analysis.runs.run_summaries`), like every number about a run.

A benchmark materialized before it had that pointer is attributed to the latest weights fetched
before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, EventLogRecord

from goat_dagster.analysis.runs import run_summaries
from goat_dagster.instance import ensure_instance
from goat_dagster.registry import HFWeights, ModelEntry, Registry, RegistryError, load_registry
from goat_dagster.registry.editing import hub_weights, pin_revision
from goat_dagster.textfmt import format_table

WEIGHTS = AssetKey("model_weights")
BENCHMARK = AssetKey("benchmark_results")
POINTER_TAG = f"dagster/input_event_pointer/{WEIGHTS.to_user_string()}"
DATA_VERSION_TAG = "dagster/data_version"
PAGE = 500


@dataclass
class RevisionRun:
    """One benchmark run on a revision: its harness run id and what the warehouse says of it."""

    run_id: str
    dagster_run_id: str
    at: datetime
    suite: str | None = None
    passed: int | None = None
    failed: int | None = None
    errors: int | None = None
    pass_rate: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "at": self.at.isoformat(timespec="seconds")}

    @property
    def brief(self) -> str:
        if self.passed is None:
            return f"{self.run_id}: not in the lake"
        rate = "n/a" if self.pass_rate is None else f"{100 * self.pass_rate:.1f}%"
        return f"{self.suite} {rate} ({self.passed}/{(self.passed or 0) + (self.failed or 0)})"


@dataclass
class Revision:
    """One fetched version of a model's weights: `revision` (the commit, or package==version; None
    for a path), `sha256` (the content hash of its files), when it was first and last fetched, and
    the benchmark runs made on it."""

    revision: str | None
    sha256: str
    first_fetched: datetime
    last_fetched: datetime
    repo: str | None = None
    storage_ids: list[int] = field(default_factory=list)
    runs: list[RevisionRun] = field(default_factory=list)
    pinned: bool = False  # what models.yaml pins now

    @property
    def benchmarked(self) -> bool:
        return bool(self.runs)

    def matches(self, rev: str) -> bool:
        """`rev` names this revision: equal, or a prefix of at least 7 characters of its commit."""
        return self.revision is not None and (
            self.revision == rev or (len(rev) >= 7 and self.revision.startswith(rev))
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "repo": self.repo,
            "sha256": self.sha256,
            "first_fetched": self.first_fetched.isoformat(timespec="seconds"),
            "last_fetched": self.last_fetched.isoformat(timespec="seconds"),
            "pinned": self.pinned,
            "benchmarked": self.benchmarked,
            "runs": [r.as_dict() for r in self.runs],
        }


def _records(instance: DagsterInstance, key: AssetKey, partition: str) -> Iterator[EventLogRecord]:
    """Every materialization of `key`'s `partition`, oldest first."""
    cursor = None
    while True:
        page = instance.fetch_materializations(
            AssetRecordsFilter(key, asset_partitions=[partition]), limit=PAGE, cursor=cursor, ascending=True
        )
        yield from page.records
        if not page.has_more:
            return
        cursor = page.cursor


def _meta(record: EventLogRecord) -> dict[str, Any]:
    mat = record.asset_materialization
    return {k: getattr(v, "value", v) for k, v in (mat.metadata if mat else {}).items()}


def _tags(record: EventLogRecord) -> dict[str, str]:
    mat = record.asset_materialization
    return dict(mat.tags or {}) if mat else {}


def revision_of(meta: dict[str, Any]) -> str | None:
    """The revision a `model_weights` materialization recorded: the commit it resolved to (hub),
    package==version (a Python package), None for a path."""
    commit = meta.get("resolved_commit") or meta.get("revision")
    if commit:
        return str(commit)
    if meta.get("package"):
        return f"{meta['package']}=={meta.get('package_version') or '?'}"
    return None


def _when(record: EventLogRecord) -> datetime:
    return datetime.fromtimestamp(record.timestamp, UTC)


def weights_history(instance: DagsterInstance, entry: ModelEntry) -> list[Revision]:
    """The revisions of `entry`'s weights that `model_weights` fetched, newest first, each with the
    benchmark runs made on it and their numbers from the lake."""
    partition = entry.slug
    by_storage: dict[int, Revision] = {}
    revisions: dict[tuple[str | None, str], Revision] = {}
    for rec in _records(instance, WEIGHTS, partition):
        meta = _meta(rec)
        ident = (revision_of(meta), _tags(rec).get(DATA_VERSION_TAG) or str(meta.get("content_sha256", "")))
        rev = revisions.get(ident)
        if rev is None:
            rev = revisions[ident] = Revision(
                ident[0], ident[1], _when(rec), _when(rec), repo=meta.get("repo") or meta.get("package")
            )
        rev.last_fetched = _when(rec)
        rev.storage_ids.append(rec.storage_id)
        by_storage[rec.storage_id] = rev
    fetched = sorted(by_storage)
    for rec in _records(instance, BENCHMARK, partition):
        run_id = _meta(rec).get("run_id")
        if not run_id:
            continue
        pointer = _tags(rec).get(POINTER_TAG)
        rev = by_storage.get(int(pointer)) if pointer and pointer.isdigit() else None
        if rev is None:  # materialized before it pointed at its weights: the latest fetched before it
            before = [s for s in fetched if s < rec.storage_id]
            rev = by_storage[before[-1]] if before else None
        if rev is not None:
            rev.runs.append(RevisionRun(str(run_id), rec.run_id, _when(rec)))
    _fill_numbers([r for rev in revisions.values() for r in rev.runs])
    pinned = entry.weights.revision if isinstance(entry.weights, HFWeights) else None
    for rev in revisions.values():
        rev.pinned = pinned is not None and rev.revision == pinned
    return sorted(revisions.values(), key=lambda r: r.last_fetched, reverse=True)


def _fill_numbers(runs: list[RevisionRun]) -> None:
    """Each run's numbers, from the warehouse SQL over the lake (one snapshot for all of them)."""
    if not runs:
        return
    summaries = {s["run_id"]: s for s in run_summaries()}
    for run in runs:
        s = summaries.get(run.run_id)
        if s is not None:
            run.suite, run.pass_rate = s["suite"], s["pass_rate"]
            run.passed, run.failed, run.errors = s["passed"], s["failed"], s["errors"]


class RevisionError(ValueError):
    """A `goat models` revision verb cannot do what was asked (the message says why and what to do)."""


def promotion_target(history: list[Revision], entry: ModelEntry, revision: str, force: bool) -> str:
    """The full revision to pin for `goat models promote KEY --revision REV`: REV (or a unique
    commit prefix of it) must have been fetched by `model_weights` and benchmarked on, unless
    `force`."""
    found = [r for r in history if r.matches(revision)]
    commits = sorted({r.revision for r in found if r.revision})
    if len(commits) > 1:
        raise RevisionError(f"{revision!r} matches several revisions of {entry.key}: {', '.join(commits)}")
    if not found:
        if force:
            return revision
        raise RevisionError(
            f"{entry.key}: revision {revision!r} was never fetched (no model_weights materialization of "
            f"partition {entry.slug!r} at it): materialize model_weights and benchmark_results at it "
            "first, or pass --force to pin it anyway"
        )
    if not any(r.benchmarked for r in found) and not force:
        raise RevisionError(
            f"{entry.key}: revision {commits[0]} was fetched but never benchmarked: materialize "
            f"benchmark_results for partition {entry.slug!r} at it first, or pass --force"
        )
    return commits[0]


def rollback_target(history: list[Revision], entry: ModelEntry, force: bool) -> Revision:
    """The revision `goat models rollback KEY` pins: the most recently fetched one other than the
    pinned revision that was benchmarked (with `force`: the most recently fetched other one)."""
    current = entry.weights.revision if isinstance(entry.weights, HFWeights) else None
    others = [r for r in history if r.revision and r.revision != current]
    candidates = others if force else [r for r in others if r.benchmarked]
    if not candidates:
        what = "fetched" if force or not others else "benchmarked"
        hint = "" if force else "; --force allows one never benchmarked"
        raise RevisionError(
            f"{entry.key}: no other {what} revision than {current} to roll back to "
            f"({len(others)} other revision(s) fetched{hint})"
        )
    return candidates[0]


# ---- the verbs ---------------------------------------------------------------------------------


def _history(key: str, *, pinning: bool = False) -> tuple[Registry, ModelEntry, list[Revision]]:
    registry = load_registry()
    try:
        entry = registry.get(key)
        if pinning:  # refused before the instance is even asked
            hub_weights(entry, registry.source)
    except KeyError as exc:
        raise RevisionError(exc.args[0]) from None
    except RegistryError as exc:  # the entry is valid, it just has no revision to move
        raise RevisionError("; ".join(str(p) for p in exc.problems)) from None
    return registry, entry, weights_history(ensure_instance(), entry)


def history_view(key: str) -> tuple[dict[str, Any], str]:
    """`goat models history KEY`: (the --json object, the text)."""
    registry, entry, history = _history(key)
    pinned = entry.weights.revision if isinstance(entry.weights, HFWeights) else None
    payload = {
        "model": entry.key,
        "partition": entry.slug,
        "pinned_revision": pinned,
        "source": registry.source,
        "revisions": [r.as_dict() for r in history],
    }
    if not history:
        return payload, (
            f"{entry.key}: model_weights was never materialized for partition {entry.slug!r} "
            "(materialize it in Dagster, or run `goat demo`)"
        )
    rows = [
        {
            "": "*" if r.pinned else "",
            "revision": r.revision or "(path)",
            "sha256": r.sha256[:12],
            "fetched": r.last_fetched.strftime("%Y-%m-%d %H:%M"),
            "runs": len(r.runs),
            "pass rates": "; ".join(run.brief for run in r.runs) or "never benchmarked",
        }
        for r in history
    ]
    text = format_table(rows, ["", "revision", "sha256", "fetched", "runs", "pass rates"])
    note = f"* pinned in {registry.source}" if pinned else f"{entry.key} has no hub revision to pin"
    return payload, f"{text}\n\n{note}"


def _pin(registry: Registry, entry: ModelEntry, revision: str, verb: str) -> tuple[dict[str, Any], str]:
    current = entry.weights.revision if isinstance(entry.weights, HFWeights) else None
    if current == revision:
        return {"model": entry.key, "revision": revision, "changed": False}, (
            f"{entry.key} is already pinned at {revision} in {registry.source}; nothing changed"
        )
    edit = pin_revision(Path(registry.source), entry.key, revision)
    if entry.enabled:
        then = (
            "the registry sensor (running with `goat ui`) now re-materializes its chain: weights -> "
            "endpoint -> proxy config -> benchmark -> traces -> leaderboard"
        )
    else:
        then = "it is disabled, so nothing runs until `enabled: true`"
    payload = {"model": entry.key, "from": edit.old, "to": edit.new, "changed": True, "file": str(edit.path)}
    return payload, f"{verb} {entry.key}: weights.revision {edit.old} -> {edit.new} in {edit.path}; {then}"


def promote(key: str, revision: str, *, force: bool) -> tuple[dict[str, Any], str]:
    """`goat models promote KEY --revision REV`."""
    registry, entry, history = _history(key, pinning=True)
    return _pin(registry, entry, promotion_target(history, entry, revision, force), "promoted")


def rollback(key: str, *, force: bool) -> tuple[dict[str, Any], str]:
    """`goat models rollback KEY`."""
    registry, entry, history = _history(key, pinning=True)
    target = rollback_target(history, entry, force)
    assert target.revision is not None
    return _pin(registry, entry, target.revision, "rolled back")
