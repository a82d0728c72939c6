"""The warehouse SQL of paired comparisons between runs: what `compare.py` turns into a `Comparison`.

Part of the warehouse SQL (warehouse_sql.py runs it among its own statements):
  paired_compare_pairs(runs_a, runs_b)  macro table, one row per pair (runs_a[i], runs_b[i]) over the
                 tasks each run scored (`task_outcomes` rows with scored > 0): `shared_tasks`, the
                 tasks only one of them scored (`only_a`, `only_b`, sorted), the mean pass fraction
                 of each on the shared tasks (`pass_rate_a`, `pass_rate_b`), the per-task differences
                 d = frac_b - frac_a (`mean_d`, and `sd_d`, their sample standard deviation), and the
                 discordant tasks by their outcomes (`pass_to_fail`: passed in A, failed in B;
                 `fail_to_pass`), sorted.

A ranking of 20 models compares 190 pairs over a thousand tasks each: one self-join of the runs'
task outcomes here, returning only per-pair counts, sums and the flipped tasks, instead of every
pair's rows in Python. The interval (stats.paired_interval) and the exact McNemar p
(stats.mcnemar_exact, from the two discordant counts) are computed from this row in compare.py.
Sums are Kahan-compensated (`fsum`), so the numbers do not depend on the order DuckDB adds them in.
"""

from __future__ import annotations

PAIRED_COMPARE_PAIRS = (
    "paired_compare_pairs",
    "MACRO TABLE",
    """CREATE OR REPLACE MACRO paired_compare_pairs(runs_a, runs_b) AS TABLE
WITH p AS (
    SELECT DISTINCT unnest(runs_a) AS pair_a, unnest(runs_b) AS pair_b
), scored AS (
    SELECT run_id, task_id, pass_frac, outcome FROM task_outcomes
    WHERE scored > 0 AND (list_contains(runs_a, run_id) OR list_contains(runs_b, run_id))
), a AS (
    SELECT p.pair_a, p.pair_b, s.task_id, s.pass_frac, s.outcome FROM p JOIN scored s ON s.run_id = p.pair_a
), b AS (
    SELECT p.pair_a, p.pair_b, s.task_id, s.pass_frac, s.outcome FROM p JOIN scored s ON s.run_id = p.pair_b
), joined AS (
    SELECT coalesce(a.pair_a, b.pair_a) AS pair_a, coalesce(a.pair_b, b.pair_b) AS pair_b,
        coalesce(a.task_id, b.task_id) AS task_id,
        a.pass_frac AS frac_a, b.pass_frac AS frac_b, a.outcome AS outcome_a, b.outcome AS outcome_b,
        b.pass_frac - a.pass_frac AS d
    FROM a FULL OUTER JOIN b ON a.pair_a = b.pair_a AND a.pair_b = b.pair_b AND a.task_id = b.task_id
)
SELECT pair_a, pair_b,
    count(d) AS shared_tasks,
    coalesce(list(task_id ORDER BY task_id) FILTER (WHERE frac_b IS NULL), []) AS only_a,
    coalesce(list(task_id ORDER BY task_id) FILTER (WHERE frac_a IS NULL), []) AS only_b,
    fsum(frac_a) FILTER (WHERE d IS NOT NULL) / nullif(count(d), 0) AS pass_rate_a,
    fsum(frac_b) FILTER (WHERE d IS NOT NULL) / nullif(count(d), 0) AS pass_rate_b,
    fsum(d) / nullif(count(d), 0) AS mean_d,
    CASE WHEN count(d) > 1 THEN sqrt(greatest(0.0,
        (fsum(d * d) - fsum(d) * fsum(d) / count(d)) / (count(d) - 1))) END AS sd_d,
    coalesce(list(task_id ORDER BY task_id)
        FILTER (WHERE outcome_a = 'passed' AND outcome_b = 'failed'), []) AS pass_to_fail,
    coalesce(list(task_id ORDER BY task_id)
        FILTER (WHERE outcome_a = 'failed' AND outcome_b = 'passed'), []) AS fail_to_pass
FROM joined
GROUP BY pair_a, pair_b""",
)
