"""A benchmark run stopped by a signal, as a service manager (SIGTERM) or a person (Ctrl-C, SIGINT)
stops it.

`stop_on_signals()` turns SIGTERM and SIGINT into `Stopped` in the main thread — also when the
process was started in the background with SIGINT ignored, as `goat ui` does — so the run ends the
way it ends on any error: its threads take no new task, a task in flight is not journaled (it runs
again on resume), the sandboxes and relays are closed, the journal keeps every finished row.
`resume_command` is the command line that picks the run up again.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
from collections.abc import Iterator, Sequence
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """A stop signal arrived; raised in the main thread (a BaseException: no `except Exception`
    on the way up swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


@contextlib.contextmanager
def stop_on_signals(signals: Sequence[signal.Signals] = SIGNALS) -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise `Stopped` (the handlers before are restored)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def resume_command(argv: Sequence[str], run_id: str) -> str:
    """`goat <argv>` with `--run-id run_id` in place of any run id it had: the command that resumes
    the run (its suite, model, agent, tasks and epochs must be the same, and are)."""
    args: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--run-id":
            skip = True
        elif not arg.startswith("--run-id="):
            args.append(arg)
    return shlex.join(["goat", *args, "--run-id", run_id])
