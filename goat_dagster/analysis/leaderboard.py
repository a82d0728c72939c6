"""The leaderboard across models, the per-task matrix and A/B comparisons of runs, from the warehouse SQL.

Entry point: `build_leaderboard()` reads the lake in an in-memory snapshot (see warehouse.py for the
definitions of every number) and returns a `Leaderboard`; the `*_markdown` functions render it for the
Dagster UI, `render_leaderboard_text` for a terminal.

Which run counts for a model: by default the latest run per (model, suite) among the runs made with
the current prompt set, harness and grader (latest start, then latest finish, then greatest run_id:
the `leaderboard` view); the latest runs it leaves out are listed (`outdated`). Pass `run_ids` to
rank chosen runs instead. Runs of a suite are ranked only when their manifests agree on everything
but the model (comparability.py); otherwise they are listed by model, not ranked, with what
differs (`mismatches`), unless `allow_mismatch`.
Comparisons: by default each ranked run against the previous run of the same (model, suite), when
there is one; pass `compare=(run_a, run_b)` for any two runs. Each says what else differed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import duckdb

from goat_dagster import config
from goat_dagster.analysis.comparability import (
    Mismatch,
    board_mismatches,
    manifest_differences,
    manifests_of,
    outdated_runs,
)
from goat_dagster.analysis.compare import Comparison, UnknownRunError, comparisons_and_ranks
from goat_dagster.analysis.snapshot import LakeSnapshot, open_snapshot, query
from goat_dagster.analysis.task_health import TaskHealth, task_health_in
from goat_dagster.analysis.task_matrix import TaskMatrix
from goat_dagster.bench.lake import ERROR_KINDS
from goat_dagster.bench.manifest import Difference
from goat_dagster.textfmt import format_table, markdown_table

SELECTION_LATEST = "latest run per (model, suite) with the current prompt set and harness"
CHANGES = ("pass→fail", "fail→pass", "unchanged", "not comparable")


@dataclass(frozen=True)
class RunComparison:
    """Per-task A/B of two runs: `rows` from `ab_compare(run_a, run_b)` (every task; in a
    leaderboard only the flipped ones, all it shows of them), `counts` per change."""

    run_a: str
    run_b: str
    label_a: str
    label_b: str
    rows: list[dict[str, Any]]
    counts: dict[str, int]
    differences: list[Difference] = field(default_factory=list)  # besides the model (manifests)

    @property
    def flipped(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["change"] in ("pass→fail", "fail→pass")]

    @property
    def comparable(self) -> bool:
        return not self.differences

    def to_json(self, *, refused: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "label_a": self.label_a,
            "label_b": self.label_b,
            "comparable": self.comparable,
            "differences": [{"field": d.field, "a": d.a, "b": d.b} for d in self.differences],
            "refused": refused,
        }
        if not refused:
            out.update(counts=self.counts, flipped=self.flipped)
        return out


@dataclass(frozen=True)
class Leaderboard:
    """Rows of `run_summary` for the ranked runs (best pass rate first within a suite), their
    `task_outcomes`, and how the runs were chosen."""

    rows: list[dict[str, Any]]
    tasks: TaskMatrix  # the task_outcomes rows of the ranked runs, as dicts when read
    selection: str
    result_rows: int = 0
    trace_rows: int = 0
    runs_in_lake: int = 0
    skipped_files: list[str] = field(default_factory=list)
    comparisons: list[RunComparison] = field(default_factory=list)
    ranked: bool = True  # False: the runs differ in more than the model; listed by model instead
    mismatches: list[Mismatch] = field(default_factory=list)
    outdated: list[dict[str, Any]] = field(default_factory=list)  # latest runs left out, and why
    current: dict[str, Any] = field(default_factory=dict)  # the setup runs are chosen by
    paired_ab: list[Comparison] = field(default_factory=list)  # the A/B comparisons' paired statistics
    ranks: dict[str, int] = field(default_factory=dict)  # run id -> rank by paired differences
    paired: list[Comparison] = field(default_factory=list)  # every pair of ranked runs of a suite
    health: list[TaskHealth] = field(default_factory=list)

    @property
    def suites(self) -> list[str]:
        return sorted({r["suite"] for r in self.rows})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO strings) for `--json` output."""

        def clean(row: dict[str, Any]) -> dict[str, Any]:
            return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}

        return {
            "selection": self.selection,
            "result_rows": self.result_rows,
            "trace_rows": self.trace_rows,
            "runs_in_lake": self.runs_in_lake,
            "skipped_files": self.skipped_files,
            "current_setup": self.current,
            "ranked": self.ranked,
            "mismatches": [m.as_dict() for m in self.mismatches],
            "outdated": self.outdated,
            "leaderboard": [clean(r) for r in self.rows],
            "tasks": [clean(r) for r in self.tasks],
            "comparisons": [
                c.to_json() | ({"paired": p.model_dump(mode="json")} if p is not None else {})
                for c, p in zip(self.comparisons, self._paired_ab(), strict=True)
            ],
            "ranks": self.ranks,
            "paired_comparisons": [c.model_dump(mode="json") for c in self.paired],
            "task_health": [h.model_dump(mode="json") for h in self.health if h.flags],
        }

    def _paired_ab(self) -> list[Comparison | None]:
        by_pair = {(c.run_a.run_id, c.run_b.run_id): c for c in self.paired_ab}
        return [by_pair.get((c.run_a, c.run_b)) for c in self.comparisons]


