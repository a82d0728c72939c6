"""The builtin agent's tools, run in a real sandbox; malformed calls become errors for the model."""

from __future__ import annotations

import json

import pytest

from goat_dagster.bench.local_sandbox import LocalSandboxPool
from goat_dagster.bench.prompts import load_prompt_set
from goat_dagster.bench.tools import MAX_READ_BYTES, TOOL_NAMES, ToolLimits, Tools, glob_regex


def test_tools_work_inside_the_sandbox(pool: LocalSandboxPool) -> None:
    with pool.session() as sb:
        t = Tools(sb)
        text, ok = t.call("Write", json.dumps({"path": "src/app.py", "content": "def f():\n    return 1\n"}))
        assert ok and "wrote" in text
        assert t.call("Read", {"path": "src/app.py"}) == ("def f():\n    return 1\n", True)
        assert t.call("Read", {"path": "src/app.py", "offset": 2, "limit": 1})[0] == "    return 1\n"
        text, ok = t.call("Edit", {"path": "src/app.py", "old_string": "return 1", "new_string": "return 2"})
        assert ok, text
        text, ok = t.call(
            "Bash",
            {"command": "python -c 'import sys; sys.path.insert(0, \"src\"); import app; print(app.f())'"},
        )
        assert ok and text.startswith("exit code 0") and text.strip().endswith("2")
        assert t.call("Glob", {"pattern": "**/*.py"}) == ("src/app.py", True)
        assert t.call("Glob", {"pattern": "*.txt"}) == ("no files match", True)
        assert t.call("Grep", {"pattern": r"return \d", "path": "src"}) == (
            "src/app.py:2:     return 2",
            True,
        )
        assert t.call("Grep", {"pattern": "nothing"})[0] == "no matches"
        text, ok = t.call("Bash", {"command": "echo out; echo err >&2; exit 3"})
        assert ok and text.startswith("exit code 3") and "out" in text and "[stderr]\nerr" in text


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("Run", {"command": "ls"}, "unknown tool 'Run'; the tools are Bash, Read, Write, Edit, Glob, Grep"),
        ("Read", '{"path": "a.py"', "must be a JSON object; could not parse them"),
        ("Read", "[1, 2]", "must be a JSON object, got list"),
        ("Write", {"path": "a.py"}, "Write needs the argument(s) content"),
        ("Read", {"path": 3}, "argument 'path' must be a string"),
        ("Read", {"path": "a.py", "mode": "r"}, "Read has no argument 'mode'"),
        ("Read", {"path": "missing.py"}, "no such file or directory"),
        ("Read", {"path": "."}, "working directory itself is not a file"),
        (
            "Edit",
            {"path": "a.py", "old_string": "zzz", "new_string": "y"},
            "old_string was not found in a.py",
        ),
        ("Edit", {"path": "a.py", "old_string": "x", "new_string": "y"}, "occurs 2 times"),
        ("Grep", {"pattern": "("}, "invalid regular expression"),
        ("Bash", {"command": "  "}, "Bash needs a non-empty command"),
    ],
)
def test_malformed_calls_answer_with_an_error(
    pool: LocalSandboxPool, name: str, args: object, message: str
) -> None:
    with pool.session() as sb:
        sb.write_files({"a.py": "x = 1\nx = 2\n"})
        text, ok = Tools(sb).call(name, args)
        assert not ok
        assert text.startswith("Error: ") and message in text, text


def test_long_output_is_clipped_and_bash_times_out(pool: LocalSandboxPool) -> None:
    with pool.session() as sb:
        t = Tools(sb, ToolLimits(command_timeout_s=1, max_output_chars=500))
        text, ok = t.call("Bash", {"command": "seq 1 100000"})
        assert ok and len(text) < 700 and "characters cut" in text
        text, ok = t.call("Bash", {"command": "sleep 30"})
        assert "ran longer than 1s" in text


def test_tools_a_prompt_set_leaves_out_are_refused(pool: LocalSandboxPool) -> None:
    """The model may call only what its prompt set offered it: a tool or an argument it was not shown
    is an error it can read, however the harness could run it."""
    with pool.session() as sb:
        t = Tools(sb, offered={"Read": ("path",), "Write": ("path", "content")})
        assert t.call("Write", {"path": "a.py", "content": "x = 1\n"})[1]
        text, ok = t.call("Bash", {"command": "ls"})
        assert not ok and "unknown tool 'Bash'; the tools are Read, Write" in text
        text, ok = t.call("Read", {"path": "a.py", "offset": 1})
        assert not ok and "Read has no argument 'offset'; it takes path" in text


def test_schemas_and_globs() -> None:
    assert TOOL_NAMES == ("Bash", "Read", "Write", "Edit", "Glob", "Grep")
    schemas = load_prompt_set().tool_schemas  # the builtin prompt set offers every tool
    assert [s["function"]["name"] for s in schemas] == list(TOOL_NAMES)
    for schema in schemas:
        assert schema["type"] == "function" and schema["function"]["parameters"]["type"] == "object"
    assert glob_regex("**/*.py").match("a/b/c.py") and glob_regex("**/*.py").match("c.py")
    assert not glob_regex("*.py").match("a/c.py")
    assert glob_regex("src/[ab]?.txt").match("src/a1.txt")


def test_edit_refuses_files_it_cannot_rewrite_whole(pool: LocalSandboxPool) -> None:
    """Edit writes the whole file back: a file larger than it reads, or not UTF-8, is refused and
    left as it was (never cut short, never re-encoded)."""
    big = "x = 1\n" + "# padding\n" * (MAX_READ_BYTES // 10) + "y = 2\n"
    latin1 = "name = 'café'\n".encode("latin-1")
    with pool.session() as sb:
        sb.write_files({"big.py": big, "latin1.py": latin1})
        t = Tools(sb)
        text, ok = t.call("Edit", {"path": "big.py", "old_string": "x = 1", "new_string": "x = 3"})
        assert not ok and "big.py is larger than 256 KiB, too large for Edit" in text
        assert sb.read_file("big.py", limit=1 << 20) == big.encode()
        text, ok = t.call("Edit", {"path": "latin1.py", "old_string": "name", "new_string": "nom"})
        assert not ok and "latin1.py is not UTF-8 text" in text
        assert sb.read_file("latin1.py") == latin1
        # exactly at the limit is fine
        edge = "a" * (MAX_READ_BYTES - 2) + "\n\n"
        sb.write_files({"edge.txt": edge})
        text, ok = t.call("Edit", {"path": "edge.txt", "old_string": "a\n", "new_string": "b\n"})
        assert ok, text
        assert sb.read_file("edge.txt", limit=1 << 20) == ("a" * (MAX_READ_BYTES - 3) + "b\n\n").encode()
