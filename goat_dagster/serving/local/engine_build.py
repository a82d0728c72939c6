"""What the installed llama.cpp engine was built for, what this CPU can execute, and what a worker
killed by SIGILL means.

llama.cpp compiles its CPU kernels for a set of instruction-set features; `make install` builds the
portable x86-64-v3 set (pyproject.toml `[tool.uv]`). An engine built for features this CPU cannot
execute — a native build carried to another machine, a wheel built elsewhere, AMX or AVX-512 kernels
in a VM that lists the feature but traps it — dies with SIGILL on its first prompt batch. Every
place that sees such a death (the 502 of `goat serve`, its log, the crash record in `/status`,
`goat doctor`) says so in the one line `sigill_cause()` writes.

The engine's features come from `llama_cpp.llama_print_system_info()`; the CPU's from the `flags`
line of /proc/cpuinfo.
"""

from __future__ import annotations

import functools
import json
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goat_dagster.serving.daemon import describe_exit

# what a portable `make install` builds (pyproject.toml [tool.uv]): x86-64-v3
PORTABLE = ("SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA", "BMI2")
# llama.cpp's name of an instruction-set feature -> the /proc/cpuinfo flag of the CPU that has it
CPUINFO_FLAG = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX_VNNI": "avx_vnni",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}
REBUILD = "rebuild the portable engine with `make install`"
_FEATURE = re.compile(r"([A-Z][A-Z0-9_]*) = 1")


def parse_system_info(text: str | bytes) -> list[str]:
    """The instruction-set features of a `llama_print_system_info()` line, in its order
    ("CPU : SSE3 = 1 | AVX = 1 | ... | OPENMP = 1 |" -> ["SSE3", "AVX", ...]; OPENMP, REPACK and
    the like are not instruction sets and are left out)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return [f for f in _FEATURE.findall(text) if f in CPUINFO_FLAG]


@functools.cache
def engine_features() -> tuple[str, ...] | None:
    """The features the installed engine was built with, asked in this process (None when the
    engine is not importable). Only for processes that have loaded it already (goat serve, a
    worker): loading an engine built for another CPU can itself trap. Others ask a subprocess
    (`engine_probe`)."""
    try:
        import llama_cpp  # loaded already where this is called; the import costs nothing more
    except (ImportError, OSError):
        return None
    return tuple(parse_system_info(llama_cpp.llama_print_system_info()))


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The feature flags this CPU lists (the first processor's), None where there is no cpuinfo."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return None


def missing_features(features: tuple[str, ...] | list[str], flags: set[str]) -> list[str]:
    """The engine's features this CPU does not list."""
    return [f for f in features if CPUINFO_FLAG.get(f) not in flags]


def describe_build(features: tuple[str, ...] | list[str] | None) -> str:
    if features is None:
        return "unknown (llama-cpp-python is not importable)"
    extra = [f for f in features if f not in PORTABLE]
    kind = "portable x86-64-v3" if not extra and set(PORTABLE) <= set(features) else "not the portable build"
    return f"{' '.join(features) or '(no SIMD)'} ({kind})"


def sigill_cause(features: tuple[str, ...] | list[str] | None = None, flags: set[str] | None = None) -> str:
    """One line: the engine was built for CPU features this machine cannot execute, which, and how
    to rebuild. `features`/`flags` default to the installed engine's and this CPU's."""
    features = engine_features() if features is None else features
    flags = cpu_flags() if flags is None else flags
    head = (
        "illegal instruction (SIGILL): the llama.cpp engine was built for CPU features this machine "
        "cannot execute"
    )
    if features is None:
        return f"{head} (its build could not be read); {REBUILD}"
    built = ", ".join(features) or "no SIMD"
    if flags is None:
        return f"{head} (built with {built}; /proc/cpuinfo unreadable); {REBUILD}"
    missing = missing_features(features, flags)
    if missing:
        return f"{head}: it was built with {', '.join(missing)}, which /proc/cpuinfo does not list; {REBUILD}"
    beyond = [f for f in features if f not in PORTABLE]
    if beyond:
        return (
            f"{head}: it was built with {', '.join(beyond)} beyond x86-64-v3, which /proc/cpuinfo lists "
            f"but the CPU refused (VMs that hide AMX or AVX-512 from guests do this); {REBUILD}"
        )
    return (
        f"illegal instruction (SIGILL), though the engine is the portable build ({built}) and "
        "/proc/cpuinfo lists all of it: either it was built for CPU features this machine cannot execute "
        "after all (a VM listing a feature it does not provide) or the signal was sent to the worker; "
        f"if it recurs, {REBUILD}"
    )


def crash_cause(returncode: int | None) -> str | None:
    """What a worker's exit status says about the engine: the SIGILL line, else None."""
    return sigill_cause() if returncode == -signal.SIGILL else None


@dataclass
class EngineProbe:
    """What `engine_probe` said: the engine's build, and its generation (or why there is none)."""

    returncode: int | None
    version: str | None = None
    features: list[str] | None = None
    generation: dict[str, Any] | None = None
    error: str | None = None  # the model could not be prepared, or the probe failed otherwise
    cause: str | None = None  # SIGILL: `sigill_cause` of the features it printed

    @property
    def ok(self) -> bool:
        return self.generation is not None


def probe_engine(
    model_key: str, timeout_s: float = 180.0, command: Sequence[str] | None = None
) -> EngineProbe:
    """One short real generation of `model_key` by the installed engine with its worker settings,
    in a subprocess (`engine_probe`): an engine that traps takes only that process down."""
    cmd = list(command or [sys.executable, "-m", "goat_dagster.serving.local.engine_probe", model_key])
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return EngineProbe(None, error=f"no answer within {timeout_s:.0f}s")
    probe = EngineProbe(proc.returncode)
    for line in proc.stdout.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if "features" in obj:
            probe.version, probe.features = obj.get("version"), list(obj["features"])
        elif "error" in obj:
            probe.error = str(obj["error"])
        else:
            probe.generation = obj
    if proc.returncode == -signal.SIGILL:
        probe.cause = sigill_cause(probe.features)
        probe.generation = None
    elif proc.returncode != 0 and probe.error is None:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        probe.error = f"the probe {describe_exit(proc.returncode)}: {tail or 'no output'}"
    return probe