def _order(rows: list[dict[str, Any]], ranks: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """By suite, then rank by paired differences (when known), then pass rate."""

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        rank = (ranks or {}).get(r["run_id"])
        unranked = rank is None and bool(ranks)
        return (
            r["suite"],
            unranked,
            rank or 0,
            r["pass_rate"] is None,
            -(r["pass_rate"] or 0.0),
            r["model"],
            r["run_id"],
        )

    return sorted(rows, key=key)


def _by_model(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["suite"], r["model"], r["run_id"]))


def compute_leaderboard(
    snapshot: LakeSnapshot, run_ids: Sequence[str] | None = None, *, allow_mismatch: bool = False
) -> Leaderboard:
    """The leaderboard of one snapshot: the `leaderboard` view, or the given runs of `run_summary`;
    ranked only when the runs of each suite differ in nothing but the model, or `allow_mismatch`."""
    con = snapshot.con
    if run_ids:
        ids = list(dict.fromkeys(run_ids))
        rows = query(con, "SELECT * EXCLUDE (recency) FROM run_summary WHERE list_contains(?, run_id)", [ids])
        missing = sorted(set(ids) - {r["run_id"] for r in rows})
        if missing:
            raise UnknownRunError(f"run(s) not in the results lake: {', '.join(missing)}")
        tasks = TaskMatrix.query(
            con,
            "SELECT * FROM task_outcomes WHERE list_contains(?, run_id) ORDER BY suite, task_id, model",
            [ids],
        )
        selection = "runs " + ", ".join(ids)
    else:
        rows = query(con, "SELECT * FROM leaderboard")
        tasks = TaskMatrix.query(con, "SELECT * FROM task_matrix")
        selection = SELECTION_LATEST
    runs = con.execute("SELECT count(*) FROM run_summary").fetchone()
    attempts = con.execute("SELECT sum(attempts) FROM run_summary").fetchone()
    mismatches = board_mismatches(con, rows)
    ranked = not mismatches or allow_mismatch
    current = query(con, "SELECT * FROM current_setup")
    return Leaderboard(
        rows=_order(rows) if ranked else _by_model(rows),  # build_leaderboard ranks by paired tests
        tasks=tasks,
        selection=selection,
        result_rows=int(attempts[0] or 0) if attempts else 0,  # = count(*) of results: each row once
        trace_rows=snapshot.count("traces"),
        runs_in_lake=int(runs[0]) if runs else 0,
        skipped_files=list(snapshot.skipped),
        ranked=ranked,
        mismatches=mismatches,
        outdated=[] if run_ids else outdated_runs(con),
        current=current[0] if current else {},
    )


def compare_runs(con: duckdb.DuckDBPyConnection, run_a: str, run_b: str) -> RunComparison:
    """Which tasks flipped between run A and run B (pass→fail, fail→pass) and the counts per change."""
    return compare_run_pairs(con, [(run_a, run_b)])[0]


