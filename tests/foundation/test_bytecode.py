"""`make install` compiles to bytecode what goat's processes import (scripts/compile_bytecode.py):
every module the entry points of goat's processes import is among the files it compiles, so none
of them is compiled in memory at every start where PYTHONDONTWRITEBYTECODE is set."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import PROJECT

# what each process goat starts imports first (the runtime imports of a real `goat demo`, `goat
# ui` and `goat view`, recorded once, were in the same packages)
ENTRY_POINTS = (
    "goat_dagster.cli",  # goat ...
    "goat_dagster.cli.models",
    "goat_dagster.cli.reports",
    "goat_dagster.cli.runs",
    "goat_dagster.cli.services",
    "goat_dagster.demo",  # goat demo: the code location and the in-process runs
    "goat_dagster.devserver",  # goat ui / make ui
    "goat_dagster.doctor",
    "goat_dagster.definitions",  # the code location (code server, run workers)
    "dagster._cli.api",  # a run worker
    "dagster._grpc.server",  # the code server
    "dagster._daemon.cli",  # the daemon
    "dagster_webserver.cli",  # the webserver
    "goat_dagster.serving.local.server",  # goat serve
    "goat_dagster.serving.local.worker_main",  # a llama.cpp worker
    "goat_dagster.routing.proxy_main",  # the LiteLLM proxy with goat's callback and key check
    "goat_dagster.viewer.app",  # goat view
    "goat_dagster.tracing.langfuse_reader",  # trace_export with Langfuse
)


def _load_script():
    path = PROJECT / "scripts" / "compile_bytecode.py"
    spec = importlib.util.spec_from_file_location("compile_bytecode", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _imported_files() -> set[Path]:
    code = (
        "import importlib, json, sys\n"
        f"for m in {ENTRY_POINTS!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted({getattr(m, '__file__', None) or '' for m in list(sys.modules.values())})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=300, check=True
    )
    return {Path(f) for f in json.loads(out.stdout.strip().splitlines()[-1]) if f.endswith(".py")}


def test_every_module_goat_processes_import_is_compiled_at_install() -> None:
    script = _load_script()
    compiled = set(script.files_to_compile())
    imported = _imported_files()
    site = Path(sysconfig.get_paths()["purelib"])
    ours = {f for f in imported if f.is_relative_to(site) or f.is_relative_to(PROJECT / "goat_dagster")}
    assert len(ours) > 3000, "the entry points imported less than expected: is the list above stale?"
    missing = sorted(str(f) for f in ours - compiled)
    assert not missing, f"imported by goat's processes but left out by compile_bytecode.py: {missing[:20]}"
    assert not {f.relative_to(site).parts[0] for f in ours if f.is_relative_to(site)} & script.NOT_IMPORTED


def test_what_it_leaves_out() -> None:
    """Test suites inside packages and the listed tools are not compiled; everything else is."""
    script = _load_script()
    site = Path(sysconfig.get_paths()["purelib"])
    compiled = set(script.files_to_compile())
    assert site / "pandas" / "core" / "frame.py" in compiled
    assert PROJECT / "goat_dagster" / "demo.py" in compiled
    assert not any("tests" in f.relative_to(site).parts for f in compiled if f.is_relative_to(site))
    assert site / "_pytest" / "main.py" not in compiled
    assert site / "kubernetes" / "__init__.py" not in compiled
    assert all((site / name).exists() or (site / f"{name}.py").exists() for name in script.NOT_IMPORTED), (
        "a name in NOT_IMPORTED is no longer installed: remove it from the list"
    )
