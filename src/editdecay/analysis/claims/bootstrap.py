"""A bootstrap over edits and seeds, paired wherever configurations share edits.

Every replicate draws one set of multinomial weights over each request universe (the requests of an
edit data set, keyed by case_id) and applies it to every configuration that edited those requests:
MEMIT and AlphaEdit on the same requests, every fine-tuning of one edited model, and 50 requests
inside 150 are resampled together, so their differences are paired edit by edit. Configurations
that differ only in their fine-tuning seed are averaged over seeds drawn with replacement in each
replicate, so the band also carries the seed-to-seed spread. A claim's statistic is computed on each
replicate; its 95% percentile interval decides the verdict.

Per-edit values come from flips.csv (efficacy and success of every edit on M_ed and M_ed_ft at the
configuration's last step); without that table the claims fall back to the normal approximation of
:mod:`.noise`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..decay import efficacy_kind

REPLICATES = 2000
SEED = 0
LEVEL = 0.95

QUANTITIES = ("es_ed", "es_ed_ft", "delta_es", "relative_decay", "efr", "emergent_share")


@dataclass
class Outcomes:
    """One configuration's edits: their positions in the universe and their values before/after."""

    universe: str
    positions: np.ndarray
    efficacy_before: np.ndarray
    efficacy_after: np.ndarray
    success_before: np.ndarray
    success_after: np.ndarray


@dataclass
class EditBootstrap:
    """Replicate values of per-configuration quantities under shared edit weights."""

    outcomes: dict[str, Outcomes]
    weights: dict[str, np.ndarray]  # universe → (replicates, universe size)
    replicates: int
    rng: np.random.Generator
    _cache: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def covers(self, config_ids: Iterable[str]) -> bool:
        return all(str(c) in self.outcomes for c in config_ids)

    def config_values(self, config_id: str, quantity: str) -> np.ndarray:
        """(replicates,) values of `quantity` for one configuration, in % or points."""
        key = (str(config_id), quantity)
        if key not in self._cache:
            self._cache[key] = _quantity(self.outcomes[str(config_id)], self.weights, quantity)
        return self._cache[key]

    def group_values(self, config_ids: Sequence[str], quantity: str) -> np.ndarray:
        """Seed replicates of one setting: per replicate, the mean over seeds drawn with replacement."""
        values = np.stack([self.config_values(c, quantity) for c in config_ids])  # (seeds, B)
        if len(config_ids) == 1:
            return values[0]
        draw = self.rng.integers(0, len(config_ids), size=(len(config_ids), self.replicates))
        return np.take_along_axis(values, draw, axis=0).mean(axis=0)


def build(
    flips: pd.DataFrame | None,
    final: pd.DataFrame,
    replicates: int = REPLICATES,
    seed: int = SEED,
) -> EditBootstrap | None:
    """The bootstrap over the edits in flips.csv (final steps), or None without per-edit data."""
    if flips is None or flips.empty or "case_id" not in flips.columns:
        return None
    last = flips[flips["step"] == flips.groupby("config_id")["step"].transform("max")]
    data_of = dict(zip(final["config_id"].astype(str), final["edit_data"].astype(str)))
    universes: dict[str, dict[str, int]] = {}
    outcomes: dict[str, Outcomes] = {}
    for config_id, rows in last.groupby("config_id", sort=False):
        config_id = str(config_id)
        if config_id not in data_of:
            continue
        universe = data_of[config_id]
        index = universes.setdefault(universe, {})
        positions = np.array([index.setdefault(str(c), len(index)) for c in rows["case_id"]])
        outcomes[config_id] = Outcomes(
            universe,
            positions,
            pd.to_numeric(rows["efficacy_before"], errors="coerce").to_numpy(float),
            pd.to_numeric(rows["efficacy_after"], errors="coerce").to_numpy(float),
            rows["success_before"].astype(bool).to_numpy(),
            rows["success_after"].astype(bool).to_numpy(),
        )
    if not outcomes:
        return None
    rng = np.random.default_rng(seed)
    weights = {
        name: rng.multinomial(
            len(index), np.full(len(index), 1.0 / len(index)), size=replicates
        ).astype(float)
        for name, index in universes.items()
    }
    return EditBootstrap(outcomes, weights, replicates, rng)


def _quantity(o: Outcomes, weights: dict[str, np.ndarray], quantity: str) -> np.ndarray:
    w = weights[o.universe][:, o.positions]  # (B, edits)
    total = w.sum(axis=1)
    total = np.where(total > 0, total, np.nan)

    def mean(values: np.ndarray) -> np.ndarray:
        return (w @ np.nan_to_num(values.astype(float))) / total

    es_before = 100 * mean(o.efficacy_before)
    es_after = 100 * mean(o.efficacy_after)
    if quantity == "es_ed":
        return es_before
    if quantity == "es_ed_ft":
        return es_after
    if quantity == "delta_es":
        return es_before - es_after
    if quantity == "relative_decay":
        return 100 * (es_before - es_after) / np.where(es_before > 0, es_before, np.nan)
    if quantity == "efr":
        succeeded = w @ o.success_before.astype(float)
        erased = w @ (o.success_before & ~o.success_after).astype(float)
        return 100 * erased / np.where(succeeded > 0, succeeded, np.nan)
    if quantity == "emergent_share":
        return 100 * mean(~o.success_before & o.success_after)
    raise ValueError(f"no bootstrap for {quantity!r}; known: {', '.join(QUANTITIES)}")


@dataclass(frozen=True)
class Interval:
    estimate: float  # the statistic on the observed data (every weight 1)
    low: float
    high: float
    replicates: int

    def text(self, digits: int = 1) -> str:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return "95% interval unknown"
        return f"95% interval [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def interval(values: np.ndarray, estimate: float, level: float = LEVEL) -> Interval:
    finite = values[np.isfinite(values)]
    if len(finite) < 0.9 * len(values) or not len(finite):
        return Interval(estimate, math.nan, math.nan, len(values))
    tail = (1 - level) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return Interval(estimate, float(low), float(high), len(values))


def mean_over(groups: Sequence[Callable[[], np.ndarray]]) -> np.ndarray:
    """Per replicate, the mean over groups of their replicate values."""
    return np.mean(np.stack([g() for g in groups]), axis=0)


def edited_efficacy(edits: pd.DataFrame | None) -> pd.DataFrame | None:
    """Per-edit efficacy on M_ed (config_id, case_id, efficacy) from edits.csv, or None without it.

    Efficacy is the kind's rule (CounterFact `es`, zsRE `rewrite_acc`), read per configuration; it is
    what edit-only configurations, which flips.csv leaves out, are compared by.
    """
    if edits is None or edits.empty or not {"config_id", "state", "case_id"} <= set(edits.columns):
        return None
    rows = edits[edits["state"].astype(str) == "M_ed"]
    parts = []
    for config_id, group in rows.groupby("config_id", sort=False):
        column = "es" if efficacy_kind(group) == "counterfact" else "rewrite_acc"
        if column not in group.columns:
            continue
        parts.append(
            pd.DataFrame(
                {
                    "config_id": str(config_id),
                    "case_id": group["case_id"].astype(str).to_numpy(),
                    "efficacy": pd.to_numeric(group[column], errors="coerce").to_numpy(float),
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else None
