"""What every verb shares: one JSON object out (`emit`), one red line and an exit code (`fail`),
and `GoatGroup`, which turns errors a user can fix into one clear message.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from goat_dagster import config
from goat_dagster.bench.sandbox import SandboxError
from goat_dagster.registry import RegistryError
from goat_dagster.routing.proxy import ProxyError
from goat_dagster.serving.backend import ServingError
from goat_dagster.tracing.langfuse_reader import LangfuseReadError

# Errors a user can act on from their message alone (a bad file or field, a server that is down,
# Modal not set up): shown as one line; GOAT_DEBUG=1 shows the traceback instead.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # RegistryError, SuiteError, RunError, ConfigError: a file, a field, a setting
    FileNotFoundError,
    SandboxError,
    ServingError,  # goat serve, weights, Modal (not logged in / unreachable), goat setup
    ProxyError,
    LangfuseReadError,
)


def emit(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, indent=2, default=str, sort_keys=False))


def fail(message: str, code: int = 1) -> NoReturn:
    click.secho(message, fg="red", err=True)
    sys.exit(code)


def _debug() -> bool:
    try:
        return config.settings().debug
    except config.ConfigError:  # the error being reported may be this very one
        return False


class GoatGroup(click.Group):
    """Turns the errors a user can fix (bad models.yaml, a suite, a missing file, a server that is
    not up) into one clear message instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except Exception as exc:
            if _debug() or not isinstance(exc, USER_ERRORS):
                raise
            verb = ctx.invoked_subcommand or "goat"
            fail(f"goat {verb}: {exc}" if not isinstance(exc, RegistryError) else str(exc))
