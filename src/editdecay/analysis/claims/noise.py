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
    shrink σ/√k without new information. `seed` becomes the smallest seed, `n_seeds` the count.
    """
    if rows.empty:
        return rows.assign(n_seeds=pd.Series(dtype=float))
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
    out = rows.groupby(group, dropna=False, as_index=False, sort=False).agg(agg)
    out["n_seeds"] = rows.groupby(group, dropna=False, sort=False)["seed"].nunique().to_numpy()
    return out[[*rows.columns, "n_seeds"]]


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
    label and a match are averaged. Returns the match keys and one column per arm.
    """
    keys = [k for k in KEYS if k != axis]
    sub = rows.assign(_arm=rows[axis].map(group) if group else rows[axis])
    sub = sub[sub["_arm"].isin(list(arms))]
    if sub.empty:
        return pd.DataFrame(columns=[*keys, *arms])
    table = sub.groupby([*keys, "_arm"])[column].mean().unstack("_arm")
    table = table.reindex(columns=list(arms)).dropna().reset_index()
    table.columns.name = None
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
) -> Finding:
    names = {first: first, second: second, **(names or {})}
    k = len(pairs)
    mean = float(pairs["diff"].mean())
    se = noise.se_paired(k)
    agree = int((pairs["diff"] > 0).sum())
    ours = (
        f"{what}: {names[second]} {fmt(float(pairs[second].mean()))} vs {names[first]} "
        f"{fmt(float(pairs[first].mean()))}{extra} (mean Δ {fmt(mean, sign=True)}, {band_text(se)}; "
        f"{agree}/{k} pairs point the paper's way)"
    )
    detail = (
        f"`{column}` of {k} matched pair(s) ({scope}), Δ = {names[second]} − {names[first]}; {noise.text}; "
        f"SE = σ·√(2/k); verdict: mean Δ beyond ±{Z:g}·SE."
    )
    return Finding(judge(mean, se), ours, detail)


def compare_axis(
    final,
    n_ds,
    rows,
    axis: str,
    low: str,
    high: str,
    missing: str,
) -> Finding:
    """ΔES of configurations that differ only in `axis` (`low` against `high`), judged against the noise."""
    pairs = paired(rows, axis, low, high, "delta_es")
    if pairs.empty:
        return not_tested(missing)
    used = matching_rows(rows, pairs, axis)
    noise = estimate_noise(final, used, "delta_es", n_ds)
    return paired_finding(pairs, noise, "ΔES pp", low, high, "delta_es", scope(used))
