"""Scoring one task attempt: the hidden tests put in place, the check run sealed, one verdict.

`passed` means the check's program ran to its end and exited 0 (DESIGN §8): its own process
returned normally — no exception, no `SystemExit` (not even 0), no `os._exit`, no signal — which
only the sandbox's check runner can attest (sandbox_worker.run_check: a per-check seal that comes
back only then), nothing in the work dir shadowed the standard library, a module the tests import
or a hidden test, and nothing read or rewired the runner (object walks, other threads' frames,
tracing, ctypes, hand-made bytecode, /proc/*/mem). Anything else is `failed`, with a note that says
which: `grade` returns it in the attempt's detail (`check_note`), `goat results RUN --full` shows it.
"""

from __future__ import annotations

import ast
import posixpath
from dataclasses import dataclass
from typing import Any

from goat_dagster.bench.sandbox import (
    CheckPlan,
    CheckRun,
    ExecResult,
    Sandbox,
    SandboxFileError,
    SandboxPathError,
)
from goat_dagster.bench.tasks import Task


@dataclass(frozen=True)
class Verdict:
    status: str  # passed | failed
    note: str  # why it failed, in one line ("" when it passed)


def _module_of(path: str) -> str | None:
    """The top-level module a work-dir file makes importable (`pkg/x.py` -> `pkg`, `a.py` -> `a`)."""
    first, _, rest = path.partition("/")
    if rest:
        return first if first.isidentifier() else None
    stem, dot, ext = first.rpartition(".")
    return stem if dot and ext in ("py", "pyc", "pyw", "so") and stem.isidentifier() else None


_BLOCK_NODES = (ast.stmt, ast.excepthandler, ast.match_case)  # what holds statements


def _imports(source: str) -> set[str]:
    """Top-level modules a test file imports (absolute imports only)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    stack: list[ast.AST] = list(tree.body)
    while stack:  # statements only (an import is one, anywhere): not every expression node of ast.walk
        node = stack.pop()
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        for _field, value in ast.iter_fields(node):
            if isinstance(value, list):
                stack.extend(v for v in value if isinstance(v, _BLOCK_NODES))
    return names


def check_plan(task: Task) -> CheckPlan:
    """What the check runner must know: the modules the task hands the agent (its `files`: those
    may have a standard library name, e.g. a task about `queue.py`), the hidden tests and what they
    import (nothing else in the work dir may shadow those or the standard library). The reference
    does not count: it is what a solution might look like, and the oracle checks the suite."""
    own = {m for p in task.files if (m := _module_of(p))}
    tests = {p: src for p, src in task.tests.items() if p.endswith(".py")}
    test_modules = {m for p in tests if (m := _module_of(p))}
    protect = set().union(*(_imports(src) for src in tests.values())) if tests else set()
    return CheckPlan(
        expected=tuple(sorted(own - test_modules)),
        test_files=tuple(sorted(posixpath.normpath(p) for p in tests)),
        test_modules=tuple(sorted(test_modules)),
        protect=tuple(sorted(protect - own - test_modules)),
    )


def verdict(run: CheckRun, timeout_s: float) -> Verdict:
    """passed only when the seal came back, the exit status is 0 and nothing was refused."""
    res, notes = run.result, run.notes
    violations = [n.removeprefix("violation ") for n in notes if n.startswith("violation ")]
    outcome = next((n.removeprefix("outcome ") for n in notes if n.startswith("outcome ")), None)
    if res.killed == "timeout":
        return Verdict("failed", f"the check ran past its {timeout_s:g}s limit (killed)")
    if res.killed == "output":
        return Verdict("failed", "the check wrote more output than the sandbox keeps (killed)")
    if res.killed:
        return Verdict("failed", f"the check was killed ({res.killed})")
    if violations:
        return Verdict("failed", "refused: " + "; ".join(dict.fromkeys(violations)))
    if run.sealed:
        if res.exit_code == 0:
            return Verdict("passed", "")
        return Verdict(
            "failed",
            f"the tests ran to their end, but the program then exited {res.exit_code} (an exit handler "
            "or a thread changed its status)",
        )
    status0 = " (exit status 0 all the same)" if res.exit_code == 0 else ""
    if outcome is not None and outcome.startswith("exit "):
        what = outcome.removeprefix("exit ")
        return Verdict("failed", f"early exit: {what}, before the tests finished{status0}")
    if outcome is not None and outcome.startswith("raised "):
        return Verdict("failed", f"the tests failed: {outcome.removeprefix('raised ')}{status0}")
    if outcome == "returned":  # returned, yet no seal: the keeper refused or the channel was broken
        return Verdict("failed", "the program returned, but the seal did not come back (channel tampered)")
    if res.exit_code == 0:
        return Verdict(
            "failed",
            "the program ended with status 0 before its tests finished (os._exit, a signal handler or "
            "an exit hook ended the interpreter)",
        )
    return Verdict("failed", f"the check exited {res.exit_code} before its tests finished")


def grade(task: Task, sb: Sandbox) -> tuple[str, dict[str, Any], ExecResult | None]:
    """Put the hidden tests in place, run the check sealed, and score it: (status, detail, the
    check's own result, None when it never ran)."""
    try:
        sb.write_files(task.tests)
    except (SandboxFileError, SandboxPathError) as exc:
        note = f"the hidden tests could not be put in place: {exc}"
        return "failed", {"check": note, "check_note": note}, None
    run = sb.run_check(task.check, timeout_s=task.timeout_s, plan=check_plan(task))
    v = verdict(run, task.timeout_s)
    detail: dict[str, Any] = {
        "check_exit": run.result.exit_code,
        "check_killed": run.result.killed,
        "check_output": run.result.tail(2000),
        "check_sealed": run.sealed,
        "check_notes": list(run.notes),
    }
    if v.note:
        detail["check_note"] = v.note
    return v.status, detail, run.result
