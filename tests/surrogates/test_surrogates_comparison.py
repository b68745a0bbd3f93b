"""The statistics of the data-scarcity study, against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from surrogates.comparison import compare_errors, rank_biserial


def test_a_uniformly_twice_as_good():
    a = [1.0, 2.0, 3.0, 4.0, 5.0]
    b = [2.0 * x for x in a]
    s = compare_errors(a, b)
    assert (s["q1_a"], s["median_a"], s["q3_a"]) == (2.0, 3.0, 4.0)
    assert s["median_b"] == 6.0
    # Welch: means 3 and 6, variances 2.5 and 10, n = 5 each
    assert s["welch_t"] == pytest.approx(3.0 / math.sqrt(2.5 / 5 + 10.0 / 5))
    assert s["cohen_d"] == pytest.approx(3.0 / math.sqrt(0.5 * (2.5 + 10.0)))
    assert s["gmean_ratio"] == pytest.approx(0.5)
    assert s["paired_log_t"] == -math.inf  # one ratio on every seed
    assert s["paired_log_p"] == 0.0
    assert s["log_ratio_median"] == pytest.approx(-math.log10(2.0))
    # every pair favours a: rank-biserial -1, exact two-sided signed-rank p = 2 / 2^5
    assert s["rank_biserial"] == -1.0
    assert s["wilcoxon_p"] == pytest.approx(2 / 32)
    assert s["a_wins"] == 5.0


def test_rank_biserial_of_mixed_pairs():
    # differences 1, -2, 3 (ranks 1, 2, 3): (4 - 2) / 6; a zero difference is dropped
    assert rank_biserial([2, 1, 6, 5], [1, 3, 3, 5]) == pytest.approx(1 / 3)


def test_paired_log_t_sees_a_consistent_ratio_welch_does_not():
    # b is 1.2 to 1.3 times a on every seed, but the seeds spread over 3 decades
    a = [1e-4, 1e-3, 1e-2, 1e-1, 3e-4, 3e-3, 3e-2, 5e-2]
    b = [x * f for x, f in zip(a, [1.2, 1.3, 1.25, 1.22, 1.28, 1.21, 1.27, 1.24], strict=True)]
    s = compare_errors(a, b)
    assert s["paired_log_p"] < 1e-6
    assert s["welch_p"] > 0.5
    assert s["rank_biserial"] == -1.0


def test_refuses_what_it_cannot_compare():
    with pytest.raises(ValueError, match="equally long"):
        compare_errors([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        compare_errors([1.0, 0.0], [1.0, 2.0])
