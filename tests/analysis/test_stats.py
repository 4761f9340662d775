"""analysis/stats.py: the t-test against closed forms, binomial SEs, pooled SDs and the band rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from editdecay.analysis.stats import (
    binomial_se_percent,
    outside_band,
    paired_t_test,
    pooled_sd,
    t_two_sided_p,
)


def test_t_two_sided_p_matches_closed_forms():
    for t in (0.3, 1.0, 1.8516, 4.0, -2.5):
        a = abs(t)
        assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(a), abs=1e-10)
        assert t_two_sided_p(t, 2) == pytest.approx(1 - a / math.sqrt(a * a + 2), abs=1e-10)
        u = a / math.sqrt(3)
        assert t_two_sided_p(t, 3) == pytest.approx(
            1 - 2 / math.pi * (math.atan(u) + u / (1 + u * u)), abs=1e-10
        )
    assert t_two_sided_p(1.0, 1) == pytest.approx(
        0.5
    )  # a Cauchy variable exceeds 1 in size half the time


def test_paired_t_test_hand_computed():
    before = [10.0, 12.0, 9.0, 15.0]
    after = [8.0, 11.0, 9.0, 10.0]
    # differences 2, 1, 0, 5: mean 2, SD √(14/3), t = 2 / (√(14/3) / 2) = 1.85164
    test = paired_t_test(before, after)
    assert test.n == 4 and test.df == 3
    assert test.mean_diff == pytest.approx(2.0)
    assert test.sd_diff == pytest.approx(math.sqrt(14 / 3))
    assert test.t == pytest.approx(1.851640, abs=1e-6)
    u = test.t / math.sqrt(3)
    assert test.p == pytest.approx(1 - 2 / math.pi * (math.atan(u) + u / (1 + u * u)), abs=1e-10)
    assert test.p == pytest.approx(0.1612, abs=1e-3)


def test_paired_t_test_drops_missing_and_handles_degenerate_cases():
    test = paired_t_test([1.0, np.nan, 3.0, 5.0], [0.0, 1.0, 1.0, 2.0])
    assert test.n == 3 and test.mean_diff == pytest.approx(2.0)
    assert math.isnan(paired_t_test([1.0], [0.0]).p)
    constant = paired_t_test([3.0, 4.0, 5.0], [1.0, 2.0, 3.0])
    assert constant.p == 0.0 and math.isinf(constant.t)
    with pytest.raises(ValueError):
        paired_t_test([1.0, 2.0], [1.0])


def test_binomial_se_percent_is_smoothed_and_missing_without_n():
    se = binomial_se_percent(
        pd.Series([50.0, 100.0, 0.0, 40.0]), pd.Series([100, 100, 100, np.nan])
    )
    # 50 of 100: p = 51/102
    assert se[0] == pytest.approx(100 * math.sqrt((51 / 102) * (51 / 102) / 100))
    # every edit successful still has a positive SE: p = 101/102
    assert se[1] == pytest.approx(100 * math.sqrt((101 / 102) * (1 / 102) / 100)) and se[1] > 0
    assert se[2] == pytest.approx(se[1])  # symmetric
    assert math.isnan(se[3])


def test_pooled_sd_weights_groups_by_their_degrees_of_freedom():
    groups = [
        [1.0, 3.0],
        [10.0, 10.0, 13.0],
        [5.0],
    ]  # variances 2 (1 df) and 3 (2 df); one singleton
    sd, used, dof = pooled_sd(groups)
    assert (used, dof) == (2, 3)
    assert sd == pytest.approx(math.sqrt((2 * 1 + 3 * 2) / 3))
    assert pooled_sd([[1.0, math.nan], [2.0]]) == (pytest.approx(math.nan, nan_ok=True), 0, 0)


@pytest.mark.parametrize(
    ("mean", "se", "expected"),
    [
        (3.0, 1.0, 1),
        (-3.0, 1.0, -1),
        (1.9, 1.0, 0),
        (-2.0, 1.0, 0),
        (5.0, math.nan, 0),
        (math.inf, 1.0, 0),
    ],
)
def test_outside_band_each_way(mean, se, expected):
    assert outside_band(mean, se, 2.0) == expected


def test_chi_square_against_known_quantiles():
    from editdecay.analysis.stats import chi2_cdf, chi2_quantile

    assert chi2_cdf(2.0, 2) == pytest.approx(1 - math.exp(-1.0), abs=1e-12)  # exponential
    assert chi2_quantile(0.95, 1) == pytest.approx(3.841459, abs=1e-5)
    assert chi2_quantile(0.975, 8) == pytest.approx(17.534546, abs=1e-5)
    assert chi2_quantile(0.025, 8) == pytest.approx(2.179731, abs=1e-5)
    assert chi2_quantile(0.5, 30) == pytest.approx(29.33603, abs=1e-4)


def test_sd_interval_brackets_the_estimate_and_narrows_with_dof():
    from editdecay.analysis.stats import sd_interval

    low, high = sd_interval(2.0, 8)
    assert low < 2.0 < high
    assert low == pytest.approx(2.0 * math.sqrt(8 / 17.534546), abs=1e-4)
    wide, narrow = sd_interval(2.0, 2), sd_interval(2.0, 200)
    assert wide[1] - wide[0] > narrow[1] - narrow[0]
    assert all(math.isnan(v) for v in sd_interval(2.0, 0))
