"""Statistics the verdicts rest on: the paired t-test, binomial standard errors, pooled SDs, bands.

Pure functions of numbers (no study tables): the claim checks and any later verdict use them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TTest:
    n: int
    mean_before: float
    mean_after: float
    mean_diff: float  # before − after
    sd_diff: float
    t: float
    df: int
    p: float  # two-sided


def paired_t_test(before: Sequence[float], after: Sequence[float]) -> TTest:
    """Student's paired t-test of before − after (two-sided), pairs with a missing value dropped.

    t = mean(d) / (sd(d) / √n), df = n − 1, p = P(|T_df| ≥ |t|). With fewer than 2 pairs, or
    identical differences throughout, t and p are NaN (p is 0 when every difference is the same
    non-zero value: t is infinite).
    """
    b = np.asarray(before, dtype=float)
    a = np.asarray(after, dtype=float)
    if b.shape != a.shape:
        raise ValueError(f"before and after differ in length: {b.shape} vs {a.shape}")
    keep = np.isfinite(b) & np.isfinite(a)
    b, a = b[keep], a[keep]
    n = int(len(b))
    d = b - a
    mean_b = float(b.mean()) if n else math.nan
    mean_a = float(a.mean()) if n else math.nan
    if n < 2:
        return TTest(
            n,
            mean_b,
            mean_a,
            float(d.mean()) if n else math.nan,
            math.nan,
            math.nan,
            max(n - 1, 0),
            math.nan,
        )
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        t = math.copysign(math.inf, mean) if mean else math.nan
        return TTest(n, mean_b, mean_a, mean, sd, t, n - 1, 0.0 if mean else math.nan)
    t = mean / (sd / math.sqrt(n))
    return TTest(n, mean_b, mean_a, mean, sd, t, n - 1, t_two_sided_p(t, n - 1))


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with `df` degrees of freedom: I_x(df/2, 1/2), x = df / (df + t²)."""
    if not math.isfinite(t):
        return 0.0 if math.isinf(t) else math.nan
    if df <= 0:
        return math.nan
    return _regularized_beta(df / (df + t * t), df / 2.0, 0.5)


def _regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) by its continued fraction (modified Lentz), using the symmetry for x > (a+1)/(a+b+2)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _regularized_beta(1.0 - x, b, a)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return math.exp(log_front) * h / a


def binomial_se_percent(percent: pd.Series, n: pd.Series) -> pd.Series:
    """100·√(p(1−p)/n) with the smoothed p = (x+1)/(n+2), x = percent/100·n; NaN where n is missing.

    The smoothing keeps the standard error above 0 when every edit succeeds (or none does).
    """
    n = pd.to_numeric(n, errors="coerce").astype(float)
    x = pd.to_numeric(percent, errors="coerce").astype(float).clip(0, 100) / 100 * n
    p = (x + 1) / (n + 2)
    return 100 * np.sqrt(p * (1 - p) / n.where(n > 0))


def pooled_sd(groups: Iterable[Sequence[float]]) -> tuple[float, int, int]:
    """The pooled sample SD over groups of replicates: (sd, groups with ≥ 2 values, degrees of freedom).

    sd = √(Σ (n_g − 1)·s_g² / Σ (n_g − 1)); NaN when no group has two values.
    """
    squares, dof, used = 0.0, 0, 0
    for values in groups:
        present = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
        if len(present) >= 2:
            squares += float(present.var(ddof=1)) * (len(present) - 1)
            dof += len(present) - 1
            used += 1
    return (math.sqrt(squares / dof) if dof else math.nan), used, dof


def outside_band(mean: float, se: float, z: float) -> int:
    """+1 if mean > z·se, −1 if mean < −z·se, 0 inside the band or when either value is not finite."""
    if not (math.isfinite(mean) and math.isfinite(se)):
        return 0
    if mean > z * se:
        return 1
    if mean < -z * se:
        return -1
    return 0


def regularized_gamma_p(a: float, x: float) -> float:
    """P(a, x), the regularized lower incomplete gamma: its series below a + 1, else 1 − Q by
    Q's continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        for n in range(1, 1000):
            term *= x / (a + n)
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return math.exp(log_front) * total
    tiny = 1e-300
    b = x + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for n in range(1, 1000):
        an = -n * (n - a)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = b + an / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return 1.0 - math.exp(log_front) * h


def chi2_cdf(x: float, df: float) -> float:
    return regularized_gamma_p(df / 2.0, x / 2.0)


def chi2_quantile(q: float, df: float) -> float:
    """The x with chi2_cdf(x, df) = q, by bisection."""
    low, high = 0.0, max(1.0, df)
    while chi2_cdf(high, df) < q:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if chi2_cdf(middle, df) < q:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def sd_interval(sd: float, dof: int, level: float = 0.95) -> tuple[float, float]:
    """The chi-square confidence interval of a normal SD estimated with `dof` degrees of freedom."""
    if not (math.isfinite(sd) and dof > 0):
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0
    return (
        sd * math.sqrt(dof / chi2_quantile(1.0 - tail, dof)),
        sd * math.sqrt(dof / chi2_quantile(tail, dof)),
    )


def mcnemar_exact_p(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar test on the discordant pairs of two paired binary outcomes:
    p = min(1, 2 · P(X ≤ min(b, c))) with X ~ Binomial(b + c, ½); 1 when there are none."""
    if only_first < 0 or only_second < 0:
        raise ValueError(f"counts must be >= 0, got {only_first} and {only_second}")
    n = only_first + only_second
    if n == 0:
        return 1.0
    k = min(only_first, only_second)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)
