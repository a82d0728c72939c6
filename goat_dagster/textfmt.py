"""Text rendering shared by the CLI, the assets and the domain code: terminal tables, and the
markdown tables the Dagster UI shows in metadata."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def format_table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    """`rows` as left-aligned columns `cols` under an upper-case header (missing values blank)."""
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in cols}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


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
