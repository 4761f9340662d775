"""The noise model behind every verdict, the pairing of configurations, and the findings' wording.

σ, the per-configuration noise of the compared quantity, is the pooled seed-to-seed SD over
configurations that differ only in their fine-tuning seed (first among the compared configurations,
else among all fine-tuned ones), never taken below the binomial standard error of the finite edit (or
DS item) sample; without seed replicates σ is that binomial standard error alone. The standard error
of a mean of k values tested against 0 is σ/√k; of a mean of k paired differences σ·√(2/k) (both arms
noisy). A verdict is "holds" / "does not hold" beyond ±Z standard errors, else "inconclusive".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...schema import FT_LABELS, LOCATE_THEN_EDIT
from ..stats import binomial_se_percent, outside_band, pooled_sd
from ..tables import CONFIG_KEYS, SEED_GROUP, fine_tuned_rows
from .bootstrap import QUANTITIES, EditBootstrap, Interval, interval
from .registry import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, Finding, not_tested

Z = 2.0  # the noise band is Z standard errors wide on each side
MAIN_FT_DATA = "commonsense"
KEYS = CONFIG_KEYS


@dataclass(frozen=True)
class Noise:
    """The per-configuration noise σ of one quantity and where it came from."""

    sd: float
    source: str  # "seeds" or "binomial"
    text: str

    def se_mean(self, k: int) -> float:
        return self.sd / math.sqrt(k) if k else math.nan

    def se_paired(self, k: int) -> float:
        return self.sd * math.sqrt(2.0 / k) if k else math.nan


def main_ft_data(final: pd.DataFrame) -> str:
    data = fine_tuned_rows(final)["ft_data"]
    if (data == MAIN_FT_DATA).any() or data.empty:
        return MAIN_FT_DATA
    return str(data.value_counts().index[0])


def seed_averaged(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: replicates that differ only in the fine-tuning seed are averaged.

    They share the edit sample (and M_ft's DS items), so counting them as separate configurations would
    shrink σ/√k without new information. `seed` becomes the smallest seed, `n_seeds` the count and
    `config_ids` the tuple of the averaged configurations.
    """
    if rows.empty:
        return rows.assign(n_seeds=pd.Series(dtype=float), config_ids=pd.Series(dtype=object))
    group = list(SEED_GROUP)
    agg = {
        c: (
            "mean"
            if pd.api.types.is_numeric_dtype(rows[c]) and not pd.api.types.is_bool_dtype(rows[c])
            else "first"
        )
        for c in rows.columns
        if c not in group
    }
    agg["seed"] = "min"
    grouped = rows.groupby(group, dropna=False, sort=False)
    out = rows.groupby(group, dropna=False, as_index=False, sort=False).agg(agg)
    out["n_seeds"] = grouped["seed"].nunique().to_numpy()
    out["config_ids"] = [tuple(ids) for ids in grouped["config_id"].agg(list)]
    return out[[*rows.columns, "n_seeds", "config_ids"]]


def main_rows(final: pd.DataFrame, methods: Iterable[str] = LOCATE_THEN_EDIT) -> pd.DataFrame:
    """Fine-tuned on all layers with the main fine-tuning data, by the given edit methods; seeds averaged."""
    ft = fine_tuned_rows(final)
    return seed_averaged(
        ft[
            (ft["ft_layers"] == "all")
            & (ft["ft_data"] == main_ft_data(final))
            & ft["edit_method"].isin(list(methods))
        ]
    )


def binomial_sd(
    rows: pd.DataFrame, column: str, n_ds: Mapping[str, float] | None = None
) -> pd.Series:
    """Per-configuration sampling SD of `column` when the edits (or DS items) are a finite sample."""
    es_sd = binomial_se_percent(rows["es_ed_ft"].fillna(rows["es_ed"]), rows["n_edits"])
    if column in ("es_ed", "es_ed_ft", "delta_es"):
        return es_sd
    if column == "relative_decay":
        return 100 * es_sd / rows["es_ed"].where(rows["es_ed"] > 0)
    if column in ("efr", "efr_minus_delta"):
        return binomial_se_percent(rows["efr"], rows["n_success_ed"])
    if column == "emergent_share":
        return binomial_se_percent(rows["emergent_share"], rows["n_edits"])
    items = rows["config_id"].map(lambda c: (n_ds or {}).get(str(c), math.nan))
    if column in ("ds_M_ed_ft", "ds_M_ft", "ds_M_ed", "ds_M"):
        return binomial_se_percent(rows[column], items)
    if column in ("ds_degradation_ft", "ds_rank_degradation_ft"):
        prefix = "ds_rank_" if column.startswith("ds_rank") else "ds_"
        reference = rows[f"{prefix}M_ft"]
        return (
            100
            * math.sqrt(2)
            * binomial_se_percent(reference, items)
            / reference.where(reference > 0)
        )
    return pd.Series(math.nan, index=rows.index)


