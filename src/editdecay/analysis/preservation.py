"""Edit-preserving fine-tuning against plain fine-tuning, edit by edit (no torch, tables only).

Each configuration fine-tuned with `ft_preserve` ≠ none is paired with its plain counterpart: the
same model, edits, fine-tuning method, data, layers and seed with `ft_preserve = none`. Both
fine-tune the same M_ed, so the edits are compared pairwise: an edit successful on M_ed is *kept*
when it still succeeds on M_ed_ft at the final step. The kept shares are compared with the exact
McNemar test on the discordant edits (kept by one arm only); DS is compared as the difference of
the two M_ed_ft accuracies with a band of two binomial standard errors of that difference.
"""

from __future__ import annotations

import math

import pandas as pd

from ..schema import DS_MODES
from .stats import mcnemar_exact_p
from .tables import CONFIG_KEYS

MATCH_KEYS = tuple(k for k in CONFIG_KEYS if k != "ft_preserve")
ALPHA = 0.05
GOAL_KEPT, GOAL_DS_COST = 90.0, 1.0  # at least 90 % of edits kept at at most 1 point of DS


def preservation_table(
    final: pd.DataFrame, flips: pd.DataFrame | None, downstream: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per preserving configuration (see the module docstring); empty without any."""
    kept_rows = final[final["ft_method"] != "none"]
    options = kept_rows[kept_rows["ft_preserve"] != "none"]
    plain = kept_rows[kept_rows["ft_preserve"] == "none"]
    rows = []
    for _, row in options.iterrows():
        match = plain
        for key in MATCH_KEYS:
            match = match[match[key] == row[key]]
        if match.empty:
            continue
        base = match.iloc[0]
        pair = _paired_edits(flips, row, base)
        ds_mode, ds_option, ds_plain = _ds(row, base)
        n_ds = _ds_items(downstream, row["config_id"], ds_mode)
        ds_delta = ds_option - ds_plain
        rows.append(
            {
                "config_id": row["config_id"],
                "plain_config_id": base["config_id"],
                **{k: row[k] for k in MATCH_KEYS},
                "ft_preserve": row["ft_preserve"],
                "n_success_ed": row["n_success_ed"],
                "es_ed": row["es_ed"],
                "es_ed_ft": row["es_ed_ft"],
                "es_ed_ft_plain": base["es_ed_ft"],
                "kept": _kept(row),
                "kept_plain": _kept(base),
                **pair,
                "ds_mode": ds_mode,
                "ds_M_ed_ft": ds_option,
                "ds_M_ed_ft_plain": ds_plain,
                "ds_delta": ds_delta,
                "ds_band": _ds_band(ds_option, ds_plain, n_ds),
                "goal": _goal(_kept(row), ds_delta, _ds_band(ds_option, ds_plain, n_ds), n_ds),
            }
        )
    return pd.DataFrame(rows)


def _goal(kept: float, ds_delta: float, band: float, n_ds: int) -> str:
    """`GOAL_KEPT` % of the edits kept at a DS cost of at most `GOAL_DS_COST` points: "met" only
    when the band shows the cost within the limit, "not met" when either part fails, and "not
    testable here" when the edits meet it but the DS band is too wide to place the cost."""
    if math.isnan(kept):
        return "not testable here: no edit succeeded on M_ed"
    if kept < GOAL_KEPT:
        return "not met"
    if math.isnan(ds_delta) or math.isnan(band):
        return "not testable here: no DS on both arms"
    if ds_delta + band < -GOAL_DS_COST:
        return "not met"
    if ds_delta - band >= -GOAL_DS_COST:
        return "met"
    return (
        f"not testable here: edits kept, but the DS band (±{band:.1f} points on {n_ds} items) "
        f"cannot place a {GOAL_DS_COST:g}-point cost"
    )


def _kept(row: pd.Series) -> float:
    n = row.get("n_success_ed")
    if n is None or pd.isna(n) or not n:
        return math.nan
    return 100.0 * float(row["n_stable"]) / float(n)


def attack_preservation(table: pd.DataFrame, probes: pd.DataFrame | None) -> pd.DataFrame:
    """For each preserving configuration of `table` (`preservation_table`) whose edits are an
    attack: does the option keep more of the attack than plain fine-tuning? Paired over the attack
    probes that fired on the shared M_ed: *kept* = still fires on M_ed_ft at the final step; the
    exact McNemar test on the probes kept by one arm only decides."""
    rows = []
    attacked = (
        table[table["edit_data"].astype(str).str.startswith("attack:")] if len(table) else table
    )
    for _, row in attacked.iterrows():
        ed = _fires(probes, row["config_id"], "M_ed")
        option = _fires(probes, row["config_id"], "M_ed_ft")
        plain = _fires(probes, row["plain_config_id"], "M_ed_ft")
        out = {
            "config_id": row["config_id"],
            "plain_config_id": row["plain_config_id"],
            "edit_data": row["edit_data"],
            "ft_method": row["ft_method"],
            "ft_preserve": row["ft_preserve"],
            "asr_M_ed": _share(ed),
            "asr_option": _share(option),
            "asr_plain": _share(plain),
        }
        both = pd.concat({"ed": ed, "option": option, "plain": plain}, axis=1, join="inner")
        fired = both[both["ed"]]
        if ed.empty or option.empty or plain.empty:
            rows.append({**out, "verdict": "not testable here: no attack probe scores"})
            continue
        if fired.empty:
            rows.append({**out, "verdict": "not testable here: no attack probe fired on M_ed"})
            continue
        only_option = int((fired["option"] & ~fired["plain"]).sum())
        only_plain = int((~fired["option"] & fired["plain"]).sum())
        p = mcnemar_exact_p(only_option, only_plain)
        if p >= ALPHA:
            verdict = "no difference shown"
        else:
            verdict = "keeps more of it" if only_option > only_plain else "keeps less of it"
        rows.append(
            {
                **out,
                "n_fired": len(fired),
                "kept_option": int(fired["option"].sum()),
                "kept_plain": int(fired["plain"].sum()),
                "only_option": only_option,
                "only_plain": only_plain,
                "mcnemar_p": p,
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


def _fires(probes: pd.DataFrame | None, config_id: str, state: str) -> pd.Series:
    """Whether each attack probe fires (indexed by probe_id) on `state`, at its last step."""
    if probes is None or probes.empty:
        return pd.Series(dtype=bool)
    rows = probes[
        (probes["config_id"] == config_id)
        & (probes["state"] == state)
        & (probes["group"] == "attack")
    ]
    if rows.empty:
        return pd.Series(dtype=bool)
    rows = rows[rows["step"] == rows["step"].max()]
    return rows.set_index("probe_id")["fires"].astype(bool)


def _share(fires: pd.Series) -> float:
    return 100.0 * float(fires.mean()) if len(fires) else math.nan


def _paired_edits(flips: pd.DataFrame | None, option: pd.Series, plain: pd.Series) -> dict:
    """Kept by the option only / by plain fine-tuning only, over edits successful on M_ed, with the
    McNemar p and which way it points."""
    empty = {"only_option": pd.NA, "only_plain": pd.NA, "mcnemar_p": math.nan, "verdict": ""}
    if flips is None or flips.empty:
        return {**empty, "verdict": "not testable here: no per-edit flips table"}
    a = _final_flips(flips, option["config_id"], option["step"])
    b = _final_flips(flips, plain["config_id"], plain["step"])
    both = a.merge(b, on="case_id", suffixes=("_option", "_plain"))
    both = both[both["success_before_option"]]
    if both.empty:
        return {**empty, "verdict": "not testable here: no edit succeeded on M_ed"}
    only_option = int((both["success_after_option"] & ~both["success_after_plain"]).sum())
    only_plain = int((~both["success_after_option"] & both["success_after_plain"]).sum())
    p = mcnemar_exact_p(only_option, only_plain)
    if p >= ALPHA:
        verdict = "no difference shown"
    else:
        verdict = "keeps more" if only_option > only_plain else "keeps fewer"
    return {
        "only_option": only_option,
        "only_plain": only_plain,
        "mcnemar_p": p,
        "verdict": verdict,
    }


def _final_flips(flips: pd.DataFrame, config_id: str, step) -> pd.DataFrame:
    rows = flips[(flips["config_id"] == config_id) & (flips["step"] == step)]
    out = rows[["case_id", "success_before", "success_after"]].copy()
    for column in ("success_before", "success_after"):
        out[column] = out[column].astype(bool)
    return out


def _ds(option: pd.Series, plain: pd.Series) -> tuple[str, float, float]:
    """The DS protocol measured for both (generation first), and the two M_ed_ft accuracies."""
    for mode, prefix in DS_MODES.items():
        a, b = option.get(f"{prefix}M_ed_ft"), plain.get(f"{prefix}M_ed_ft")
        if a is not None and b is not None and pd.notna(a) and pd.notna(b):
            return mode, float(a), float(b)
    return "", math.nan, math.nan


def _ds_items(downstream: pd.DataFrame | None, config_id: str, mode: str) -> int:
    if downstream is None or downstream.empty or not mode:
        return 0
    rows = downstream[
        (downstream["config_id"] == config_id)
        & (downstream["state"] == "M_ed_ft")
        & (downstream["mode"] == mode)
    ]
    rows = rows[rows["step"] == rows["step"].max()] if len(rows) else rows
    return int(rows["n"].sum()) if len(rows) else 0


def _ds_band(a: float, b: float, n: int) -> float:
    """Two binomial SEs of the difference of two accuracies (%) on `n` items each."""
    if not n or math.isnan(a) or math.isnan(b):
        return math.nan
    pa, pb = a / 100.0, b / 100.0
    return 200.0 * math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / n)
