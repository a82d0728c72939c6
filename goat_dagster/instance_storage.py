"""The storage dagster.yaml names: dagster-postgres on the instance database of `goat_dagster.instance`.

dagster.yaml names this class; it adds to dagster-postgres where the database is, and pooled
connections (see `GoatPostgresStorage`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster_postgres import DagsterPostgresStorage

from goat_dagster.instance import ensure_postgres

# dagster-webserver's defaults for its pool (`dagster-webserver --db-pool-recycle / --db-pool-max-overflow`)
POOL_RECYCLE_S = 3600
POOL_MAX_OVERFLOW = 20


class GoatPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres on DAGSTER_PG_URL, else on the embedded server of this GOAT_HOME (started
    or joined by `ensure_postgres`), so plain `dagster` commands reach the same instance as `goat`.
    It takes no config: the URL is never written into dagster.yaml.

    Connections are pooled in every process, as dagster-webserver pools them (its
    `optimize_for_webserver`, with no statement timeout): dagster-postgres otherwise opens a new
    connection for every event it stores, and a benchmark logs one event per task — 164 connections
    for HumanEval, about 1 s of a run. Each process keeps one connection open between events."""

    def __init__(self, postgres_url: str, inst_data: Any = None) -> None:
        super().__init__(postgres_url=postgres_url, inst_data=inst_data)
        for storage in (self.run_storage, self.event_log_storage, self.schedule_storage):
            storage.optimize_for_webserver(
                statement_timeout=0, pool_recycle=POOL_RECYCLE_S, max_overflow=POOL_MAX_OVERFLOW
            )

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> GoatPostgresStorage:
        return cls(postgres_url=ensure_postgres(), inst_data=inst_data)
