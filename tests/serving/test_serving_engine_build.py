"""The cause of a worker's SIGILL named in one line (`engine_build`), and `goat doctor`'s engine
phase: the installed engine's build against /proc/cpuinfo, one short real generation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from goat_dagster.doctor import check_engine
from goat_dagster.registry import load_registry
from goat_dagster.serving.local.engine_build import (
    CPUINFO_FLAG,
    PORTABLE,
    cpu_flags,
    engine_features,
    parse_system_info,
    probe_engine,
    sigill_cause,
)
from tests.conftest import PROJECT

HEAD = "the llama.cpp engine was built for CPU features this machine cannot execute"
PORTABLE_FLAGS = {CPUINFO_FLAG[f] for f in PORTABLE}


def test_system_info_is_parsed_into_instruction_sets() -> None:
    info = b"CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | OPENMP = 1 | "
    assert parse_system_info(info) == ["SSE3", "SSSE3", "AVX", "AVX2", "AVX512", "AMX_INT8"]
    installed = engine_features()
    assert installed is not None and set(installed) <= set(CPUINFO_FLAG)
    assert set(PORTABLE) <= set(installed), "make install builds the portable x86-64-v3 engine"


def test_sigill_cause_is_one_line_naming_what_the_cpu_lacks_and_how_to_rebuild() -> None:
    native = [*PORTABLE, "AVX512", "AMX_INT8"]
    lacking = sigill_cause(native, PORTABLE_FLAGS)
    assert HEAD in lacking and "AVX512, AMX_INT8, which /proc/cpuinfo does not list" in lacking
    assert "make install" in lacking and "\n" not in lacking
    listed = sigill_cause(native, PORTABLE_FLAGS | {"avx512f", "amx_int8"})
    assert HEAD in listed and "AVX512, AMX_INT8 beyond x86-64-v3" in listed and "VMs" in listed
    portable = sigill_cause(list(PORTABLE), PORTABLE_FLAGS)
    assert "portable build" in portable and "signal was sent" in portable and "make install" in portable
    assert "could not be read" in sigill_cause(None, PORTABLE_FLAGS) or engine_features() is not None
    assert cpu_flags() is None or "sse2" in (cpu_flags() or set())


def test_a_probe_that_dies_of_sigill_says_why_instead_of_failing_doctor(tmp_path: Path) -> None:
    """The engine probe is a subprocess: a trap ends it, not doctor. Here a real process that prints
    an AVX-512 build and dies of SIGILL."""
    script = tmp_path / "trap.py"
    script.write_text(
        "import json, os, signal\n"
        'print(json.dumps({"version": "x", "features": ["AVX2", "AVX512", "AMX_INT8"]}), flush=True)\n'
        "os.kill(os.getpid(), signal.SIGILL)\n"
    )
    probe = probe_engine("smollm2-135m", command=[sys.executable, str(script)])
    assert not probe.ok and probe.returncode == -4
    assert probe.features == ["AVX2", "AVX512", "AMX_INT8"]
    assert probe.cause == sigill_cause(["AVX2", "AVX512", "AMX_INT8"]) and HEAD in probe.cause
    registry = load_registry(PROJECT / "models.yaml")
    [build, gen] = check_engine(registry, probe=lambda key: probe)
    assert build.name == "build" and "AVX512" in build.detail
    assert gen.status == "fail" and gen.detail == probe.cause and "make install" in gen.fix


@pytest.mark.slow
@pytest.mark.integration
def test_doctor_generates_with_the_models_own_threads_and_names_the_build(monkeypatch, tmp_path) -> None:
    """One short real generation by the installed engine with the model's own n_threads (2 in the
    shipped models.yaml, a prompt batch on two threads: what trapped with AMX kernels)."""
    monkeypatch.setenv("GOAT_MODELS_FILE", str(PROJECT / "models.yaml"))
    monkeypatch.setenv("GOAT_HOME", str(tmp_path / "home"))
    registry = load_registry(PROJECT / "models.yaml")
    assert registry.get("smollm2-135m").engine_args["n_threads"] == 2
    [build, gen] = check_engine(registry)
    assert build.status == "pass" and "portable x86-64-v3" in build.detail, build
    assert "this CPU lists all of them" in build.detail and "AVX2" in build.detail
    assert gen.status == "pass" and gen.name == "smollm2-135m", gen
    assert "with n_threads 2" in gen.detail and "tokens/s" in gen.detail
