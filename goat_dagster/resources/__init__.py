"""Dagster ConfigurableResources: serving, litellm, sandbox, langfuse, storage."""
