"""What of the host a `command:` agent's local sandbox shows (bench/mounts.py): the executable or
script its command names, and `--mount` paths; `/`, homes, credentials and $GOAT_HOME refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from goat_dagster.bench.journal import RunError
from goat_dagster.bench.mounts import MountError, command_files, sandbox_mounts
from goat_dagster.bench.run_request import RunRequest
from goat_dagster.routing.gateway import Gateway
from tests.bench.test_bench_cli import goat
from tests.conftest import PROJECT, benchmark

pytestmark = pytest.mark.integration


def last_entry(journal_dir: str) -> dict:
    return json.loads(Path(journal_dir, "results.jsonl").read_text().splitlines()[-1])


def test_only_executables_and_scripts_named_in_the_command_are_mounted(goat_home: Path, tmp_path: Path):
    script = tmp_path / "agent.py"  # not executable: a script by its name
    script.write_text("print('hi')\n")
    binary = tmp_path / "agent-bin"
    binary.write_text("#!/bin/sh\necho hi\n")
    binary.chmod(0o755)
    shebang = tmp_path / "runner"
    shebang.write_text("#!/usr/bin/env python3\n")
    data = tmp_path / "notes.txt"
    data.write_text("data, not a program\n")
    command = f"{binary} --config {data} --dir {tmp_path} --root / && python {script} && {shebang} /usr/bin/x"
    assert command_files(command) == [str(binary), str(script), str(shebang)]
    assert command_files("ls -la /") == []


# a checkout's parent is refused for holding the checkout, unless a broader rule comes first (a clone
# in /tmp/x: /tmp is a top-level directory; a checkout at /x: its parent is the whole file system)
CHECKOUT_PARENT_REASON = {
    0: "the whole file system",
    1: "a top-level directory",
}.get(len(PROJECT.parent.parts) - 1, "it holds the project checkout and its .env")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/", "the whole file system"),
        ("/etc", "a top-level directory"),
        ("/usr", "a top-level directory"),
        (str(Path.home()), "a home directory"),
        (str(PROJECT.parent), CHECKOUT_PARENT_REASON),
        ("relative/dir", "give an absolute path"),
        ("/no/such/dir", "no such file or directory"),
    ],
)
def test_broad_or_secret_paths_are_refused_with_the_reason(goat_home: Path, path: str, reason: str) -> None:
    with pytest.raises(MountError, match="--mount") as err:
        sandbox_mounts([], [path])
    assert reason in str(err.value)


def test_goat_home_credentials_and_the_sandboxs_own_places_are_refused(goat_home: Path, tmp_path: Path):
    (goat_home / "litellm").mkdir()
    for path, reason in [
        (goat_home / "litellm", "inside $GOAT_HOME"),
        (tmp_path, "it holds $GOAT_HOME"),  # goat_home is tmp_path/goat-home
        ("/proc/self", "/proc is the sandbox's own"),
    ]:
        with pytest.raises(MountError) as err:
            sandbox_mounts([], [str(path)])
        assert reason in str(err.value), err.value
    key = goat_home / "master_key"
    key.write_text("sk-secret")
    key.chmod(0o755)  # even "executable", a file under $GOAT_HOME is never shown
    with pytest.raises(MountError, match="the agent's command names"):
        command_files(f"{key} run")
    ssh = Path.home() / ".ssh"
    if ssh.is_dir():
        with pytest.raises(MountError, match="credentials"):
            sandbox_mounts([], [str(ssh)])


def test_mount_is_for_local_sandboxes_only() -> None:
    with pytest.raises(RunError, match="put the agent in the image"):
        RunRequest(suite="smoke", model="smollm2-135m", agent="command:x", sandbox="modal", mounts=("/x",))


def test_ls_of_the_root_runs_and_explicit_mounts_are_visible_read_only(
    goat_home: Path, tmp_path: Path, model_gateway: Gateway
) -> None:
    """`command:ls -la /` used to bind-mount the host's `/` over the sandbox (bwrap: Can't chdir to
    /workspace); now `/` is an argument and the agent lists the sandbox's own root."""
    s = benchmark(
        suite="smoke",
        model="smollm2-135m",
        agent="command:ls -la /",
        gateway=model_gateway,
        task_ids=["fizzbuzz"],
    )
    entry = last_entry(s.journal_dir)
    assert (entry["row"]["status"], entry["row"]["error_kind"]) == ("failed", None), entry["detail"]
    listing = entry["detail"]["attempts"][-1]["notes"][-1]
    assert "agent exit 0" in listing and "workspace" in listing and "home" not in listing

    tools = tmp_path / "tools"
    (tools / "lib").mkdir(parents=True)
    (tools / "lib" / "answer.txt").write_text("42\n")
    link = tmp_path / "agent.sh"  # a symlink: shown at the path the command uses
    (tools / "agent.sh").write_text(
        f"#!/bin/sh\ncat {tools}/lib/answer.txt\ntouch {tools}/lib/written 2>/dev/null && echo WRITABLE\n"
        f"test -e {tmp_path}/goat-home && echo GOAT_HOME_VISIBLE\nexit 0\n"
    )
    (tools / "agent.sh").chmod(0o755)
    link.symlink_to(tools / "agent.sh")
    s = benchmark(
        suite="smoke",
        model="smollm2-135m",
        agent=f"command:{link}",
        gateway=model_gateway,
        task_ids=["fizzbuzz"],
        mounts=(str(tools / "lib"),),
    )
    notes = last_entry(s.journal_dir)["detail"]["attempts"][-1]["notes"][-1]
    assert "agent exit 0" in notes and "42" in notes, notes
    assert "WRITABLE" not in notes and "GOAT_HOME_VISIBLE" not in notes, notes
    assert not (tools / "lib" / "written").exists()


def test_goat_run_takes_tasks_and_refuses_a_broad_mount(goat_home: Path) -> None:
    res = goat(goat_home, "run", "-s", "smoke", "-m", "smollm2-135m", "--agent", "oracle",
               "--tasks", "fizzbuzz,palindrome", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["n"] == 2
    runs = set((goat_home / "runs").iterdir())
    res = goat(goat_home, "run", "-s", "smoke", "-m", "smollm2-135m", "--agent", "oracle", "--tasks", "nope")
    assert res.returncode == 1 and "suite 'smoke' has no task 'nope'" in res.stderr
    res = goat(goat_home, "run", "-s", "smoke", "-m", "smollm2-135m", "--agent", "command:ls -la /",
               "--mount", "/", "--tasks", "fizzbuzz")  # fmt: skip
    assert res.returncode == 1 and "--mount '/': refused, the whole file system" in res.stderr
    assert set((goat_home / "runs").iterdir()) == runs, "nothing recorded, nothing started"
