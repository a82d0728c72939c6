"""The storage dagster.yaml names: dagster-postgres on the instance database of `goat_dagster.instance`.

dagster.yaml names this class; all it adds to dagster-postgres is where the database is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster_postgres import DagsterPostgresStorage

from goat_dagster.instance import ensure_postgres


class GoatPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres on DAGSTER_PG_URL, else on the embedded server of this GOAT_HOME (started
    or joined by `ensure_postgres`), so plain `dagster` commands reach the same instance as `goat`.
    It takes no config: the URL is never written into dagster.yaml."""

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> GoatPostgresStorage:
        return cls(postgres_url=ensure_postgres(), inst_data=inst_data)