def seed_sd(rows: pd.DataFrame, column: str) -> tuple[float, int, int]:
    """Pooled SD of `column` over seeds within groups that differ only in the seed: (sd, groups, df)."""
    if rows.empty:
        return math.nan, 0, 0
    per_group = (
        group.groupby("seed")[column].mean().dropna().tolist()
        for _, group in rows.groupby(list(SEED_GROUP), dropna=False)
    )
    return pooled_sd(per_group)


def estimate_noise(
    final: pd.DataFrame, rows: pd.DataFrame, column: str, n_ds: Mapping[str, float] | None = None
) -> Noise:
    """σ of `column` for the compared `rows` (see the module docstring for the rule)."""
    sampling = binomial_sd(rows, column, n_ds).dropna()
    floor = float(np.sqrt((sampling**2).mean())) if len(sampling) else math.nan
    for pool, where in (
        (rows, "the compared configurations"),
        (fine_tuned_rows(final), "all fine-tuned configurations"),
    ):
        sd, groups, dof = seed_sd(pool, column)
        if dof:
            if math.isfinite(floor) and floor > sd:
                return Noise(
                    floor,
                    "seeds",
                    f"σ = {floor:.2f}: the binomial SE of the finite sample (edits; DS "
                    f"items for DS), above the "
                    f"seed-to-seed SD {sd:.2f} of `{column}` ({groups} seed group(s) of "
                    f"{where}, {dof} df)",
                )
            return Noise(
                sd,
                "seeds",
                f"σ = {sd:.2f}: seed-to-seed SD of `{column}` ({groups} seed group(s) of "
                f"{where}, {dof} df)",
            )
    return Noise(
        floor,
        "binomial",
        f"σ = {floor:.2f}: no seed replicates, so the binomial SE of `{column}` from "
        "the number of edits (DS items for DS), root mean square over the configurations",
    )


def judge(mean: float, se: float) -> str:
    """`holds` if mean > Z·se, `does not hold` if mean < −Z·se, else `inconclusive` (also for NaN)."""
    return {1: HOLDS, -1: DOES_NOT_HOLD, 0: INCONCLUSIVE}[outside_band(mean, se, Z)]


def matched(
    rows: pd.DataFrame,
    axis: str,
    arms: Sequence[str],
    column: str,
    group: Callable[[str], str] | None = None,
) -> pd.DataFrame:
    """Values of `column` for each of `arms` on `axis`, matched on every other setting (rows with all arms).

    `group` maps axis values to arm labels (e.g. LoRA and DoRA both to "peft"); values sharing a
    label and a match are averaged. Returns the match keys and one column per arm, and, for
    seed-averaged rows, `<arm>_ids`: the config-id groups behind each arm's value.
    """
    keys = [k for k in KEYS if k != axis]
    sub = rows.assign(_arm=rows[axis].map(group) if group else rows[axis])
    sub = sub[sub["_arm"].isin(list(arms))]
    if sub.empty:
        return pd.DataFrame(columns=[*keys, *arms])
    table = sub.groupby([*keys, "_arm"])[column].mean().unstack("_arm")
    table = table.reindex(columns=list(arms)).dropna().reset_index()
    table.columns.name = None
    if "config_ids" in sub.columns:
        ids = sub.groupby([*keys, "_arm"])["config_ids"].agg(list).unstack("_arm")
        ids = ids.reindex(columns=list(arms))
        ids.columns = [f"{arm}_ids" for arm in arms]
        table = table.merge(ids.reset_index(), on=keys, how="left")
    return table


def paired(
    rows: pd.DataFrame,
    axis: str,
    first: str,
    second: str,
    column: str,
    group: Callable[[str], str] | None = None,
) -> pd.DataFrame:
    """:func:`matched` for two arms, with diff = second − first."""
    table = matched(rows, axis, (first, second), column, group)
    table["diff"] = table[second] - table[first]
    return table


def matching_rows(rows: pd.DataFrame, table: pd.DataFrame, axis: str) -> pd.DataFrame:
    keys = [k for k in KEYS if k != axis]
    wanted = set(table[keys].itertuples(index=False, name=None))
    mask = [tuple(values) in wanted for values in rows[keys].itertuples(index=False, name=None)]
    return rows[mask]


