"""Prompt sets: the builtin agent's prompts as files, validated, hashed, and refused with the file
and the problem when broken (a run refused before anything is recorded)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from goat_dagster.bench.journal import RunError
from goat_dagster.bench.manifest import current_setup
from goat_dagster.bench.prompts import PromptError, load_prompt_set, prompt_set_dir
from goat_dagster.bench.run_request import RunRequest
from goat_dagster.bench.runner import run_benchmark
from goat_dagster.config import paths

PROJECT = Path(__file__).resolve().parents[2]
BUILTIN = PROJECT / "prompts" / "builtin"


@pytest.fixture
def prompt_copy(tmp_path: Path) -> Path:
    """An editable copy of the builtin prompt set."""
    return Path(shutil.copytree(BUILTIN, tmp_path / "mine"))


def test_the_builtin_set_is_what_the_agent_has_always_been_told() -> None:
    p = load_prompt_set()
    assert (p.name, p.path) == ("builtin", BUILTIN)
    assert p.system_prompt(workdir="/workspace") == (
        "You are a coding agent working in a sandbox. Your working directory is /workspace; the task's "
        "files are there. Use the tools to inspect files, write code and run it (Python 3 is available "
        "as `python`; there is no network). Make the smallest change that solves the task. When you are "
        "done, reply with a one-line summary and no tool call."
    )
    assert (
        p.task_prompt(instruction="Fix it.", files="a.py, b.py", workdir="/w")
        == "Fix it.\n\nFiles: a.py, b.py"
    )
    assert [t["function"]["name"] for t in p.tool_schemas] == [
        "Bash",
        "Read",
        "Write",
        "Edit",
        "Glob",
        "Grep",
    ]
    assert p.offered["Read"] == ("path", "offset", "limit")
    # a value is not scanned for placeholders again
    assert p.task_prompt(instruction="say {{files}}", files="x", workdir="/w").startswith("say {{files}}")


def test_names_and_paths(prompt_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_prompt_set(str(prompt_copy)).path == prompt_copy
    monkeypatch.setenv("GOAT_PROMPTS_DIR", str(prompt_copy.parent))
    assert prompt_set_dir("mine") == ("mine", prompt_copy)
    monkeypatch.setenv("GOAT_PROMPTS", "mine")
    assert load_prompt_set().name == "mine"
    with pytest.raises(PromptError, match=r"no prompt set 'nope' there .*prompt sets in .*: mine"):
        load_prompt_set("nope")


def test_the_hash_is_what_the_model_is_shown(prompt_copy: Path) -> None:
    base = load_prompt_set(str(prompt_copy)).sha256
    assert base == load_prompt_set().sha256  # where the set lives does not count
    tools = prompt_copy / "tools.yaml"
    tools.write_text(
        "# a comment and other layout\n\n" + tools.read_text().replace("  - name: Read", "\n  - name: Read")
    )
    assert load_prompt_set(str(prompt_copy)).sha256 == base
    tools.write_text(tools.read_text().replace("Read a text file.", "Read a UTF-8 text file."))
    changed = load_prompt_set(str(prompt_copy)).sha256
    assert changed != base
    system = prompt_copy / "system.md"
    system.write_text(system.read_text().replace("smallest change", "simplest change"))
    assert load_prompt_set(str(prompt_copy)).sha256 not in (base, changed)


def swap(old: str, new: str):
    return lambda text: text.replace(old, new, 1)


GLOB_TYPE = "pattern: {type: string}\n      required: [pattern]\n\n  - name: Grep"
BROKEN = [
    ("system.md", swap("{{workdir}}", "the work dir"),
     "system.md: the placeholder {{workdir}} is missing; system.md must use it"),
    ("task.md", swap("{{instruction}}", "Do it."), "task.md: the placeholder {{instruction}} is missing"),
    ("system.md", lambda t: t + "\nYou are {{ role }}.",
     "system.md:3: unknown placeholder '{{ role }}'; system.md may use {{workdir}}"),
    ("task.md", swap("{{files}}", "{{files}"), "task.md:3: '{{' without its pair"),
    ("system.md", lambda t: "\n\n", "system.md: is empty"),
    ("tools.yaml", swap("tools:", "tools: ["), "tools.yaml:7: invalid YAML"),
    ("tools.yaml", swap("name: Grep", "name: Search"),
     "tools.yaml:55: tools[5]: unknown tool 'Search'; the harness implements Bash, Read, Write, Edit, Glob"),
    ("tools.yaml", swap("offset: {type: integer", "offset: {type: string"),
     "tools.yaml:15: tools[1] (Read): parameters.properties.offset: must be `type: integer`"),
    ("tools.yaml", swap(GLOB_TYPE, GLOB_TYPE.replace("string", "strnig")),
     "tools.yaml:47: tools[4] (Glob): parameters is not a valid JSON Schema at properties/pattern/type"),
    ("tools.yaml", swap("required: [path, content]", "required: [path]"),
     "tools.yaml:25: tools[2] (Write): parameters: 'content' must be a property and `required`"),
    ("tools.yaml", swap("name: Glob", "name: Bash"),
     "tools.yaml:47: tools[4] (Bash): Bash is listed twice (first on line 7)"),
    ("tools.yaml", swap("description: Read a text file.", "descripton: Read a text file."),
     "tools.yaml:15: tools[1]: unknown key(s) descripton; a tool has name, description, parameters"),
    ("tools.yaml", lambda t: t + "version: 2\n", "tools.yaml: expected one key, `tools:`"),
]  # fmt: skip


@pytest.mark.parametrize(("file", "edit", "message"), BROKEN)
def test_a_broken_file_is_refused_with_its_path_and_problem(
    prompt_copy: Path, file: str, edit, message: str
) -> None:
    path = prompt_copy / file
    path.write_text(edit(path.read_text()))
    with pytest.raises(PromptError) as err:
        load_prompt_set(str(prompt_copy))
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


def test_a_missing_file(prompt_copy: Path) -> None:
    (prompt_copy / "task.md").unlink()
    with pytest.raises(PromptError, match=r"task\.md: missing \(a prompt set is a directory with system\.md"):
        load_prompt_set(str(prompt_copy))


def test_a_prompt_set_may_reword_and_leave_out(prompt_copy: Path) -> None:
    tools = prompt_copy / "tools.yaml"
    text = tools.read_text()
    text = text[: text.index("  - name: Glob")]  # no Glob, no Grep
    text = text.replace(
        '        offset: {type: integer, description: "first line to return (1-based)"}\n', ""
    )
    tools.write_text(text.replace("Read a text file.", "Show a file."))
    p = load_prompt_set(str(prompt_copy))
    assert list(p.offered) == ["Bash", "Read", "Write", "Edit"] and p.offered["Read"] == ("path", "limit")
    assert p.tool_schemas[1]["function"]["description"] == "Show a file."


def test_a_run_with_a_broken_prompt_set_records_nothing(goat_home: Path, prompt_copy: Path) -> None:
    (prompt_copy / "system.md").write_text("No placeholder here.\n")
    with pytest.raises(PromptError, match=r"system\.md: the placeholder"):
        run_benchmark(
            RunRequest(suite="smoke", model="smollm2-135m", agent="builtin", prompts=str(prompt_copy))
        )
    assert not paths().runs.exists() or not any(paths().runs.iterdir())
    # an agent that speaks no prompts does not read them
    outcome = run_benchmark(
        RunRequest(
            suite="smoke",
            model="smollm2-135m",
            agent="oracle",
            prompts=str(prompt_copy),
            task_ids=["fizzbuzz"],
        )
    )
    assert outcome.manifest is not None and outcome.manifest.prompt_sha256 is None


def test_prompts_are_part_of_what_a_resumed_run_must_match(goat_home: Path, prompt_copy: Path) -> None:
    """A run resumed with other prompts would mix rows of two setups: refused, saying what differs."""
    from goat_dagster.bench.manifest import RunManifest, settle_manifest

    first = RunManifest(
        run_id="r", suite="smoke", suite_version="v", model="m", agent="builtin", sandbox="local", epochs=1,
        prompt_sha256="a" * 64, sampling={"temperature": 0.3},
    ).with_fingerprint()  # fmt: skip
    journal = goat_home / "runs" / "r"
    journal.mkdir(parents=True)
    assert settle_manifest(journal, first) == first
    assert (
        settle_manifest(journal, first.model_copy(update={"goat_commit": "other"})) == first
    )  # provenance only
    other = first.model_copy(update={"prompt_sha256": "b" * 64, "sampling": {"temperature": 0.7}})
    with pytest.raises(RunError, match=r"prompt_sha256: a+ vs b+; sampling.temperature: 0.3 vs 0.7"):
        settle_manifest(journal, other)


def test_current_setup_follows_the_prompt_files(prompt_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`current_setup()` validates the set again only when its files' bytes changed: an edit of the
    same size at once, a broken set and its repair are all seen."""
    monkeypatch.setenv("GOAT_PROMPTS", str(prompt_copy))
    base = current_setup()
    assert base.prompt_sha256 == load_prompt_set(str(prompt_copy)).sha256 and current_setup() == base
    system = prompt_copy / "system.md"
    text = system.read_text()
    system.write_text(text.replace("smallest change", "simplest change"))  # the same size
    changed = current_setup()
    assert changed.prompt_sha256 not in (None, base.prompt_sha256)
    system.unlink()
    broken = current_setup()
    assert broken.prompt_sha256 is None and "system.md" in broken.problem
    system.write_text(text)
    assert current_setup() == base
