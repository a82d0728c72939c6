"""What `goat run` and `goat results` show: progress, summaries, per-task tables."""

from __future__ import annotations

import sys
from typing import Any

from goat_dagster.bench import lake
from goat_dagster.bench.journal import RunSpec, journal_file, latest_rows, read_entries, read_spec, run_dirs
from goat_dagster.bench.lake import ResultRow
from goat_dagster.bench.runner import Progress
from goat_dagster.textfmt import format_table


class ProgressBar:
    """A tqdm bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar: Any = None

    def start(self, spec: RunSpec, pending: int, total: int) -> None:
        if not self.enabled or not pending:
            return
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            initial=total - pending,
            desc=f"{spec.model} · {spec.suite}",
            unit="task",
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def task(self, row: ResultRow, progress: Progress) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        postfix = {"pass": progress.passed, "fail": progress.failed, "err": progress.errors}
        if progress.cost_usd:
            postfix["usd"] = f"{progress.cost_usd:.4f}"
        self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"


def summary_text(s: dict[str, Any]) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in (s.get("errors_by_kind") or {}).items() if v)
    lines = [
        f"run {s['run_id']}: {s['model']} on {s['suite']} "
        f"({s.get('agent', '')}, {s.get('sandbox', '')} sandbox)",
        f"  {s['passed']}/{s['passed'] + s['failed']} scored tasks passed ({pct(s['pass_rate'])}); "
        f"{s['failed']} failed; {s['errors']} errors{' (' + kinds + ')' if kinds else ''}, not scored",
        f"  {s['n']} rows, {s['wall_s']:.1f}s, cost ${s['cost_usd']:.6f}",
    ]
    if s.get("projected_cost_usd") is not None and s.get("budget_usd") is not None:
        lines.append(
            f"  budget ${s['budget_usd']:.4f}, projected full-run cost ${s['projected_cost_usd']:.6f}"
        )
    if s.get("complete") is False:
        lines.append("  INCOMPLETE: resume with `goat run ... --run-id " + s["run_id"] + "`")
    for w in s.get("warnings") or []:
        lines.append(f"  warning: {w}")
    if s.get("results_path"):
        lines.append(f"  results: {s['results_path']}")
    return "\n".join(lines)


def row_notes(run_id: str) -> dict[tuple[str, int], str]:
    """A one-line note per (task, epoch) from the journal: the error, why the check failed (the
    grader's note: an early exit, a shadowed module ...), or the check's last line."""
    notes: dict[tuple[str, int], str] = {}
    for e in read_entries(journal_file(run_id)):
        row: ResultRow = e["row"]
        attempts = e.get("detail", {}).get("attempts") or []
        last = attempts[-1] if attempts else {}
        text = (
            last.get("error")
            or last.get("check_note")
            or (last.get("check_output") or "").strip().splitlines()[-1:]
            or ""
        )
        if isinstance(text, list):
            text = text[0] if text else ""
        if row.status == "passed":
            text = ""
        notes[row.key] = str(text)[:160]
    return notes


def incomplete_runs(known: set[str]) -> list[dict[str, Any]]:
    """Runs with a journal but no results file yet (killed, not resumed)."""
    out = []
    for d in run_dirs():
        if d.name in known:
            continue
        spec = read_spec(d.name)
        if spec is None:
            continue
        out.append(journal_summary(spec))
    return out


def journal_summary(spec: RunSpec) -> dict[str, Any]:
    """A run not yet in the lake (killed, or still going), summarized from its journal."""
    rows = list(latest_rows(read_entries(journal_file(spec.run_id))).values())
    return {
        "run_id": spec.run_id,
        "model": spec.model,
        "suite": spec.suite,
        **lake.summarize(rows),
        "suite_version": spec.suite_version,
        "agent": spec.agent,
        "sandbox": spec.sandbox,
        "epochs": spec.epochs,
        "complete": False,
        "rows": [r.model_dump(mode="json") for r in rows],
    }


RUNS_COLUMNS = [
    "run_id",
    "model",
    "suite",
    "agent",
    "n",
    "passed",
    "failed",
    "errors",
    "pass",
    "cost",
    "state",
]
ROW_COLUMNS = [
    "task_id",
    "epoch",
    "status",
    "error_kind",
    "wall_s",
    "steps",
    "tool_calls",
    "tokens",
    "cost_usd",
    "note",
]


def results_view(run_id: str | None, full: bool) -> tuple[dict[str, Any], str]:
    """`goat results`: (the --json object, the text). Raises LookupError for an unknown run."""
    if run_id is None:
        runs = lake.run_summaries()
        runs += incomplete_runs({r["run_id"] for r in runs})
        for r in runs:
            r.pop("rows", None)
        if not runs:
            return {"runs": []}, f"no runs yet in {lake.results_dir()} (start one with `goat run`)"
        table = [
            {
                **r,
                "pass": pct(r["pass_rate"]),
                "state": "incomplete" if r.get("complete") is False else "done",
                "cost": f"{r['cost_usd']:.4f}",
            }
            for r in runs
        ]
        return {"runs": runs}, format_table(table, RUNS_COLUMNS)
    found = lake.run_summaries(run_id=run_id)
    if found:
        summary, rows = found[0], lake.read_rows(run_id) if full else []
    else:
        spec = read_spec(run_id)
        if spec is None:
            raise LookupError(f"no run {run_id!r} in {lake.results_dir()} or its journals")
        summary = journal_summary(spec)
        all_rows = summary.pop("rows")
        rows = all_rows if full else []
    payload = {"run": summary, **({"rows": rows} if full else {})}
    text = summary_text(summary)
    if full:
        notes = row_notes(run_id)
        table = [
            {
                **r,
                "tokens": r["prompt_tokens"] + r["completion_tokens"],
                "error_kind": r["error_kind"] or "",
                "wall_s": f"{r['wall_s']:.2f}",
                "note": notes.get((r["task_id"], r["epoch"]), ""),
            }
            for r in rows
        ]
        text += "\n\n" + format_table(table, ROW_COLUMNS)
    return payload, text
