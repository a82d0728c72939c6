"""Plain-text rendering shared by the CLI and the domain code that prints for a terminal."""

from __future__ import annotations

from typing import Any


def format_table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    """`rows` as left-aligned columns `cols` under an upper-case header (missing values blank)."""
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in cols}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)
