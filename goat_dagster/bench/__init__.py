"""The benchmark harness: suites, sandboxes, agents, checks, the results journal. No Dagster here."""
