"""`ServingBackend`: what every way of serving a model offers the rest of goat.

Three backends implement it — `LocalBackend` (goat serve on this machine's CPU), `ModalBackend`
(vLLM apps on Modal GPUs) and `ExternalBackend` (cloud APIs and OpenAI-compatible servers goat does
not run) — and `backends.Backends.for_entry` is the one place that picks one for a model (by the
registry's `ModelEntry.backend`). The assets, their check, `goat run`, `goat demo` and `goat doctor`
all go through it.

- `weights(entry, log)`: the model's weights located or fetched where the backend serves them from;
  a `WeightsReport` (content version + what a person reads in the UI).
- `endpoint(entry, log)`: make the model answer; the `Endpoint` record, saved for routing.
  Raises `EndpointDown` when a server goat runs does not answer.
- `probe(entry, endpoint)`: does the recorded endpoint still answer a chat completion? `Health`.
- `teardown(entry, log)`: stop serving it (unload the worker, stop the app); whether anything stopped.
- `default_parallel`: how many of a run's tasks call the model at once when the run does not say:
  what the backend serves well (`bench.runner.parallel_for` asks it).
- `provenance(entry)`: what serves it, for a run's manifest — weights revision and sha256, engine,
  its version and build — from what is on record (never a download, a deploy or a paid call).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from goat_dagster.registry import ModelEntry
from goat_dagster.serving.endpoint import Endpoint
from goat_dagster.serving.probe import probe_chat


class Log(Protocol):
    """Where a backend reports progress: Dagster's `context.log`, a `logging.Logger`, `PrintLog`."""

    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def error(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


class PrintLog:
    """A `Log` over a one-argument callable (`click.echo`, a list's `append`); None is quiet."""

    def __init__(self, say: Any = None) -> None:
        self._say = say

    def info(self, msg: str, *_: Any, **__: Any) -> None:
        if self._say is not None:
            self._say(msg)

    def warning(self, msg: str, *_: Any, **__: Any) -> None:
        self.info(f"warning: {msg}")

    def error(self, msg: str, *_: Any, **__: Any) -> None:
        self.info(f"error: {msg}")


class ServingError(RuntimeError):
    """A model cannot be served as asked; the message says what to do."""


class EndpointDown(ServingError):
    """A server goat runs for the model did not answer; `endpoint` is its (saved) record."""

    def __init__(self, message: str, endpoint: Endpoint) -> None:
        super().__init__(message)
        self.endpoint = endpoint


@dataclass(frozen=True)
class WeightsReport:
    """What `model_weights` records: a content version (the same files give the same version) and
    what a person reads: scalar `facts`, one row per file, where they are, the GGUF header."""

    data_version: str
    summary: str
    facts: dict[str, Any]
    files: list[dict[str, Any]] = field(default_factory=list)
    location: str | None = None
    gguf: dict[str, Any] | None = None


@dataclass(frozen=True)
class Provenance:
    """What serves a model, as a run's manifest records it. `weights_sha256` is the sha256 of the
    weights file (several files: of their names and sha256s, as `model_weights` versions them);
    None where nobody here can know (a cloud API's weights) or nothing is on record yet (`note`)."""

    engine: str
    engine_version: str | None = None
    engine_build: dict[str, Any] = field(default_factory=dict)
    weights_revision: str | None = None
    weights_sha256: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Health:
    """The answer of `probe`. `verified` is False when nobody could check from here (a cloud key
    not in this environment); `waking` when the endpoint may be scaled to zero and still starting."""

    ok: bool
    verified: bool
    description: str
    detail: dict[str, Any] = field(default_factory=dict)
    waking: bool = False


class ServingBackend(Protocol):
    """Weights, endpoint, probe and teardown of the models one backend serves (see the module)."""

    kind: ClassVar[str]  # `ModelEntry.backend`: local | modal | cloud
    # endpoint() deploys paid infrastructure: the asset graph calls it, `goat run` uses the record
    deploys: ClassVar[bool]
    # how many tasks a run sends its model at once unless told (`goat run --parallel`)
    default_parallel: ClassVar[int]

    def weights(self, entry: ModelEntry, log: Log) -> WeightsReport: ...
    def endpoint(self, entry: ModelEntry, log: Log) -> Endpoint: ...
    def probe(self, entry: ModelEntry, endpoint: Endpoint, *, timeout_s: float | None = None) -> Health: ...
    def teardown(self, entry: ModelEntry, log: Log) -> bool: ...
    def provenance(self, entry: ModelEntry) -> Provenance: ...


def endpoint_key(entry: ModelEntry) -> str | None:
    """The key the model's endpoint wants, read from the variable models.yaml names (never stored)."""
    return os.environ.get(entry.key_env) if entry.key_env else None


def require_answering(entry: ModelEntry, ep: Endpoint) -> Endpoint:
    """`ep`, or `EndpointDown` when it is a server goat runs and it did not answer."""
    if entry.self_hosted and not ep.healthy:
        why = ep.detail.get("error") or (ep.detail.get("probe") or {}).get("error") or "see its record"
        raise EndpointDown(
            f"{entry.key}: the endpoint at {ep.base_url} did not answer a chat completion: {why}", ep
        )
    return ep


def chat_health(endpoint: Endpoint, *, api_key: str | None, timeout_s: float) -> Health:
    """`Health` of a self-hosted endpoint: one chat completion at its recorded base URL."""
    if not endpoint.base_url:
        return Health(False, True, f"the record of {endpoint.model_key} has no base_url")
    probe = probe_chat(endpoint.base_url, endpoint.served_name, api_key=api_key, timeout_s=timeout_s)
    description = (
        f"{endpoint.base_url} answered in {probe.latency_s:.2f}s"
        if probe.ok
        else f"{endpoint.base_url} does not answer: {probe.error}"
    )
    waking = not probe.ok and probe.status is None and "Timeout" in (probe.error or "")
    return Health(probe.ok, True, description, probe.as_metadata(), waking=waking)
