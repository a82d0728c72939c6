"""The warehouse SQL of how far a score can be trusted: its interval and coverage, and task health.

Part of the warehouse SQL (warehouse_sql.py runs these statements among its own, in this order):
  clustered_se   macro: the task-clustered standard error (Miller 2024) from a run's per-task sums
  run_intervals  one row per run: planned attempts, scored, coverage (scored / planned), pass rate with
                 its 95% interval (Wilson with one epoch; task-clustered with several), and the same for
                 errors counted as failures (strict_pass_rate, strict_ci_low/high)
  task_health    one row per task of each suite's current version (its newest run's): the latest oracle
                 run's outcome, how many models' latest runs scored / passed / failed it, models whose
                 epochs disagree (flaky), infra errors; `flags`: oracle fails, flaky, every model
                 fails / passes (2+ models), infra errors. A run is its `run_totals` row (its suite
                 version, agent, start and finish: stored in a snapshot, so only the infra and error
                 counts of the current versions read every rollup row)

The same numbers in Python, for tests and for the paired comparisons, are in stats.py.
"""

from __future__ import annotations

from goat_dagster.analysis.stats import Z95

_Z = repr(Z95)

CLUSTERED_SE = (
    "clustered_se",
    "MACRO",
    """CREATE OR REPLACE MACRO clustered_se(sq, cross_sum, n) AS
CASE WHEN n > 1 THEN sqrt(greatest(0.0, sq / (n * (n - 1.0)) + cross_sum / (CAST(n AS DOUBLE) * n))) END""",
)

RUN_INTERVALS = (
    "run_intervals",
    "VIEW",
    f"""CREATE OR REPLACE VIEW run_intervals AS
WITH per_task AS (
    -- a task's counts are task_outcomes' (one place for them, and no second pass over the lake);
    -- a free-form prompt (unscored) is never planned to be scored
    SELECT run_id, suite, model, task_id, attempts - unscored AS planned, scored, passed, epochs
    FROM task_outcomes
), runs AS (
    SELECT run_id, suite, model,
        count(*) AS tasks,
        max(epochs) AS epochs,
        CAST(sum(planned) AS BIGINT) AS planned,
        sum(scored) AS scored,
        sum(passed) AS passed,
        CAST(sum(passed) AS DOUBLE) / nullif(sum(scored), 0) AS m,
        CAST(sum(passed) AS DOUBLE) / nullif(sum(planned), 0) AS ms
    FROM per_task
    GROUP BY run_id, suite, model
), residuals AS (
    SELECT r.run_id, r.suite, r.model,
        t.passed * (1 - r.m) ^ 2 + (t.scored - t.passed) * r.m ^ 2 AS sq,
        (t.passed - t.scored * r.m) ^ 2 AS s1sq,
        t.passed * (1 - r.ms) ^ 2 + (t.planned - t.passed) * r.ms ^ 2 AS sq_strict,
        (t.passed - t.planned * r.ms) ^ 2 AS s1sq_strict
    FROM per_task t JOIN runs r USING (run_id, suite, model)
), sums AS (
    SELECT run_id, suite, model,
        sum(sq) AS sq, sum(s1sq - sq) AS cross_sum,
        sum(sq_strict) AS sq_strict, sum(s1sq_strict - sq_strict) AS cross_strict
    FROM residuals
    GROUP BY run_id, suite, model
), se AS (
    SELECT r.*,
        clustered_se(s.sq, s.cross_sum, r.scored) AS cse,
        clustered_se(s.sq_strict, s.cross_strict, r.planned) AS cse_strict
    FROM runs r JOIN sums s USING (run_id, suite, model)
)
SELECT run_id, suite, model, tasks, epochs, planned, scored, passed,
    planned - scored AS errors,
    CAST(scored AS DOUBLE) / nullif(planned, 0) AS coverage,
    m AS pass_rate,
    CASE WHEN epochs > 1 THEN 'clustered' ELSE 'wilson' END AS ci_method,
    CASE WHEN epochs > 1 THEN cse END AS se,
    CASE WHEN epochs > 1 THEN greatest(0.0, m - {_Z} * cse) ELSE wilson_low(passed, scored) END AS ci_low,
    CASE WHEN epochs > 1 THEN least(1.0, m + {_Z} * cse) ELSE wilson_high(passed, scored) END AS ci_high,
    ms AS strict_pass_rate,
    CASE WHEN epochs > 1 THEN greatest(0.0, ms - {_Z} * cse_strict)
        ELSE wilson_low(passed, planned) END AS strict_ci_low,
    CASE WHEN epochs > 1 THEN least(1.0, ms + {_Z} * cse_strict)
        ELSE wilson_high(passed, planned) END AS strict_ci_high
FROM se""",
)