def fmt(value: float, digits: int = 1, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def listing(rows: pd.DataFrame, column: str) -> str:
    values = [str(v) for v in dict.fromkeys(rows[column]) if str(v)]
    return "/".join(values) if values else "—"


def scope(rows: pd.DataFrame) -> str:
    n = sorted({int(v) for v in rows["n_edits"].dropna()})
    return (
        f"models {listing(rows, 'model')}; edit methods {listing(rows, 'edit_method')}; data "
        f"{listing(rows, 'kind')}; edits {'/'.join(map(str, n)) or '—'}; FT "
        f"{'/'.join(FT_LABELS.get(m, m) for m in dict.fromkeys(rows['ft_method']))}; seeds "
        f"{'/'.join(str(int(s)) for s in sorted(set(rows['seed'].dropna())))}"
    )


def band_text(se: float) -> str:
    return f"noise band ±{fmt(Z * se, 2)}" if math.isfinite(se) else "noise band unknown"


def paired_finding(
    pairs: pd.DataFrame,
    noise: Noise,
    what: str,
    first: str,
    second: str,
    column: str,
    scope: str,
    names: Mapping[str, str] | None = None,
    extra: str = "",
    boot: EditBootstrap | None = None,
) -> Finding:
    names = {first: first, second: second, **(names or {})}
    k = len(pairs)
    mean = float(pairs["diff"].mean())
    agree = int((pairs["diff"] > 0).sum())
    band = paired_interval(boot, pairs, first, second, column)
    if band is not None:
        verdict, band_words, test = interval_verdict(band), band.text(), bootstrap_test(band)
    else:
        se = noise.se_paired(k)
        verdict, band_words = judge(mean, se), band_text(se)
        test = f"{noise.text}; SE = σ·√(2/k); test: normal approximation, mean Δ beyond ±{Z:g}·SE"
    ours = (
        f"{what}: {names[second]} {fmt(float(pairs[second].mean()))} vs {names[first]} "
        f"{fmt(float(pairs[first].mean()))}{extra} (mean Δ {fmt(mean, sign=True)}, {band_words}; "
        f"{agree}/{k} pairs point the paper's way)"
    )
    detail = f"`{column}` of {k} matched pair(s) ({scope}), Δ = {names[second]} − {names[first]}; {test}."
    return Finding(verdict, ours, detail)


def paired_interval(
    boot: EditBootstrap | None, pairs: pd.DataFrame, first: str, second: str, quantity: str
) -> Interval | None:
    """The bootstrap interval of the mean paired difference second − first, or None when the
    per-edit table does not cover every compared configuration."""
    if boot is None or pairs.empty or f"{first}_ids" not in pairs.columns:
        return None
    if quantity not in QUANTITIES:
        return None
    arms = [*pairs[f"{first}_ids"], *pairs[f"{second}_ids"]]
    if not all(boot.covers(ids) for groups in arms for ids in groups):
        return None

    def arm(groups) -> np.ndarray:
        return np.mean([boot.group_values(ids, quantity) for ids in groups], axis=0)

    diffs = [arm(b) - arm(a) for a, b in zip(pairs[f"{first}_ids"], pairs[f"{second}_ids"])]
    return interval(np.mean(diffs, axis=0), float(pairs["diff"].mean()))


def mean_interval(boot: EditBootstrap | None, rows: pd.DataFrame, quantity: str) -> Interval | None:
    """The bootstrap interval of the mean of `quantity` over seed-averaged `rows`."""
    if boot is None or rows.empty or "config_ids" not in rows.columns:
        return None
    if quantity not in QUANTITIES or not all(boot.covers(ids) for ids in rows["config_ids"]):
        return None
    values = np.mean([boot.group_values(ids, quantity) for ids in rows["config_ids"]], axis=0)
    return interval(values, float(rows[quantity].mean()))


def interval_verdict(band: Interval) -> str:
    """holds above 0, does not hold below 0, inconclusive when the interval holds 0 (or is unknown)."""
    return {1: HOLDS, -1: DOES_NOT_HOLD, 0: INCONCLUSIVE}[band_side(band, 0.0)]


def band_side(band: Interval, value: float) -> int:
    if not (math.isfinite(band.low) and math.isfinite(band.high)):
        return 0
    return 1 if band.low > value else (-1 if band.high < value else 0)


def bootstrap_test(band: Interval) -> str:
    return (
        f"test: bootstrap over edits and seeds ({band.replicates} replicates; configurations that "
        "share requests resampled together, so arms are paired edit by edit), 95% percentile "
        "interval; holds when it lies above 0, does not hold when below"
    )


def compare_axis(
    final,
    n_ds,
    rows,
    axis: str,
    low: str,
    high: str,
    missing: str,
    boot: EditBootstrap | None = None,
) -> Finding:
    """ΔES of configurations that differ only in `axis` (`low` against `high`), judged against the noise."""
    pairs = paired(rows, axis, low, high, "delta_es")
    if pairs.empty:
        return not_tested(missing)
    used = matching_rows(rows, pairs, axis)
    noise = estimate_noise(final, used, "delta_es", n_ds)
    return paired_finding(pairs, noise, "ΔES pp", low, high, "delta_es", scope(used), boot=boot)
