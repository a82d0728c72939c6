"""What `goat run` and `goat results` print: a run's summary, the runs in the lake, a run's rows."""

from __future__ import annotations

from typing import Any

from goat_dagster.analysis.runs import journal_summary, run_summaries
from goat_dagster.bench.journal import journal_file, read_entries, read_spec, run_dirs
from goat_dagster.bench.lake import ResultRow, read_rows, results_dir
from goat_dagster.textfmt import format_table


def pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"


def summary_text(s: dict[str, Any]) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in (s.get("errors_by_kind") or {}).items() if v)
    errors = f"{s['errors']} errors{' (' + kinds + ')' if kinds else ''}"
    lines = [
        f"run {s['run_id']}: {s['model']} on {s['suite']} "
        f"({s.get('agent', '')}, {s.get('sandbox', '')} sandbox)",
        f"  {s['passed']}/{s['passed'] + s['failed']} scored tasks passed ({pct(s['pass_rate'])}); "
        f"{s['failed']} failed; {errors}, not scored",
        f"  {s['n']} rows, {s['wall_s']:.1f}s, cost ${s['cost_usd']:.6f}",
    ]
    if s.get("unscored"):  # a run of free-form prompts: answered, nothing judged them
        lines[1] = f"  {s['unscored']} prompts answered (unscored: no check); {errors}"
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


def last_attempts(run_id: str) -> dict[tuple[str, int], tuple[ResultRow, dict[str, Any]]]:
    """The latest row of each (task, epoch) of a run's journal, with the note of its last attempt
    (error, check output; a prompt's answer and files)."""
    out: dict[tuple[str, int], tuple[ResultRow, dict[str, Any]]] = {}
    for e in read_entries(journal_file(run_id)):
        attempts = e.get("detail", {}).get("attempts") or []
        out[e["row"].key] = (e["row"], attempts[-1] if attempts else {})
    return out


def prompt_answers(run_id: str) -> list[dict[str, Any]]:
    """Each free-form prompt of a run: its status, what the agent answered, the files it wrote."""
    out = []
    for (task_id, epoch), (row, last) in sorted(last_attempts(run_id).items()):
        if row.status in ("unscored", "error"):
            out.append(
                {
                    "task_id": task_id,
                    "epoch": epoch,
                    "status": row.status,
                    "error_kind": row.error_kind,
                    "answer": last.get("answer"),
                    "stop": last.get("stop"),  # why the agent stopped (answered, step limit, ...)
                    "error": last.get("error"),
                    "files": last.get("files") or {},
                }
            )
    return out


def answers_text(answers: list[dict[str, Any]]) -> str:
    blocks = []
    for a in answers:
        kind = f" ({a['error_kind']})" if a["error_kind"] else ""
        stopped = f"(no answer: {a['stop']})" if a.get("stop") else "(no answer)"
        body = str(a["answer"] or a["error"] or stopped).strip()
        listing = "".join(f"\n  {path} ({len(text)} chars)" for path, text in sorted(a["files"].items()))
        blocks.append(
            f"--- {a['task_id']} (epoch {a['epoch']}): {a['status']}{kind}\n{body}"
            + (f"\nfiles:{listing}" if listing else "")
        )
    return "\n\n".join(blocks)


def row_notes(run_id: str) -> dict[tuple[str, int], str]:
    """A one-line note per (task, epoch) from the journal: the error, why the check failed (the
    grader's note: an early exit, a shadowed module ...), the check's last line, or the first line
    of a prompt's answer."""
    notes: dict[tuple[str, int], str] = {}
    for row, last in last_attempts(run_id).values():
        answer = (last.get("answer") or "").strip().splitlines()[:1] if row.status == "unscored" else []
        text = (
            answer
            or last.get("error")
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


RUNS_COLUMNS = [
    "run_id",
    "model",
    "suite",
    "agent",
    "n",
    "passed",
    "failed",
    "errors",
    "unscored",
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
        runs = run_summaries()
        runs += incomplete_runs({r["run_id"] for r in runs})
        for r in runs:
            r.pop("rows", None)
        if not runs:
            return {"runs": []}, f"no runs yet in {results_dir()} (start one with `goat run`)"
        table = [
            {
                **r,
                "pass": pct(r["pass_rate"]) if not r.get("unscored") else "unscored",
                "state": "incomplete" if r.get("complete") is False else "done",
                "cost": f"{r['cost_usd']:.4f}",
            }
            for r in runs
        ]
        return {"runs": runs}, format_table(table, RUNS_COLUMNS)
    found = run_summaries(run_id=run_id)
    if found:
        summary, rows = found[0], read_rows(run_id) if full else []
    else:
        spec = read_spec(run_id)
        if spec is None:
            raise LookupError(f"no run {run_id!r} in {results_dir()} or its journals")
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
        if summary.get("unscored"):
            payload["answers"] = prompt_answers(run_id)
            text += "\n\n" + answers_text(payload["answers"])
    return payload, text
