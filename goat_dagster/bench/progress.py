"""The progress bar `goat run` shows on a terminal while a run works."""

from __future__ import annotations

import sys
from typing import Any

from goat_dagster.bench.journal import RunSpec
from goat_dagster.bench.lake import ResultRow
from goat_dagster.bench.run_request import Progress


class ProgressBar:
    """A tqdm bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar: Any = None

    def start(self, spec: RunSpec, pending: int, total: int) -> None:
        if not self.enabled or not pending:
            return
        from tqdm import tqdm  # here: ~85 ms to import, and only a terminal needs it

        self.bar = tqdm(
            total=total,
            initial=total - pending,
            desc=f"{spec.model} · {spec.suite}",
            unit="task",
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def task(self, row: ResultRow, progress: Progress) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        postfix = {"pass": progress.passed, "fail": progress.failed, "err": progress.errors}
        if progress.unscored:  # free-form prompts: answered, nothing to pass or fail
            postfix = {"answered": progress.unscored, "err": progress.errors}
        if progress.cost_usd:
            postfix["usd"] = f"{progress.cost_usd:.4f}"
        self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
