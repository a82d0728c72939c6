"""The warm interpreter behaves like a fresh `python`: same argv, path, exit codes, output, errors."""

from __future__ import annotations

import pytest

from goat_dagster.bench.local_sandbox import LocalSandboxPool
from goat_dagster.bench.sandbox_worker import plain_words

PROBE = """\
import os, sys
print("argv", sys.argv)
print("path0", sys.path[0])
print("cwd", os.getcwd())
print("name", __name__)
print("file", __file__)
print("env", os.environ.get("GOAT_SANDBOX"), "OPENAI_API_KEY" in os.environ)
print("to stderr", file=sys.stderr)
"""


def run_both(sb, cmd: str, timeout: float = 10):
    """(warm, cold) results of the same command; cold via `env` so the shell must exec python."""
    warm = sb.exec(cmd, timeout_s=timeout)
    cold = sb.exec("exec " + cmd, timeout_s=timeout)
    assert warm.warm and not cold.warm
    return warm, cold


def test_warm_python_matches_a_fresh_interpreter(pool: LocalSandboxPool) -> None:
    with pool.session() as sb:
        sb.write_files({"pkg/probe.py": PROBE, "pkg/__init__.py": "", "pkg/__main__.py": PROBE})
        for cmd in ("python pkg/probe.py a 'b c'", "python3 -B pkg/probe.py", "python -m pkg x"):
            warm, cold = run_both(sb, cmd)
            assert warm.stdout == cold.stdout, cmd
            assert warm.stderr == cold.stderr == "to stderr\n"
            assert warm.exit_code == cold.exit_code == 0
        warm, cold = run_both(sb, "python -c 'import sys; print(sys.argv, sys.path[0] == \"\")' q")
        assert warm.stdout == cold.stdout == "['-c', 'q'] True\n"


@pytest.mark.parametrize(
    ("code", "exit_code", "stderr_has"),
    [
        ("raise SystemExit(3)", 3, ""),
        ("import sys; sys.exit('bad input')", 1, "bad input"),
        ("raise ValueError('boom')", 1, "ValueError: boom"),
        ("import sys; sys.exit(None)", 0, ""),
        ("import atexit; atexit.register(lambda: print('bye'))", 0, ""),
        (
            "import threading, time; "
            "threading.Thread(target=lambda: (time.sleep(0.2), print('late'))).start()",
            0,
            "",
        ),
        ("import os; os._exit(7)", 7, ""),
    ],
)
def test_exits_and_errors_like_python(
    pool: LocalSandboxPool, code: str, exit_code: int, stderr_has: str
) -> None:
    with pool.session() as sb:
        sb.write_files({"prog.py": code + "\n"})
        warm, cold = run_both(sb, "python prog.py")
        assert warm.exit_code == cold.exit_code == exit_code
        assert stderr_has in warm.stderr and stderr_has in cold.stderr
        assert warm.stdout == cold.stdout
        if "Error" in stderr_has:  # the traceback shows the user's code, not the worker's frames
            assert warm.stderr.splitlines()[-1] == cold.stderr.splitlines()[-1]
            assert "sandbox_worker" not in warm.stderr and "runpy" not in warm.stderr


def test_shell_syntax_is_never_taken_warm(pool: LocalSandboxPool) -> None:
    with pool.session() as sb:
        sb.write_files({"p.py": "print('hi')\n"})
        for cmd in (
            "python p.py | tr a-z A-Z",
            "python p.py > out.txt && cat out.txt",
            "X=1 python p.py",
            "python $(echo p.py)",
            "python p*.py",
            "python -X dev p.py",
            "python3 -I p.py",
        ):
            res = sb.exec(cmd, timeout_s=10)
            assert not res.warm, cmd
            assert res.exit_code == 0, (cmd, res.stderr)
        assert sb.exec("python p.py | tr a-z A-Z", timeout_s=10).stdout == "HI\n"


def test_plain_words() -> None:
    assert plain_words("python test_x.py -k 'a and b'")
    assert plain_words('python -c "print(1)"')
    assert not plain_words("python x.py; rm -rf /")
    assert not plain_words('python -c "$(cat x)"')
    assert not plain_words("python x.py 'unterminated")
    assert not plain_words("python *.py")
