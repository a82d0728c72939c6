"""What every asset module shares: owners, group names, markdown helpers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

OWNERS = ["team:goat-bench"]


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Iterable[str] | None = None) -> str:
    """A GitHub-flavoured markdown table (what the Dagster UI renders in metadata)."""
    rows = list(rows)
    if not rows:
        return "_(empty)_"
    cols = list(columns) if columns is not None else list(rows[0].keys())

    def cell(v: Any) -> str:
        if isinstance(v, float):
            v = f"{v:.4g}"
        return str("" if v is None else v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cols) + " |\n| " + " | ".join("---" for _ in cols) + " |\n"
    return head + "\n".join("| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows)
