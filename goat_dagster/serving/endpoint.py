"""The record of a live model endpoint, shared by every serving backend and by routing.

Every backend's `endpoint()` writes one `Endpoint` per model to `$GOAT_HOME/endpoints/<slug>.json`
(`serving_endpoint` also puts it in its asset metadata); the routing config and the CLI read them
back, so `goat run` outside Dagster sees the same endpoints the asset graph made.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from goat_dagster import atomic, config
from goat_dagster.registry import slugify


class Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_key: str
    provider: str = Field(description="local | modal | cloud | openai_compatible")
    engine: str
    base_url: str | None = Field(description="OpenAI-compatible base URL ending in /v1 (None for cloud APIs)")
    served_name: str = Field(description="model name the backend expects in requests")
    healthy: bool
    checked_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    cold_start_s: float | None = Field(default=None, description="seconds from request to first answer")
    load_s: float | None = None
    app_name: str | None = Field(default=None, description="Modal app name, when on Modal")
    detail: dict[str, Any] = Field(default_factory=dict)


def endpoints_dir() -> Path:
    return config.paths().endpoints


def endpoint_path(model_key: str) -> Path:
    return endpoints_dir() / f"{slugify(model_key)}.json"


def save_endpoint(ep: Endpoint) -> Path:
    return atomic.write_text(endpoint_path(ep.model_key), ep.model_dump_json(indent=2))


def load_endpoint(model_key: str) -> Endpoint | None:
    f = endpoint_path(model_key)
    if not f.exists():
        return None
    return Endpoint.model_validate(json.loads(f.read_text()))


def load_endpoints() -> dict[str, Endpoint]:
    d = endpoints_dir()
    out: dict[str, Endpoint] = {}
    if d.is_dir():
        for f in sorted(d.glob("*.json")):
            ep = Endpoint.model_validate(json.loads(f.read_text()))
            out[ep.model_key] = ep
    return out
