"""Interval estimates for pass rates and paired comparisons of runs: the formulas, one place.

- `wilson(passed, n)`: Wilson's score interval for a run of single attempts (one epoch).
- `clustered(per_task)`: the task-clustered standard error of a run with several epochs (Miller
  2024, "Adding Error Bars to Evals", eq. for clustered SEs): attempts of one task are not
  independent, so the naive binomial interval is too narrow. With n scored attempts, mean s, and
  residuals e_i = s_i - s:

      SE^2 = sum_i e_i^2 / (n (n - 1))  +  (1 / n^2) sum_tasks sum_{i != j in task} e_i e_j

  i.e. the CLT variance plus the within-task covariances. The 95% interval is s +- 1.96 SE.
- `paired(a, b)`: two runs on the tasks both scored: d_t = b_t - a_t with each task's pass fraction
  (0/1 with one epoch), mean d, SE = sd(d) / sqrt(n) (sample sd), 95% interval d +- 1.96 SE
  (Miller 2024, paired differences).
  `paired_interval(n, mean, sd)` is the same from the differences' count, mean and sample sd, which
  pair_matrix.py computes exactly for many pairs of runs in one pass: the comparisons (compare.py)
  go through it; `paired` is the formula written out for the tests.
- `mcnemar_exact(b, c)`: exact two-sided McNemar test on the discordant tasks (b: passed in A only,
  c: passed in B only): p = min(1, 2 P[Bin(b + c, 1/2) <= min(b, c)]).

The warehouse's `run_intervals` view computes the per-run intervals with the same formulas in SQL
(warehouse.py); tests check both against independent computations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)  # 1.959963984540054


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    se: float | None = None
    method: str = ""  # wilson | clustered | paired


def wilson(passed: int, n: int, z: float = Z95) -> Interval | None:
    """Wilson score interval of passed / n."""
    if n <= 0:
        return None
    p = passed / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(p, max(0.0, (centre - half) / denom), min(1.0, (centre + half) / denom), None, "wilson")


def clustered(per_task: Iterable[tuple[int, int]], z: float = Z95) -> Interval | None:
    """Mean pass rate over all scored attempts with the task-clustered SE; `per_task` holds
    (passed, scored) per task. None with fewer than 2 scored attempts."""
    tasks = [(p, k) for p, k in per_task if k > 0]
    n = sum(k for _, k in tasks)
    if n < 2:
        return None
    mean = sum(p for p, _ in tasks) / n
    sq = 0.0  # sum of squared residuals
    cross = 0.0  # sum over tasks of sum_{i != j} e_i e_j = (sum e)^2 - sum e^2
    for p, k in tasks:
        s2 = p * (1 - mean) ** 2 + (k - p) * mean**2
        s1 = p - k * mean
        sq += s2
        cross += s1 * s1 - s2
    var = sq / (n * (n - 1)) + cross / (n * n)
    se = math.sqrt(max(var, 0.0))
    return Interval(mean, max(0.0, mean - z * se), min(1.0, mean + z * se), se, "clustered")


def run_interval(per_task: Sequence[tuple[int, int]], epochs: int) -> Interval | None:
    """The interval a run gets: Wilson with one epoch, task-clustered with several."""
    if epochs > 1:
        return clustered(per_task)
    return wilson(sum(p for p, _ in per_task), sum(k for _, k in per_task))


def paired(diffs: Sequence[float], z: float = Z95) -> Interval | None:
    """Mean of per-task differences with its paired 95% interval; None without any task."""
    n = len(diffs)
    if n == 0:
        return None
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else None
    return paired_interval(n, mean, sd, z)


def paired_interval(n: int, mean: float, sd: float | None, z: float = Z95) -> Interval | None:
    """The paired 95% interval from n per-task differences, their mean and sample sd (the SQL of
    pair_matrix.py gives these for many pairs of runs at once); None without any task."""
    if n == 0:
        return None
    if n == 1 or sd is None:
        return Interval(mean, mean, mean, None, "paired")
    se = sd / math.sqrt(n)
    return Interval(mean, max(-1.0, mean - z * se), min(1.0, mean + z * se), se, "paired")


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for b and c discordant pairs (1.0 when there are none).

    The binomial tail P[Bin(n, 1/2) <= k] summed from its largest term down, each term the one above
    times i / (n - i + 1), until the rest cannot change the sum: a ranking makes hundreds of these
    over a thousand tasks, and the sum of exact binomial coefficients cost milliseconds each."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    term = math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2))
    tail = 0.0
    i = k
    while i >= 0 and term > tail * 1e-17:
        tail += term
        term *= i / (n - i + 1)
        i -= 1
    return min(1.0, 2 * tail)
