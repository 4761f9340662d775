"""Claim 14 (PAPER §4): a poor choice of edit layers collapses batch-edit success.

The test pairs every edit-only configuration whose editor was moved off the model's default layers
(`edit_layers` set, e.g. the reproduction's "edit layers" block) with its twin on the default layers:
same model, editor, requests and batch size. Both edited the same requests, so the ES gap
(default − moved) is compared edit by edit: one bootstrap over the requests, with the same weights
for both arms. The verdict reads the gap at each pair's largest batch:

- holds: the gap's 95% interval lies above :data:`COLLAPSE_MARGIN` (the moved window writes
  clearly fewer facts, beyond noise);
- does not hold: the interval lies below it (the moved window edits within a few points of the
  default, or better);
- inconclusive: the interval contains the margin;
- not testable here: the default layers do not edit either (their ES is not above the unedited
  model's beyond noise), so no collapse could be attributed to the layer choice.

Where a window was run at two batch sizes, how the gap changes from the smaller batch to the larger
(both measured on the smaller batch's requests, which the larger one contains) is reported beside
the verdict: the paper's own evidence is a collapse that deepens with the batch (ES 20% at 1k edits,
0.4% at 10k).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...schema import FT_NONE, LOCATE_THEN_EDIT
from .bootstrap import REPLICATES, SEED, Interval, interval
from .noise import Z, binomial_sd, fmt
from .registry import (
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    ClaimData,
    Finding,
    claim,
    not_testable,
    not_tested,
)

COLLAPSE_MARGIN = 5.0  # points of ES: a layer choice costing less than this is not a collapse
EDITORS = (*LOCATE_THEN_EDIT, "rome")  # the editors whose layers are a choice (MEND's are trained)
SETTING = ("model", "edit_method", "edit_data")


@dataclass(frozen=True)
class LayerPair:
    """One moved-window configuration and its default-layer twin."""

    model: str
    method: str
    data: str
    layers: str
    n_edits: int
    default_id: str
    moved_id: str


def layer_pairs(final: pd.DataFrame) -> list[LayerPair]:
    """Each edit-only configuration off the default layers, with its default-layer twin."""
    rows = final[(final["ft_method"] == FT_NONE) & final["edit_method"].isin(EDITORS)]
    defaults = rows[rows["edit_layers"] == ""]
    twin = {
        (r.model, r.edit_method, r.edit_data, int(r.n_edits)): str(r.config_id)
        for r in defaults.itertuples()
    }
    pairs = []
    for r in rows[rows["edit_layers"] != ""].itertuples():
        key = (r.model, r.edit_method, r.edit_data, int(r.n_edits))
        if key in twin:
            pairs.append(LayerPair(*key[:3], r.edit_layers, key[3], twin[key], str(r.config_id)))
    return pairs


class PairedEs:
    """Bootstrap replicates of ES for edit-only configurations, paired over shared requests."""

    def __init__(self, edited: pd.DataFrame, universe_of: dict[str, str]):
        self.rows = {str(c): g for c, g in edited.groupby("config_id", sort=False)}
        index: dict[str, dict[str, int]] = {}
        for cid, group in self.rows.items():
            positions = index.setdefault(universe_of.get(cid, ""), {})
            for case in group["case_id"].astype(str):
                positions.setdefault(case, len(positions))
        self.index, self.universe_of = index, universe_of
        rng = np.random.default_rng(SEED)
        self.weights = {
            name: rng.multinomial(len(p), np.full(len(p), 1.0 / len(p)), size=REPLICATES)
            for name, p in index.items()
        }

    def covers(self, *config_ids: str) -> bool:
        return all(c in self.rows for c in config_ids)

    def es(self, config_id: str, within: str | None = None) -> tuple[float, np.ndarray]:
        """ES of `config_id` (observed, replicates), over the requests it shares with `within`."""
        group = self.rows[config_id]
        if within is not None:
            group = group[group["case_id"].isin(set(self.rows[within]["case_id"]))]
        universe = self.index[self.universe_of.get(config_id, "")]
        positions = np.array([universe[str(c)] for c in group["case_id"]])
        values = np.nan_to_num(group["efficacy"].to_numpy(float))
        w = self.weights[self.universe_of.get(config_id, "")][:, positions].astype(float)
        total = np.where(w.sum(axis=1) > 0, w.sum(axis=1), np.nan)
        return 100 * float(values.mean()), 100 * (w @ values) / total


@claim(
    14,
    ("A poor edit-layer choice collapses batch-edit success (check ES before measuring decay)"),
    paper="DeepSeek, causal-tracing layers: ES 20.17% (1k edits) → 0.4% (10k)",
)
def poor_layers_collapse_edits(data: ClaimData) -> Finding:
    final = data.final
    rows = final[(final["ft_method"] == FT_NONE) & final["edit_method"].isin(EDITORS)]
    defaults = rows[rows["edit_layers"] == ""].drop_duplicates([*SETTING, "n_edits"])
    sanity = _sanity(defaults)
    pairs = layer_pairs(final)
    if not pairs:
        return not_tested(
            "needs edit-only configurations of MEMIT/AlphaEdit/ROME with `edit.layers` moved off "
            "the model's default layers beside the same edits on the default layers (the "
            "reproduction's `edit layers` block); ours is the ES sanity check the claim asks for",
            ours=sanity,
        )
    if data.edited is None or not all(
        c in set(data.edited["config_id"]) for p in pairs for c in (p.default_id, p.moved_id)
    ):
        return not_tested("needs the per-edit scores of edits.csv for the paired test", sanity)
    boot = PairedEs(data.edited, dict(zip(final["config_id"], final["edit_data"])))
    largest = _largest(pairs)
    failing = _default_fails(final, largest)
    if failing:
        return not_testable(
            "the default layers do not edit either, so a collapse cannot be put on the layer "
            f"choice ({'; '.join(failing)})",
            ours=sanity,
        )
    gap_observed, gap_values, lines = [], [], []
    for p in largest:
        d_obs, d_rep = boot.es(p.default_id)
        m_obs, m_rep = boot.es(p.moved_id)
        gap_observed.append(d_obs - m_obs)
        gap_values.append(d_rep - m_rep)
        lines.append(
            f"{p.model} {p.method} {p.data} {p.n_edits} edits: ES {fmt(d_obs)} (default) vs "
            f"{fmt(m_obs)} (layers {p.layers})"
        )
    gap = interval(np.mean(gap_values, axis=0), float(np.mean(gap_observed)))
    verdict = _verdict(gap)
    growth = _growth(boot, pairs)
    ours = f"{'; '.join(lines)}; mean gap {fmt(gap.estimate)} pts ({gap.text()})" + (
        f"; gap change from the smaller to the larger batch {growth}" if growth else ""
    )
    detail = (
        f"{len(largest)} moved-window edit setting(s) at their largest batch, each paired with "
        "the default layers on the same requests; paired bootstrap over the requests "
        f"({REPLICATES} replicates). Holds: the mean ES gap's 95% interval above "
        f"{COLLAPSE_MARGIN:g} points; does not hold: below it; inconclusive: it contains "
        f"{COLLAPSE_MARGIN:g}. The paper's collapse deepens with the batch; here the change of the "
        "gap between batch sizes (on the smaller batch's requests) is reported, not judged."
    )
    return Finding(verdict, ours, detail)


def _verdict(gap: Interval) -> str:
    if not (math.isfinite(gap.low) and math.isfinite(gap.high)):
        return INCONCLUSIVE
    if gap.low > COLLAPSE_MARGIN:
        return HOLDS
    if gap.high < COLLAPSE_MARGIN:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def _largest(pairs: list[LayerPair]) -> list[LayerPair]:
    by_setting: dict[tuple, LayerPair] = {}
    for p in pairs:
        key = (p.model, p.method, p.data, p.layers)
        if key not in by_setting or p.n_edits > by_setting[key].n_edits:
            by_setting[key] = p
    return list(by_setting.values())


def _default_fails(final: pd.DataFrame, largest: list[LayerPair]) -> list[str]:
    """The default-layer twins whose ES is not above the unedited model's beyond the binomial noise."""
    rows = final.set_index("config_id")
    out = []
    for p in largest:
        row = rows.loc[[p.default_id]]
        sd = float(binomial_sd(row.assign(es_ed_ft=row["es_ed"]), "es_ed").iloc[0])
        es_m, es_ed = float(row["es_M"].iloc[0]), float(row["es_ed"].iloc[0])
        if not (es_ed - es_m > Z * sd * math.sqrt(2)):
            out.append(f"{p.model} {p.method} {p.data}: ES {fmt(es_m)} → {fmt(es_ed)}")
    return out


