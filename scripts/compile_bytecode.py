"""Compile to bytecode what goat's processes import, once, at `make install`, on every core.

Why at all: where `PYTHONDONTWRITEBYTECODE` is set (many containers and CI machines, this one
too) Python never writes the `.pyc` files it compiles, so every process compiles in memory each
module it imports that has none: ~1000 modules, ~3 s for each Dagster run worker, code server,
`goat serve`, LiteLLM proxy, `goat view`. Compiled here, they import from `.pyc` files instead.

What: every `.py` file of the venv's site-packages and of `goat_dagster`, except
- `NOT_IMPORTED`: top-level packages that no process of goat imports — the test and lint tools,
  the installers, the cluster profile's Kubernetes client (it runs in its own image), and packages
  that dependencies carry for features goat never reaches. `tests/foundation/test_bytecode.py`
  checks that goat's entry points import none of them;
- test suites shipped inside packages (`tests/` directories; pandas' alone is 1,100 files).
A new dependency is compiled like the others. A module left out still works: Python compiles it
when it is first imported, as always (so `make test` imports pytest that way).

`uv sync --compile-bytecode` compiled all 19,000 files of the venv (21-29 s on 2 cores); this
compiles ~13,000 in parallel. Run with the venv's Python: `.venv/bin/python scripts/compile_bytecode.py`.
"""

from __future__ import annotations

import compileall
import os
import sys
import sysconfig
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
NOT_IMPORTED = frozenset(
    {
        # test and lint tools (`make test` imports them; Python compiles them then, as usual)
        "_pytest",
        "pytest",
        "pluggy",
        "iniconfig",
        "playwright",
        "scipy",
        "importlinter",
        "grimp",
        # installers
        "pip",
        "setuptools",
        "pkg_resources",
        # the cluster profile's run launcher (deploy/: it runs in its own image)
        "kubernetes",
        "dagster_k8s",
        # carried by dependencies for features goat never reaches
        "polars",  # litellm's optional analytics
        "dns",  # email-validator's deliverability check
        "prompt_toolkit",  # interactive prompts of the hub CLIs
        "InquirerPy",
        "pfzy",
    }
)
SKIP_DIRS = frozenset({"tests", "__pycache__"})


def site_packages() -> list[Path]:
    paths = sysconfig.get_paths()
    return sorted({Path(paths["purelib"]), Path(paths["platlib"])})


def _walk(root: Path) -> Iterator[Path]:
    for here, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        yield from (Path(here) / f for f in files if f.endswith(".py"))


def files_to_compile(sites: list[Path] | None = None, project: Path = PROJECT) -> list[Path]:
    """The `.py` files this script compiles: site-packages (less `NOT_IMPORTED` and test suites)
    and goat's own package (an editable install: uv never compiled it)."""
    out: list[Path] = []
    for site in sites if sites is not None else site_packages():
        for entry in sorted(site.iterdir()):
            name = entry.name.removesuffix(".py")
            if name in NOT_IMPORTED or entry.name in SKIP_DIRS:
                continue
            if entry.is_dir() and "." not in entry.name:
                out.extend(_walk(entry))
            elif entry.suffix == ".py":
                out.append(entry)
    out.extend(_walk(project / "goat_dagster"))
    return out


def _compile(paths: list[str]) -> int:
    """How many of `paths` failed (a file that is not valid Python for this interpreter, as some
    packages ship: uv ignored those too). Up-to-date `.pyc` files are left as they are."""
    return sum(not compileall.compile_file(p, quiet=2) for p in paths)


def main() -> int:
    t0 = time.monotonic()
    files = [str(p) for p in files_to_compile()]
    workers = len(os.sched_getaffinity(0))
    chunks = [files[i :: workers * 8] for i in range(workers * 8)]  # round robin: similar sizes
    with ProcessPoolExecutor(max_workers=workers) as pool:
        failed = sum(pool.map(_compile, chunks))
    print(
        f"Bytecode compiled {len(files) - failed} files in {time.monotonic() - t0:.2f}s "
        f"({workers} processes; {failed} not valid Python, left as they are)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
