"""The warehouse SQL of paired comparisons between runs: what `compare.py` turns into a `Comparison`.

Part of the warehouse SQL (warehouse_sql.py runs it among its own statements):
  paired_compare_pairs(runs_a, runs_b)  macro table, one row per pair (runs_a[i], runs_b[i]) over the
                 tasks each run scored (`task_outcomes` rows with scored > 0): `shared_tasks`, the
                 number of tasks only one of them scored (`only_a_tasks`, `only_b_tasks`: which
                 ones, `SCORED_BY_ONE`), the mean pass fraction
                 of each on the shared tasks (`pass_rate_a`, `pass_rate_b`), the per-task differences
                 d = frac_b - frac_a (`mean_d`, and `sd_d`, their sample standard deviation), and the
                 discordant tasks by their outcomes (`pass_to_fail`: passed in A, failed in B;
                 `fail_to_pass`; compare.py sorts them).

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
), ids AS (
    SELECT pair_a AS run_id FROM p UNION SELECT pair_b FROM p
), scored AS (
    SELECT o.run_id, o.task_id, o.pass_frac, o.outcome
    FROM task_outcomes o SEMI JOIN ids ON o.run_id = ids.run_id
    WHERE o.scored > 0
), counted AS (
    SELECT run_id, count(*) AS n FROM scored GROUP BY run_id
), shared AS (
    SELECT p.pair_a, p.pair_b, a.task_id, a.pass_frac AS frac_a, b.pass_frac AS frac_b,
        a.outcome AS outcome_a, b.outcome AS outcome_b, b.pass_frac - a.pass_frac AS d
    FROM p JOIN scored a ON a.run_id = p.pair_a JOIN scored b ON b.run_id = p.pair_b AND b.task_id = a.task_id
), per_pair AS (
    SELECT pair_a, pair_b,
        count(*) AS shared_tasks,
        fsum(frac_a) / count(*) AS pass_rate_a,
        fsum(frac_b) / count(*) AS pass_rate_b,
        fsum(d) / count(*) AS mean_d,
        CASE WHEN count(*) > 1 THEN sqrt(greatest(0.0,
            (fsum(d * d) - fsum(d) * fsum(d) / count(*)) / (count(*) - 1))) END AS sd_d,
        coalesce(list(task_id) FILTER (WHERE outcome_a = 'passed' AND outcome_b = 'failed'), [])
            AS pass_to_fail,
        coalesce(list(task_id) FILTER (WHERE outcome_a = 'failed' AND outcome_b = 'passed'), [])
            AS fail_to_pass
    FROM shared
    GROUP BY pair_a, pair_b
)
SELECT p.pair_a, p.pair_b,
    coalesce(s.shared_tasks, 0) AS shared_tasks,
    coalesce(ca.n, 0) - coalesce(s.shared_tasks, 0) AS only_a_tasks,
    coalesce(cb.n, 0) - coalesce(s.shared_tasks, 0) AS only_b_tasks,
    s.pass_rate_a, s.pass_rate_b, s.mean_d, s.sd_d,
    coalesce(s.pass_to_fail, []) AS pass_to_fail,
    coalesce(s.fail_to_pass, []) AS fail_to_pass
FROM p
LEFT JOIN per_pair s ON s.pair_a = p.pair_a AND s.pair_b = p.pair_b
LEFT JOIN counted ca ON ca.run_id = p.pair_a
LEFT JOIN counted cb ON cb.run_id = p.pair_b""",
)

# The tasks one run scored and the other did not (`only_a`, `only_b` of a comparison), for the pairs
# whose counts above say there are some: rare, so not part of every pair's row.
SCORED_BY_ONE = """
SELECT task_id FROM task_outcomes WHERE run_id = $1 AND scored > 0
EXCEPT
SELECT task_id FROM task_outcomes WHERE run_id = $2 AND scored > 0
ORDER BY task_id"""
