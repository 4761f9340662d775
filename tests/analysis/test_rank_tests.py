"""analysis/rank_tests.py: Mann–Whitney U by hand and against scipy; the group comparison."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from editdecay.analysis.rank_tests import average_ranks, compare_groups, mann_whitney_u


def test_average_ranks_share_ties():
    ranks = average_ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0]))
    assert ranks.tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]


def test_hand_computed_example_with_a_tie():
    # pooled 1 2 3 3 4 5 6 → ranks 1 2 3.5 3.5 5 6 7; R_x = 11.5, U_x = 11.5 − 10 = 1.5, E[U] = 6;
    # one tie of two: Var = 12/12 · (8 − 6/42) = 55/7
    test = mann_whitney_u([1, 2, 3, 4], [3, 5, 6])
    sd = math.sqrt(55 / 7)
    assert (test.n_x, test.n_y, test.u) == (4, 3, 1.5)
    assert test.effect == pytest.approx(1.5 / 12)
    assert test.z == pytest.approx(-(4.5 - 0.5) / sd)
    assert test.p == pytest.approx(math.erfc(4.0 / sd / math.sqrt(2)))
    assert test.p == pytest.approx(0.153576, abs=1e-6)
    plain = mann_whitney_u([1, 2, 3, 4], [3, 5, 6], continuity=False)
    assert plain.p == pytest.approx(math.erfc(4.5 / sd / math.sqrt(2)))
    assert plain.p == pytest.approx(0.108408, abs=1e-6)


def test_comes_out_each_way():
    rng = np.random.default_rng(0)
    low = rng.normal(size=20)
    clearly_larger = mann_whitney_u(low + 5.0, low)
    assert clearly_larger.effect == 1.0 and clearly_larger.p < 1e-6 and clearly_larger.z > 0
    assert mann_whitney_u(low, low + 5.0).z < 0  # the sign says which way
    identical = mann_whitney_u(low, low.copy())
    assert identical.effect == 0.5 and identical.p == pytest.approx(1.0)


def test_degenerate_samples():
    assert mann_whitney_u([2.0, 2.0], [2.0, 2.0, 2.0]).p == 1.0  # no variance: no evidence
    assert math.isnan(mann_whitney_u([], [1.0, 2.0]).p)
    dropped = mann_whitney_u([1.0, np.nan, 2.0], [3.0, np.inf])
    assert (dropped.n_x, dropped.n_y) == (2, 1)


@pytest.mark.parametrize("continuity", [True, False])
def test_matches_scipy(continuity):
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for n_x, n_y, shift in ((8, 11, 0.0), (20, 15, 0.7), (5, 30, -1.5)):
        x = np.round(rng.normal(shift, 1.0, n_x), 1)  # rounding makes ties
        y = np.round(rng.normal(0.0, 1.0, n_y), 1)
        ours = mann_whitney_u(x, y, continuity=continuity)
        ref = stats.mannwhitneyu(x, y, method="asymptotic", use_continuity=continuity)
        assert ours.u == pytest.approx(float(ref.statistic))
        assert ours.p == pytest.approx(float(ref.pvalue), rel=1e-9)


def test_compare_groups_selects_layer_and_labels():
    table = pd.DataFrame(
        {
            "prompt": [0, 1, 2, 3, 0, 1, 2, 3],
            "layer": [0, 0, 0, 0, 1, 1, 1, 1],
            "norm_ed": [1.0, 1.0, 1.0, 1.0, 9.0, 8.0, 2.0, 1.0],
        }
    )
    groups = {0: "stable", 1: "stable", 2: "erased", 3: "erased"}
    at_one = compare_groups(table, groups, layer=1)
    assert (at_one.mean_first, at_one.mean_second) == (8.5, 1.5)
    assert at_one.test.effect == 1.0 and at_one.layer == 1
    assert compare_groups(table, pd.Series(groups), layer=0).test.p == 1.0
    emergent = compare_groups(
        table, ["stable", "emergent", "erased", "erased"], 1, first="emergent"
    )
    assert emergent.test.n_x == 1 and emergent.mean_first == 8.0
    with pytest.raises(ValueError):
        compare_groups(table, groups, layer=5)
