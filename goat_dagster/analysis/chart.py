"""The leaderboard chart (matplotlib, Agg backend): pass@1 with its 95% interval per model, and what a
solved task costs (or, when no model has a cost, how long a task takes) against the pass rate."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from goat_dagster.atomic import written_aside


def _label(row: dict[str, Any], many_suites: bool) -> str:
    return f"{row['model']} ({row['suite']})" if many_suites else row["model"]


def render_chart(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Write the chart of leaderboard `rows` (run_summary dicts) as a PNG; None when there are no rows.

    Written to a temporary name and renamed, so a reader never sees half a file.
    """
    if not rows:
        return None
    # imported here, not at the top: matplotlib costs ~0.5-1 s of import, and every process that loads
    # the code location (each Dagster run worker) would pay it, while only this asset draws. A Figure
    # of its own, not pyplot: no global figure registry, no backend to select, Agg for the PNG.
    from matplotlib.figure import Figure

    many_suites = len({r["suite"] for r in rows}) > 1
    ranked = list(reversed(rows))  # barh draws bottom-up: best at the top
    labels = [_label(r, many_suites) for r in ranked]
    rates = [100 * (r["pass_rate"] or 0.0) for r in ranked]
    low = [
        max(0.0, rate - 100 * r["ci_low"]) if r["ci_low"] is not None else 0.0  # float noise at 0%
        for rate, r in zip(rates, ranked, strict=True)
    ]
    high = [
        max(0.0, 100 * r["ci_high"] - rate) if r["ci_high"] is not None else 0.0
        for rate, r in zip(rates, ranked, strict=True)
    ]

    fig = Figure(figsize=(11, max(3.0, 0.5 * len(rows) + 1.6)))
    bars, scatter = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    y = range(len(ranked))
    bars.barh(y, rates, xerr=[low, high], color="#4f7cac", ecolor="#333333", capsize=4)
    bars.set_yticks(list(y), labels)
    bars.set_xlim(0, 105)
    bars.set_xlabel("pass@1 (%) with 95% Wilson interval")
    for i, r in enumerate(ranked):
        note = f"{r['passed']}/{r['scored']}" if r["scored"] else "no scored attempts"
        if r["errors"]:
            note += f", {r['errors']} err"
        bars.text(
            1, i, note, va="center", ha="left", fontsize=8, color="white" if rates[i] > 25 else "#333333"
        )
    bars.set_title("Pass rate by model")

    costs = [r["cost_per_solved"] for r in rows]
    if any(c for c in costs):
        xs, xlabel, title = costs, "cost per solved task (USD)", "Cost vs pass rate"
    else:
        xs, xlabel, title = [r["task_p50_s"] for r in rows], "median task time (s)", "Task time vs pass rate"
    for r, x in zip(rows, xs, strict=True):
        if x is None or r["pass_rate"] is None:
            continue
        scatter.scatter([x], [100 * r["pass_rate"]], color="#c0504d")
        scatter.annotate(
            _label(r, many_suites),
            (x, 100 * r["pass_rate"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    scatter.set_xlabel(xlabel)
    scatter.set_ylabel("pass@1 (%)")
    scatter.set_ylim(-5, 105)
    shown = [x for x in xs if x is not None]
    scatter.set_xlim(0, 1.3 * max(shown) if shown and max(shown) > 0 else 1.0)  # room for the labels
    scatter.set_title(title)
    scatter.grid(alpha=0.3)

    fig.tight_layout()
    with written_aside(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    return path


def image_markdown(path: Path, alt: str) -> str:
    """Markdown showing a PNG inline as a data URI.

    The Dagster UI (1.13) renders markdown metadata with rehype-sanitize configured to allow `data:`
    image sources, so this shows the chart itself, behind "[Show Markdown]".
    """
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{data})"
