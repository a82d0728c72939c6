"""What every asset module shares: owners, group names, markdown helpers."""

from __future__ import annotations

from goat_dagster.textfmt import markdown_table

__all__ = ["OWNERS", "markdown_table"]

OWNERS = ["team:goat-bench"]
