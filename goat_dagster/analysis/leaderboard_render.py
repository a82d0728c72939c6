"""The leaderboard rendered: markdown for the Dagster UI (the compact table, the details, the
per-task matrix, the A/B and paired comparisons, the setup notes) and text for a terminal."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from goat_dagster.analysis.compare import Comparison
from goat_dagster.analysis.leaderboard import Leaderboard, RunComparison
from goat_dagster.analysis.pair_matrix import FLIPS
from goat_dagster.bench.lake import ERROR_KINDS
from goat_dagster.textfmt import format_table, markdown_table

# The Dagster UI shows markdown metadata under ~1000 characters inline in a narrow column, longer
# markdown behind "[Show Markdown]" in a wide dialog: `leaderboard_markdown` is the compact table,
# `details_markdown` the full one.

NOTES = [
    "errors (infra, timeout, agent, budget) are never scored; scored/planned shows how many attempts count",
    "pass@1 = passed / (passed + failed); 95% interval: Wilson (1 epoch), task-clustered (Miller 2024)",
    "errors as failures: the interval's lower end when every error counts as a failed attempt",
    "rank: 1 + models significantly better on shared tasks (exact McNemar p < 0.05 with one epoch, "
    "the paired 95% interval with several); equal ranks are not told apart",
    "pass@k: unbiased estimator (Chen et al. 2021), k = epochs",
    "cost/solved = run cost / passed attempts",
    "latency p50/p95: per LLM call (traces), per task (wall time)",
]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ci(r: dict[str, Any]) -> str:
    return "-" if r["ci_low"] is None else f"{100 * r['ci_low']:.1f}-{100 * r['ci_high']:.1f}"


def _floor(r: dict[str, Any]) -> str:
    """The errors-as-failures lower bound (only when errors make it differ)."""
    if r.get("strict_ci_low") is None:
        return "-"
    return f"≥{100 * r['strict_ci_low']:.1f}%"


def _secs(a: float | None, b: float | None) -> str:
    return "-" if a is None else f"{a:.2f} / {b:.2f}"


def _usd(x: float | None) -> str:
    if x is None:
        return "-"
    return "$0" if x == 0 else f"${x:.4g}"


def _errors(r: dict[str, Any]) -> str:
    kinds = [(k, r[f"errors_{k}"]) for k in (*ERROR_KINDS, "other")]
    parts = [f"{k} {n}" for k, n in kinds if n]
    return f"{r['errors']} ({', '.join(parts)})" if parts else str(r["errors"])


def _pass_at_k(r: dict[str, Any]) -> str:
    if r["k"] is None:
        return "-"
    partial = f" ({r['pass_at_k_tasks']}/{r['tasks']} tasks)" if r["pass_at_k_tasks"] < r["tasks"] else ""
    return f"pass@{r['k']} {_pct(r['pass_at_k'])}{partial}"


def display_rows(board: Leaderboard) -> list[dict[str, str]]:
    """Every leaderboard column as formatted text, one dict per ranked run."""
    out = []
    for r in board.rows:
        out.append(
            {
                "rank": str(board.ranks.get(r["run_id"], "-")),
                "model": r["model"],
                "suite": r["suite"],
                "run": r["run_id"],
                "tasks": str(r["tasks"]),
                "epochs": str(r["epochs"]),
                "scored": str(r["scored"]),
                "passed": str(r["passed"]),
                "failed": str(r["failed"]),
                "errors": _errors(r),
                "pass@1": _pct(r["pass_rate"]),
                "95% CI": _ci(r),
                "interval": r.get("ci_method") or "-",
                "scored/planned": f"{r['scored']}/{r.get('planned') or r['attempts']}",
                "errors as failures": _floor(r),
                "pass@k": _pass_at_k(r),
                "cost": _usd(r["cost_usd"]),
                "cost/solved": _usd(r["cost_per_solved"]),
                "calls": str(r["calls"]),
                "call p50/p95 s": _secs(r["call_p50_s"], r["call_p95_s"]),
                "task p50/p95 s": _secs(r["task_p50_s"], r["task_p95_s"]),
                "tokens in/out": "-"
                if r["prompt_tokens"] is None
                else f"{r['prompt_tokens']} / {r['completion_tokens']}",
            }
        )
    return out


def _with_suite(board: Leaderboard, columns: list[str]) -> list[str]:
    return columns if len(board.suites) <= 1 else [columns[0], "suite", *columns[1:]]


def _errors_short(r: dict[str, Any]) -> str:
    parts = [f"{k} {r[f'errors_{k}']}" for k in (*ERROR_KINDS, "other") if r[f"errors_{k}"]]
    return ", ".join(parts) or "0"


def setup_notes(board: Leaderboard, *, full: bool) -> list[str]:
    """Markdown lines: whether the runs could be ranked (what differs), and the latest runs left out
    for another setup; `full` lists every value, otherwise one line each."""
    lines: list[str] = []
    if board.mismatches:
        head = (
            "**Ranked despite differences** (allow_mismatch)"
            if board.ranked
            else "**Not ranked**: the runs differ in more than the model; listed by model "
            "(allow_mismatch ranks them anyway)"
        )
        fields = list(dict.fromkeys(m.field for m in board.mismatches))
        if full:
            lines += [f"{head}:", *(f"- {m.suite}: {m}" for m in board.mismatches)]
        else:
            shown = ", ".join(fields[:5]) + (f", … ({len(fields) - 5} more)" if len(fields) > 5 else "")
            lines.append(f"{head}. They differ in: {shown}.")
    if board.outdated:
        if full:
            lines.append("Latest runs left out (made with another setup than the current one):")
            lines += [f"- {o['model']} on {o['suite']}: {o['run_id']} ({o['why']})" for o in board.outdated]
        else:
            lines.append(
                f"{len(board.outdated)} latest run(s) left out: made with another prompt set, harness "
                "or grader than the current ones (see details)."
            )
    return lines


COMPACT_COLUMNS = [
    "rank",
    "model",
    "pass@1",
    "95% CI",
    "passed",
    "scored/planned",
    "errors as failures",
    "$/solved",
]

RunLink = Callable[[str], str]  # run id -> the address of its page (the viewer's)


def _link(text: str, url: str | None) -> str:
    return f"[{text}]({url})" if url else text


INLINE_MD_CHARS = 1000  # the Dagster UI shows shorter markdown metadata inline, longer behind a button


def leaderboard_markdown(board: Leaderboard, run_url: RunLink | None = None) -> str:
    """The compact leaderboard (fits the UI's metadata column): model, pass@1 and its interval,
    passed of scored, errors by kind, cost per solved task. With `run_url`, each model links to its
    run while the table still fits inline (`details_markdown` always links)."""
    if not board.rows:
        return "\n\n".join(["_No benchmark results in the lake yet._", *setup_notes(board, full=False)])
    rows = [
        {
            **d,
            "passed": f"{d['passed']}/{d['scored']}",
            "errors": _errors_short(r),
            "$/solved": d["cost/solved"],
        }
        for d, r in zip(display_rows(board), board.rows, strict=True)
    ]
    columns = _with_suite(board, COMPACT_COLUMNS)
    note = (
        f"\n\n{board.selection}; errors are not scored (errors as failures: the lower 95% bound if they "
        "were); rank by paired tests on shared tasks."
    )
    notes = "\n\n".join(setup_notes(board, full=False))
    head = notes + "\n\n" if notes and not board.ranked else ""
    note += "\n\n" + notes if notes and board.ranked else ""
    plain = head + markdown_table(rows, columns) + note
    if run_url is None:
        return plain
    linked = [
        {**d, "model": _link(d["model"], run_url(r["run_id"]))} for d, r in zip(rows, board.rows, strict=True)
    ]
    text = head + markdown_table(linked, columns) + note
    return text if len(text) < INLINE_MD_CHARS else plain


DETAIL_COLUMNS = [
    "rank",
    "model",
    "suite",
    "run",
    "tasks",
    "epochs",
    "scored",
    "passed",
    "failed",
    "errors",
    "pass@1",
    "95% CI",
    "interval",
    "scored/planned",
    "errors as failures",
    "pass@k",
    "cost",
    "cost/solved",
    "calls",
    "call p50/p95 s",
    "task p50/p95 s",
    "tokens in/out",
]


def details_markdown(board: Leaderboard, run_url: RunLink | None = None) -> str:
    """Every column of the leaderboard, with the definitions of the numbers; with `run_url`, each
    run links to its page."""
    if not board.rows:
        return "_No benchmark results in the lake yet._"
    notes = "\n".join(f"- {n}" for n in [f"runs: {board.selection}", *NOTES])
    skipped = f"\n- skipped unreadable lake files: {len(board.skipped_files)}" if board.skipped_files else ""
    rows = [
        {**d, "run": _link(d["run"], run_url(d["run"]) if run_url else None)} for d in display_rows(board)
    ]
    setup = "\n".join(setup_notes(board, full=True))
    return markdown_table(rows, DETAIL_COLUMNS) + "\n\n" + notes + skipped + (f"\n\n{setup}" if setup else "")


MATRIX_MD_TASKS = 100  # tasks per suite in the asset's matrix; goat view's leaderboard pages through all


def matrix_markdown(
    board: Leaderboard, task_url: Callable[[str, str], str] | None = None, limit: int = MATRIX_MD_TASKS
) -> str:
    """One table per suite: tasks down, models across; ✓ passed, ✗ failed, E:<kind> error,
    `passed/scored` when a task ran several epochs. With `task_url` (run id, task id -> address),
    each cell links to what the agent did. The first `limit` tasks of each suite (by id), and how
    many more there are."""
    if not board.tasks:
        return "_No task results yet._"
    parts = []
    for suite in board.tasks.suites():
        runs = [r for r in board.rows if r["suite"] == suite]
        models = [r["model"] for r in runs]
        task_ids = board.tasks.task_ids(suite)
        shown = board.tasks.cells(suite, task_ids[:limit], columns=("run_id", "cell"))
        rows: list[dict[str, Any]] = []
        for task in task_ids[:limit]:
            by_model = shown.get(task, {})
            cells = {}
            for m in models:
                t = by_model.get(m)
                url = task_url(t["run_id"], t["task_id"]) if task_url and t else None
                cells[m] = _link(t["cell"], url) if t else "-"
            rows.append({"task": task, **cells})
        if len(task_ids) > limit:
            rows.append({"task": f"… {len(task_ids) - limit} more tasks", **{m: "" for m in models}})
        rows.append({"task": "**passed**", **{r["model"]: f"{r['passed']}/{r['scored']}" for r in runs}})
        parts.append(f"**{suite}**\n\n" + markdown_table(rows, ["task", *models]))
    legend = "- ✓ passed, ✗ failed\n- E:kind error (not scored)\n- p/s: passed of scored epochs"
    return "\n\n".join(parts) + "\n\n" + legend


def _tasks(c: RunComparison, change: str, limit: int = 20) -> str:
    ids = [task_id for task_id, changed in c.changes() if changed == change]
    return ", ".join(ids[:limit]) + (f", … ({len(ids) - limit} more)" if len(ids) > limit else "")


def comparison_markdown(comparisons: Sequence[RunComparison], paired: Sequence[Comparison] = ()) -> str:
    if not comparisons:
        return "_No comparison: no model has two runs of the same suite yet._"
    by_pair = {(p.run_a.run_id, p.run_b.run_id): p for p in paired}
    parts = []
    for c in comparisons:
        lines = [f"- **A**: {c.label_a}", f"- **B**: {c.label_b}"]
        if c.differences:
            shown = "; ".join(str(d) for d in c.differences[:6]) + (" …" if len(c.differences) > 6 else "")
            lines.append(f"- **also differ in** (A vs B): {shown}")
        if (c.run_a, c.run_b) in by_pair:
            lines.append(f"- paired: {by_pair[(c.run_a, c.run_b)].summary()}")
        for change in ("pass→fail", "fail→pass"):
            n = c.counts[change]
            lines.append(f"- {change}: {n}" + (f" ({_tasks(c, change)})" if n else ""))
        lines.append(f"- unchanged: {c.counts['unchanged']}, not comparable: {c.counts['not comparable']}")
        parts.append("\n".join(lines))
    return "\n\n---\n\n".join(parts)


def paired_markdown(board: Leaderboard) -> str:
    """How the ranks came about: each ranked run against the next one down (and the rule)."""
    if not board.paired:
        return "_No paired comparison: a suite needs two ranked models._"
    lines = []
    for suite in board.suites:
        runs = [r for r in board.rows if r["suite"] == suite]
        for ahead, after in itertools.pairwise(runs):
            pair = {ahead["run_id"], after["run_id"]}
            c = next((p for p in board.paired if {p.run_a.run_id, p.run_b.run_id} == pair), None)
            if c is not None:
                lines.append(f"- **{c.run_a.model}** vs **{c.run_b.model}** ({suite}): {c.summary()}")
    rule = (
        "\n\nB - A on the tasks both runs scored; significant: exact McNemar p < 0.05 (one epoch) or "
        "a paired 95% interval without 0 (several). A model ranks below another only when it is "
        "significantly worse."
    )
    return "\n".join(lines) + rule


# a terminal is narrower: the details without the counts of tasks, epochs and calls, cost, tokens,
# the interval's method and the coverage (the scored column stays)
TEXT_COLUMNS = [
    c
    for c in DETAIL_COLUMNS
    if c not in ("tasks", "epochs", "cost", "calls", "tokens in/out", "interval", "scored/planned")
]


def render_leaderboard_text(board: Leaderboard) -> str:
    """The leaderboard and the A/B flips as plain text for a terminal (`goat demo`, `goat results`)."""
    setup = [line.replace("**", "") for line in setup_notes(board, full=True)]
    if not board.rows:
        return "\n".join(["No benchmark results in the lake yet.", *setup])
    lines = [
        format_table(display_rows(board), TEXT_COLUMNS),
        "",
        f"runs: {board.selection}; " + "; ".join(NOTES),
        *setup,
    ]
    for c, p in zip(board.comparisons, board._paired_ab(), strict=True):
        counts = ", ".join(f"{k} {n}" for k, n in c.counts.items())
        flips = "; ".join(f"{task_id} {change}" for task_id, change in c.changes() if change in FLIPS)
        lines.append(f"A/B {c.label_a} -> {c.label_b}: {counts}" + (f" ({flips})" if flips else ""))
        if c.differences:
            lines.append("  also differ in (A vs B): " + "; ".join(str(d) for d in c.differences))
        if p is not None:
            lines.append(f"    paired: {p.summary()}")
    if board.skipped_files:
        lines.append(f"skipped unreadable lake files: {len(board.skipped_files)}")
    return "\n".join(lines)
