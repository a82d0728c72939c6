"""The `goat` command (DESIGN §8). Every verb has --help; --json prints one JSON object.

Each verb imports what it runs when it runs: `goat models` must not pay for Dagster, Modal,
DuckDB, the harness or the LLM clients (seconds together); only light modules are imported here.
"""

from __future__ import annotations

import atexit
import gc

import click

from goat_dagster import config
from goat_dagster.cli.common import GoatGroup
from goat_dagster.cli.models import models
from goat_dagster.cli.reports import compare, results, traces, view
from goat_dagster.cli.runs import ask, run
from goat_dagster.cli.services import demo, doctor, providers, serve, setup, stop, ui

# At exit (after the handlers a verb registers later, which run first), what the process holds is only
# torn down: frozen, the collector's passes at interpreter shutdown skip it (pydantic's, DuckDB's,
# click's objects: 0.1-0.2 s of a short verb such as `goat run`); exit handlers run as always.
atexit.register(gc.freeze)


@click.group(cls=GoatGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="goat-dagster")
def main() -> None:
    """goat: benchmark LLM coding agents across many models, as a Dagster asset graph.

    Data lives in $GOAT_HOME (default ./.goat); the registry is models.yaml.
    """
    config.export_environment()


for command in (
    models,
    demo,
    ui,
    run,
    ask,
    results,
    compare,
    view,
    serve,
    providers,
    stop,
    traces,
    setup,
    doctor,
):
    main.add_command(command)