TASK_HEALTH = (
    "task_health",
    "VIEW",
    """CREATE OR REPLACE VIEW task_health AS
WITH runs AS (  -- one row per run, as run_totals has it (stored in a snapshot: no pass over the rows)
    SELECT run_id, suite, model, agent, suite_version, started_at, finished_at FROM run_totals
), current_version AS (
    SELECT suite, arg_max(suite_version, started_at) AS suite_version FROM runs GROUP BY suite
), picked AS (
    SELECT r.*, r.agent = 'oracle' AS is_oracle
    FROM runs r JOIN current_version v USING (suite, suite_version)
    QUALIFY row_number() OVER (
        PARTITION BY r.suite, r.model, r.agent = 'oracle'
        ORDER BY r.started_at DESC, r.finished_at DESC, r.run_id DESC
    ) = 1
), oracle_run AS (
    SELECT suite, run_id FROM picked WHERE is_oracle
    QUALIFY row_number() OVER (PARTITION BY suite ORDER BY started_at DESC, run_id DESC) = 1
), oracle AS (
    SELECT o.suite, o.task_id, o.outcome FROM task_outcomes o JOIN oracle_run USING (suite, run_id)
), models AS (
    SELECT o.suite, o.task_id, o.model, o.outcome, o.scored, o.passed
    FROM task_outcomes o JOIN picked p ON o.run_id = p.run_id
    WHERE NOT p.is_oracle
), infra AS (  -- grouped first, then the current versions' groups kept: no join of every row
    SELECT g.suite, g.task_id, g.infra_errors, g.errors
    FROM (
        SELECT suite, suite_version, task_id,
            CAST(sum(errors_infra) AS BIGINT) AS infra_errors,
            CAST(sum(errors) AS BIGINT) AS errors
        FROM task_rollup
        GROUP BY suite, suite_version, task_id
    ) g JOIN current_version USING (suite, suite_version)
), per_task AS (  -- the models' counts of each task, before the (one row a task) joins
    SELECT suite, task_id,
        count(model) FILTER (WHERE scored > 0) AS models_scored,
        count(model) FILTER (WHERE outcome = 'passed') AS models_passed,
        count(model) FILTER (WHERE outcome = 'failed') AS models_failed,
        count(model) FILTER (WHERE passed > 0 AND passed < scored) AS flaky_models,
        -- as string_agg(model, ',' ORDER BY model) would, without an ordered aggregate
        array_to_string(list_sort(list(model) FILTER (WHERE passed > 0 AND passed < scored
            AND model IS NOT NULL)), ',') AS flaky_in
    FROM models
    GROUP BY suite, task_id
), counted AS (
    SELECT i.suite, i.task_id,
        ot.outcome AS oracle,
        coalesce(m.models_scored, 0) AS models_scored,
        coalesce(m.models_passed, 0) AS models_passed,
        coalesce(m.models_failed, 0) AS models_failed,
        coalesce(m.flaky_models, 0) AS flaky_models,
        m.flaky_in,
        i.infra_errors,
        i.errors
    FROM infra i
    LEFT JOIN per_task m USING (suite, task_id)
    LEFT JOIN (SELECT suite, task_id, any_value(outcome) AS outcome FROM oracle GROUP BY suite, task_id) ot
        USING (suite, task_id)
)
SELECT c.suite, v.suite_version, c.task_id, c.oracle, c.models_scored, c.models_passed, c.models_failed,
    c.flaky_models, c.flaky_in, c.infra_errors, c.errors,
    list_filter([
        CASE WHEN c.oracle = 'failed' THEN 'oracle fails' END,
        CASE WHEN c.oracle = 'error' THEN 'oracle errors' END,
        CASE WHEN c.flaky_models > 0 THEN 'flaky' END,
        CASE WHEN c.models_scored >= 2 AND c.models_passed = 0 THEN 'every model fails' END,
        CASE WHEN c.models_scored >= 2 AND c.models_passed = c.models_scored THEN 'every model passes' END,
        CASE WHEN c.infra_errors > 0 THEN 'infra errors' END
    ], lambda f: f IS NOT NULL) AS flags
FROM counted c JOIN current_version v USING (suite)
ORDER BY c.suite, c.task_id""",
)
