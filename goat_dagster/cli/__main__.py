"""`python -m goat_dagster.cli`: the `goat` command."""

from goat_dagster.cli import main

main()
