"""Two models' errors over the same seeds: medians, the published t-test and paired tests.

``compare_errors(a, b)`` takes the test errors of model A and model B, one pair per seed
(the same training points and the same initialisation seed for both), and returns:

- ``median_a``, ``q1_a``, ``q3_a`` (and for b): medians and quartiles;
- the surrogate paper's statistic, a two-sample t-test on the raw errors: the paper gives
  only "a T-test value" between the two groups of errors, read here as Welch's unpaired
  test, signed so that t > 0 when B's errors are larger (``welch_t``, ``welch_p``), with
  Cohen's d on the raw errors (pooled sd; ``cohen_d``);
- a paired t-test on log10 errors (``paired_log_t``, ``paired_log_p``): errors spread over
  orders of magnitude, so their ratio, not their difference, is the scale that compares;
  ``log_ratio_median`` = median over seeds of log10(a / b) (< 0: A better), and the
  geometric-mean ratio ``gmean_ratio`` = 10 ** mean log10(a / b);
- the paired Wilcoxon signed-rank test on a - b (two-sided, exact for n <= 50 without ties;
  ``wilcoxon_p``) with its matched-pairs rank-biserial correlation ``rank_biserial``
  (-1: A better on every seed, +1: B better on every seed) and ``a_wins`` (seeds with a < b).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def rank_biserial(a: Sequence[float], b: Sequence[float]) -> float:
    """Matched-pairs rank-biserial correlation of a - b: (R+ - R-) / (R+ + R-), zero
    differences dropped; +1 when a > b on every pair."""
    from scipy.stats import rankdata

    d = np.asarray(a, float) - np.asarray(b, float)
    d = d[d != 0]
    if len(d) == 0:
        return 0.0
    ranks = rankdata(np.abs(d))
    plus, minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((plus - minus) / (plus + minus))


def compare_errors(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Statistics of paired positive errors a (model A) and b (model B); see the module."""
    from scipy.stats import ttest_ind, ttest_rel, wilcoxon

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError("compare_errors needs two equally long 1-D samples of 2 or more")
    if np.any(a <= 0) or np.any(b <= 0):
        raise ValueError("errors must be positive (their logarithms are compared)")
    out: dict[str, float] = {"n": float(len(a))}
    for name, x in (("a", a), ("b", b)):
        q1, med, q3 = np.percentile(x, [25, 50, 75])
        out.update({f"median_{name}": float(med), f"q1_{name}": float(q1),
                    f"q3_{name}": float(q3)})
    welch = ttest_ind(b, a, equal_var=False)
    pooled = math.sqrt(0.5 * (a.var(ddof=1) + b.var(ddof=1)))
    out.update({"welch_t": float(welch.statistic), "welch_p": float(welch.pvalue),
                "cohen_d": float((b.mean() - a.mean()) / pooled) if pooled > 0 else 0.0})
    la, lb = np.log10(a), np.log10(b)
    diff = la - lb
    if np.ptp(diff) <= 1e-12:  # one ratio on every seed (to rounding): no spread to test
        t, p = (math.copysign(math.inf, diff[0]), 0.0) if diff[0] != 0 else (0.0, 1.0)
    else:
        paired = ttest_rel(la, lb)
        t, p = float(paired.statistic), float(paired.pvalue)
    out.update({"paired_log_t": t, "paired_log_p": p,
                "log_ratio_median": float(np.median(la - lb)),
                "gmean_ratio": float(10 ** np.mean(la - lb))})
    if np.all(a == b):
        out["wilcoxon_p"] = 1.0
    else:
        out["wilcoxon_p"] = float(wilcoxon(a, b, alternative="two-sided").pvalue)
    out["rank_biserial"] = rank_biserial(a, b)
    out["a_wins"] = float(np.sum(a < b))
    return out
