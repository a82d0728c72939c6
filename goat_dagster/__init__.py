"""goat-dagster: benchmark LLM coding agents across many models as a Dagster asset graph."""

__version__ = "0.1.0"
