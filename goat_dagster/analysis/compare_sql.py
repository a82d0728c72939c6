"""The warehouse SQL of comparing two runs task by task: the A/B macros.

Part of the warehouse SQL (warehouse_sql.py runs it among its own statements, after `task_outcomes`):
  ab_change(outcome_a, outcome_b)  what became of a task from run A to run B, by its outcomes
                 (`task_outcomes.outcome`; NULL: the run lacks the task): 'pass→fail', 'fail→pass',
                 'unchanged' (passed or failed in both) or 'not comparable' (an error, unscored or
                 missing on either side). The one definition: `ab_compare_pairs` calls it, and so
                 does every comparison goat makes (pair_matrix.py evaluates it for each combination
                 of outcomes and applies it to a matrix of the runs' outcomes).
  ab_compare_pairs(runs_a, runs_b)  per-task rows of many pairs (pair i = runs_a[i], runs_b[i]): every
                 task either run has, with each side's outcome ('missing'), pass fraction and cell,
                 and its change.
  ab_compare(run_a, run_b)  the same for one pair.

The paired statistics of a comparison (shared tasks, mean pass fractions, the differences' mean and
sample sd, the flipped tasks) are made from the same `task_outcomes` rows by pair_matrix.py, in exact
integer arithmetic over a run x task matrix (compare.py turns them into a `Comparison`).
"""

from __future__ import annotations

AB_CHANGE = (
    "ab_change",
    "MACRO",
    """CREATE OR REPLACE MACRO ab_change(outcome_a, outcome_b) AS
CASE
    WHEN outcome_a = 'passed' AND outcome_b = 'failed' THEN 'pass→fail'
    WHEN outcome_a = 'failed' AND outcome_b = 'passed' THEN 'fail→pass'
    WHEN outcome_a = outcome_b AND outcome_a IN ('passed', 'failed') THEN 'unchanged'
    ELSE 'not comparable'
END""",
)

AB_COMPARE_PAIRS = (
    # the A/B of many pairs of runs in one pass (pair i = runs_a[i], runs_b[i]); `ab_compare` is
    # the one pair
    "ab_compare_pairs",
    "MACRO TABLE",
    """CREATE OR REPLACE MACRO ab_compare_pairs(runs_a, runs_b) AS TABLE
WITH p AS (
    SELECT DISTINCT unnest(runs_a) AS pair_a, unnest(runs_b) AS pair_b
), a AS (
    SELECT p.pair_a, p.pair_b, o.* FROM p JOIN task_outcomes o ON o.run_id = p.pair_a
), b AS (
    SELECT p.pair_a, p.pair_b, o.* FROM p JOIN task_outcomes o ON o.run_id = p.pair_b
)
SELECT
    coalesce(a.pair_a, b.pair_a) AS pair_a,
    coalesce(a.pair_b, b.pair_b) AS pair_b,
    coalesce(a.task_id, b.task_id) AS task_id,
    coalesce(a.outcome, 'missing') AS outcome_a,
    coalesce(b.outcome, 'missing') AS outcome_b,
    a.pass_frac AS pass_frac_a,
    b.pass_frac AS pass_frac_b,
    a.cell AS cell_a,
    b.cell AS cell_b,
    ab_change(a.outcome, b.outcome) AS change
FROM a FULL OUTER JOIN b ON a.pair_a = b.pair_a AND a.pair_b = b.pair_b AND a.task_id = b.task_id
ORDER BY pair_a, pair_b, change, task_id""",
)

AB_COMPARE = (
    "ab_compare",
    "MACRO TABLE",
    """CREATE OR REPLACE MACRO ab_compare(run_a, run_b) AS TABLE
SELECT * EXCLUDE (pair_a, pair_b) FROM ab_compare_pairs([run_a], [run_b]) ORDER BY change, task_id""",
)

AB_SQL = [AB_CHANGE, AB_COMPARE_PAIRS, AB_COMPARE]
