"""Analysis of the results and traces lake with DuckDB: warehouse views, leaderboard, chart.

No Dagster here: the `leaderboard` asset and the CLI call into it.
"""
