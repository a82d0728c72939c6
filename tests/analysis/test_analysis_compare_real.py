"""`goat compare` on two real runs: the same 12-task suite run by `goat run` twice in bubblewrap
sandboxes, once by the oracle (every reference passes its hidden tests) and once by a command agent
that only edits the even tasks (writes the right answer there). So what the comparison must say is
known without computing it the way goat does: the 6 odd tasks flipped pass→fail, the even ones
stayed passed, B - A = -50 pp, and the exact two-sided McNemar p on 6 discordant tasks, all one way,
is 2 · 0.5^6 = 0.03125.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

TASKS = 12


def suite(path: Path) -> Path:
    tasks = [
        {
            "id": f"t{i:02d}",
            "instruction": f"write f() returning {i} in solution.py",
            "files": {"solution.py": "def f():\n    raise NotImplementedError\n"},
            "tests": {"test_it.py": f"from solution import f\nassert f() == {i}\n"},
            "reference": {"solution.py": f"def f():\n    return {i}\n"},
        }
        for i in range(1, TASKS + 1)
    ]
    path.write_text(
        yaml.safe_dump({"name": "pairs", "defaults": {"check": "python test_it.py"}, "tasks": tasks})
    )
    return path


def goat(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "goat")
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=600)


def test_goat_compare_two_real_runs(goat_home: Path, tmp_path: Path) -> None:
    path = suite(tmp_path / "pairs.yaml")
    # the command agent: the right answer for even tasks only (the instruction is in GOAT_INSTRUCTION)
    agent = tmp_path / "half_agent.py"
    agent.write_text(
        "import os, re, pathlib\n"
        "n = int(re.search(r'returning (\\d+)', os.environ['GOAT_INSTRUCTION']).group(1))\n"
        "if n % 2 == 0:\n"
        "    pathlib.Path('solution.py').write_text(f'def f():\\n    return {n}\\n')\n"
    )
    env = {**os.environ, "GOAT_HOME": str(goat_home)}
    try:
        compare_two_runs(path, agent, env)
    finally:  # a command agent may call the model: goat run started goat serve and the proxy for it
        goat("stop", env=env)


def compare_two_runs(path: Path, agent: Path, env: dict[str, str]) -> None:
    common = ["run", "--suite", str(path), "--model", "smollm2-135m", "--json"]
    a = goat(*common, "--agent", "oracle", "--run-id", "pairs-a", env=env)
    assert a.returncode == 0, a.stderr
    b = goat(*common, "--agent", f"command:{sys.executable} {agent}", "--run-id", "pairs-b", env=env)
    assert b.returncode == 0, b.stderr
    assert json.loads(a.stdout)["passed"] == TASKS and json.loads(b.stdout)["passed"] == TASKS // 2

    out = goat("compare", "pairs-a", "pairs-b", "--json", env=env)
    assert out.returncode == 0, out.stderr
    c = json.loads(out.stdout)
    assert c["shared_tasks"] == TASKS
    assert c["difference"] == -0.5
    assert sorted(c["pass_to_fail"]) == [f"t{i:02d}" for i in range(1, TASKS + 1, 2)]
    assert c["fail_to_pass"] == []
    assert abs(c["mcnemar_p"] - 2 * 0.5**6) < 1e-12
    assert c["significant"] is True
    text = goat("compare", "pairs-a", "pairs-b", env=env).stdout
    assert "difference B - A: -50.0 pp" in text, text
