"""The Mann–Whitney U rank test, and its use on per-prompt tables: is one group of edits larger?

PAPER §4 claims 12 and 13 compare groups of edits (stable, erased, emergent) without a test; the
rank test here makes "stable edits have larger edit-induced activation changes" and "erased edits
have rarer targets" checkable without assuming normal values. Pure numpy/pandas (no scipy).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankTest:
    """A two-sample Mann–Whitney U test of x against y.

    u: U of x, the number of pairs (x_i, y_j) with x_i > y_j, a tie counting ½.
    effect: u / (n_x n_y) = P(X > Y) + ½ P(X = Y); 1 when every x exceeds every y, ½ for no shift.
    z, p: the normal approximation with the tie-corrected variance; p is two-sided.
    """

    n_x: int
    n_y: int
    u: float
    effect: float
    z: float
    p: float


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=float)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start + 1
        while end < len(values) and sorted_values[end] == sorted_values[start]:
            end += 1
        ranks[order[start:end]] = (start + 1 + end) / 2  # mean of ranks start+1 .. end
        start = end
    return ranks


def normal_two_sided_p(z: float) -> float:
    """P(|Z| ≥ |z|) for a standard normal Z."""
    return math.erfc(abs(z) / math.sqrt(2))


def mann_whitney_u(x: Sequence[float], y: Sequence[float], *, continuity: bool = True) -> RankTest:
    """Mann–Whitney U of x vs y, two-sided p from the normal approximation with tie correction.

    U_x = R_x − n_x(n_x + 1)/2 with R_x the sum of x's average ranks in the pooled sample;
    E[U] = n_x n_y / 2; Var[U] = n_x n_y / 12 · ((n + 1) − Σ(t³ − t) / (n(n − 1))) over tie groups
    of size t. With `continuity`, |U − E[U]| is reduced by ½ (scipy's default). Non-finite values
    are dropped. An empty sample gives NaN; a pooled sample of one value throughout has no
    variance and gives z = 0, p = 1 (no evidence of a shift).
    """
    a, b = _finite(x), _finite(y)
    n_x, n_y = len(a), len(b)
    if n_x == 0 or n_y == 0:
        return RankTest(n_x, n_y, math.nan, math.nan, math.nan, math.nan)
    pooled = np.concatenate([a, b])
    u = float(average_ranks(pooled)[:n_x].sum() - n_x * (n_x + 1) / 2)
    effect = u / (n_x * n_y)
    sd = math.sqrt(_u_variance(pooled, n_x, n_y))
    if sd == 0.0:
        return RankTest(n_x, n_y, u, effect, 0.0, 1.0)
    distance = abs(u - n_x * n_y / 2)
    if continuity:
        distance = max(distance - 0.5, 0.0)
    z = math.copysign(distance / sd, u - n_x * n_y / 2)
    return RankTest(n_x, n_y, u, effect, z, normal_two_sided_p(z))


def _finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def _u_variance(pooled: np.ndarray, n_x: int, n_y: int) -> float:
    n = n_x + n_y
    _, tie_sizes = np.unique(pooled, return_counts=True)
    tie_term = float((tie_sizes**3 - tie_sizes).sum()) / (n * (n - 1)) if n > 1 else 0.0
    return n_x * n_y / 12 * ((n + 1) - tie_term)


@dataclass(frozen=True)
class GroupComparison:
    """`measure` of group `first` against group `second` (at one layer for per-layer tables)."""

    measure: str
    first: str
    second: str
    mean_first: float
    mean_second: float
    test: RankTest
    layer: int | None = None


def compare_groups(
    per_prompt: pd.DataFrame,
    groups: Mapping[int, str] | Sequence[str] | pd.Series,
    layer: int | None,
    *,
    measure: str = "norm_ed",
    first: str = "stable",
    second: str = "erased",
) -> GroupComparison:
    """Rank test of `measure` in group `first` against group `second`.

    per_prompt: a table with a `prompt` column (the prompt's index in the list given to
        `evaluation.activations.hidden_states`) and `measure`; with `layer` given, also a `layer`
        column, and only that layer's rows are used (the per-prompt table of
        `displacement_geometry(..., per_prompt=True)`).
    groups: each prompt's group label, by prompt index (a mapping, a series, or a sequence in
        prompt order); prompts without a label, or in neither group, are left out.

    Claim 12's "stable edits have larger ‖h_ed − h‖ than erased ones" is the default: a small p
    with effect > ½.
    """
    rows = per_prompt if layer is None else per_prompt[per_prompt["layer"] == layer]
    if rows.empty:
        raise ValueError(f"no rows for layer {layer}")
    labels = rows["prompt"].map(_label_lookup(groups))
    a = rows.loc[labels == first, measure].to_numpy(dtype=float)
    b = rows.loc[labels == second, measure].to_numpy(dtype=float)
    if len(a) == 0 or len(b) == 0:
        log.warning("group %r has %d prompts, group %r has %d", first, len(a), second, len(b))
    return GroupComparison(measure, first, second, _mean(a), _mean(b), mann_whitney_u(a, b), layer)


def _label_lookup(groups) -> Mapping:
    if isinstance(groups, pd.Series | Mapping):
        return dict(groups)
    return dict(enumerate(groups))


def _mean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if len(values) else math.nan
