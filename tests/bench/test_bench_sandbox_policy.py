"""When the local sandbox will not run: no bubblewrap, or root with no uid to drop to.

Task code written by a model must never run unisolated on the host by accident: a task that runs
`kill -9 -1` as root takes the whole machine down. These tests hide bubblewrap from PATH (as on a
machine that lacks it) and check the refusal is a clear, non-retryable error, from Python and from
the CLI, and that nothing was recorded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from goat_dagster.bench.bwrap import NO_BWRAP_ERROR, NO_BWRAP_WARNING, others_can_read
from goat_dagster.bench.local_sandbox import LocalSandboxPool
from goat_dagster.bench.sandbox import PoolOptions, SandboxError, SandboxPathError
from tests.conftest import PROJECT

# as root, running without bubblewrap needs an interpreter an unprivileged uid can read
ROOT_WITHOUT_UID = os.geteuid() == 0 and not others_can_read(Path(sys.base_prefix).resolve())


@pytest.fixture
def no_bwrap_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("GOAT_SANDBOX_BWRAP", raising=False)
    return empty


def test_without_bubblewrap_the_pool_refuses(no_bwrap_on_path: Path) -> None:
    with pytest.raises(SandboxError) as refused:
        LocalSandboxPool(PoolOptions(size=1))
    assert str(refused.value) == NO_BWRAP_ERROR
    assert "apt-get install bubblewrap" in NO_BWRAP_ERROR and "GOAT_SANDBOX_BWRAP=0" in NO_BWRAP_ERROR
    assert refused.value.transient is False  # another attempt would not help: the asset fails, no retry


def test_goat_run_without_bubblewrap_is_one_clear_line_and_records_nothing(
    goat_home: Path, no_bwrap_on_path: Path
) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "goat_dagster.cli",
            "run",
            "-s",
            "smoke",
            "-m",
            "smollm2-135m",
            "--agent",
            "oracle",
        ],
        env={**os.environ, "GOAT_HOME": str(goat_home), "GOAT_PROJECT_DIR": str(PROJECT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "bubblewrap (bwrap) is not installed" in res.stderr and "apt-get install bubblewrap" in res.stderr
    assert not list((goat_home / "lake" / "results").glob("*.parquet"))
    for journal in (goat_home / "runs").glob("*/results.jsonl"):
        assert journal.read_text() == ""


@pytest.mark.skipif(not ROOT_WITHOUT_UID, reason="needs root and an interpreter others cannot read")
def test_as_root_without_bubblewrap_task_code_never_runs_as_root() -> None:
    with pytest.raises(SandboxError, match="does not run task code as root") as refused:
        LocalSandboxPool(PoolOptions(size=1), bwrap=False)
    assert "apt-get install bubblewrap" in str(refused.value)
    assert refused.value.transient is False


@pytest.mark.skipif(ROOT_WITHOUT_UID, reason="as root without an unprivileged uid the pool refuses (above)")
def test_without_bubblewrap_on_purpose_a_warning_names_what_is_weaker() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with LocalSandboxPool(PoolOptions(size=1), bwrap=False) as p:
            assert p.isolation == "none"
            assert p.warnings[0] == NO_BWRAP_WARNING
            with p.session() as sb:
                # still: a scrubbed env, rlimits, timeouts, path checks; never root
                assert sb.exec("echo $OPENAI_API_KEY; echo ok", timeout_s=5).stdout.strip() == "ok"
                assert sb.exec("id -u", timeout_s=5).stdout.strip() != "0"
                assert sb.exec("sleep 10", timeout_s=1).killed == "timeout"
                with pytest.raises(SandboxPathError):
                    sb.read_file("../../etc/passwd")
    text = " ".join(str(w.message) for w in caught)
    assert "no network isolation" in text and "no filesystem isolation" in text
    assert "apt-get install bubblewrap" in text