def _growth(boot: PairedEs, pairs: list[LayerPair]) -> str:
    """The gap at the largest batch minus the gap at the smallest, on the smallest batch's requests."""
    settings: dict[tuple, list[LayerPair]] = {}
    for p in pairs:
        settings.setdefault((p.model, p.method, p.data, p.layers), []).append(p)
    observed, values = [], []
    for group in settings.values():
        if len(group) < 2:
            continue
        small = min(group, key=lambda p: p.n_edits)
        large = max(group, key=lambda p: p.n_edits)
        d_small, d_small_rep = boot.es(small.default_id)
        m_small, m_small_rep = boot.es(small.moved_id)
        d_large, d_large_rep = boot.es(large.default_id, within=small.default_id)
        m_large, m_large_rep = boot.es(large.moved_id, within=small.moved_id)
        observed.append((d_large - m_large) - (d_small - m_small))
        values.append((d_large_rep - m_large_rep) - (d_small_rep - m_small_rep))
    if not observed:
        return ""
    band = interval(np.mean(values, axis=0), float(np.mean(observed)))
    return f"{fmt(band.estimate, sign=True)} pts ({band.text()})"


def _sanity(defaults: pd.DataFrame) -> str:
    if defaults.empty:
        return "—"
    sd = binomial_sd(defaults.assign(es_ed_ft=defaults["es_ed"]), "es_ed")
    weak = defaults[(defaults["es_ed"] - defaults["es_M"]) <= Z * sd * math.sqrt(2)]
    per_model = "; ".join(
        f"{m} ES {fmt(float(g['es_M'].mean()))} → {fmt(float(g['es_ed'].mean()))}"
        for m, g in defaults.groupby("model")
    )
    return (
        f"edit success (M → M_ed) on the default layers: {per_model}; "
        f"{len(weak)}/{len(defaults)} edit settings not above M beyond noise"
    )