def compare_run_pairs(
    con: duckdb.DuckDBPyConnection, pairs: Sequence[tuple[str, str]], *, flips_only: bool = False
) -> list[RunComparison]:
    """`compare_runs` of each (run A, run B): one query for all of them (`ab_compare_pairs`), the
    runs' labels and manifests read once. `flips_only`: keep only the flipped tasks' rows (with
    the counts of every change), what a leaderboard shows, not a row per task of every pair."""
    if not pairs:
        return []
    ids = list(dict.fromkeys(run for pair in pairs for run in pair))
    labels = {
        run_id: f"{model} on {suite} ({run_id})"
        for run_id, model, suite in con.execute(
            """SELECT DISTINCT ON (run_id) run_id, model, suite FROM run_summary
               WHERE list_contains(?, run_id)""",
            [ids],
        ).fetchall()
    }
    unknown = [run_id for run_id in ids if run_id not in labels]
    if unknown:
        raise UnknownRunError(f"run not in the results lake: {unknown[0]}")
    runs_ab = [[a for a, _ in pairs], [b for _, b in pairs]]
    flips = " WHERE change IN ('pass→fail', 'fail→pass')" if flips_only else ""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in query(con, f"SELECT * FROM ab_compare_pairs(?, ?){flips}", runs_ab):
        rows.setdefault((r.pop("pair_a"), r.pop("pair_b")), []).append(r)
    counted: dict[tuple[str, str], dict[str, int]] = {}
    if flips_only:
        for a, b, change, n in con.execute(
            "SELECT pair_a, pair_b, change, count(*) FROM ab_compare_pairs(?, ?) GROUP BY ALL", runs_ab
        ).fetchall():
            counted.setdefault((a, b), {})[change] = n
    manifests = manifests_of(con, ids)
    out = []
    for a, b in pairs:
        mine = rows.get((a, b), [])
        counts = {c: 0 for c in CHANGES}
        if flips_only:
            counts.update(counted.get((a, b), {}))
        else:
            for r in mine:
                counts[r["change"]] += 1
        differences = manifest_differences(manifests.get(a), manifests.get(b))
        out.append(RunComparison(a, b, labels[a], labels[b], mine, counts, differences))
    return out


def previous_runs(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> list[tuple[str, str]]:
    """(previous run, run) for each run that has an earlier run of the same (model, suite)."""
    return [
        (prev, run)
        for run, prev in con.execute(
            """SELECT s.run_id, p.run_id FROM run_summary s
               JOIN run_summary p ON p.model = s.model AND p.suite = s.suite AND p.recency = s.recency + 1
               WHERE list_contains(?, s.run_id) ORDER BY s.suite, s.model""",
            [list(run_ids)],
        ).fetchall()
    ]


def build_leaderboard(
    paths: config.GoatPaths | None = None,
    *,
    run_ids: Sequence[str] | None = None,
    compare: tuple[str, str] | None = None,
    allow_mismatch: bool = False,
    summaries: bool = True,
) -> Leaderboard:
    """Leaderboard, per-task outcomes and A/B comparisons from one in-memory snapshot of the lake.

    `run_ids`: rank these runs instead of the latest per (model, suite). `compare`: the one A/B to
    make; by default every ranked run against its (model, suite)'s previous run. `allow_mismatch`:
    rank runs that differ in more than the model (what differs is shown either way). `summaries`:
    read the runs' summaries (summaries.py), not their rows: the same numbers, sooner.
    """
    with open_snapshot(paths, summaries=summaries) as snap:
        board = compute_leaderboard(snap, run_ids, allow_mismatch=allow_mismatch)
        pairs = [compare] if compare else previous_runs(snap.con, [r["run_id"] for r in board.rows])
        comparisons = compare_run_pairs(snap.con, pairs, flips_only=True)
        paired_ab, ranks, paired = comparisons_and_ranks(snap.con, pairs, board.rows if board.ranked else [])
        health = task_health_in(snap.con)
    return replace(
        board,
        rows=_order(board.rows, ranks) if board.ranked else board.rows,
        comparisons=comparisons,
        paired_ab=paired_ab,
        ranks=ranks,
        paired=paired,
        health=health,
    )


# ---- rendering -----------------------------------------------------------------------------------
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
        shown = board.tasks.cells(suite, task_ids[:limit])
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


def _tasks(rows: list[dict[str, Any]], change: str, limit: int = 20) -> str:
    ids = [r["task_id"] for r in rows if r["change"] == change]
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
            lines.append(f"- {change}: {n}" + (f" ({_tasks(c.rows, change)})" if n else ""))
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
        flips = "; ".join(f"{r['task_id']} {r['change']}" for r in c.flipped)
        lines.append(f"A/B {c.label_a} -> {c.label_b}: {counts}" + (f" ({flips})" if flips else ""))
        if c.differences:
            lines.append("  also differ in (A vs B): " + "; ".join(str(d) for d in c.differences))
        if p is not None:
            lines.append(f"    paired: {p.summary()}")
    if board.skipped_files:
        lines.append(f"skipped unreadable lake files: {len(board.skipped_files)}")
    return "\n".join(lines)
