"""Report tables beside the verdicts: paired t-tests per fine-tuning method, and seed spreads."""

from __future__ import annotations

import math

import pandas as pd

from ...schema import FT_LABELS, TUNED_METHODS
from ..stats import paired_t_test
from ..tables import SEED_GROUP, fine_tuned_rows
from .noise import main_rows
from .registry import final_for_claims

PAPER_T_TEST_P = {"dora": "3.29e-5", "lora": "4.46e-5", "full": "0.009"}


def t_tests(decay: pd.DataFrame) -> pd.DataFrame:
    """Paired t-tests of ES(M_ed) vs ES(M_ed_ft) per FT method, over all models and per model.

    Pairs are configurations (model × MEMIT/AlphaEdit × edit data × edit count; Commonsense, all
    layers), each averaged over its seeds.
    """
    final = final_for_claims(decay)
    rows = main_rows(final).dropna(subset=["es_ed", "es_ed_ft"])
    columns = [
        "model",
        "ft_method",
        "pairs",
        "ES M_ed",
        "ES M_ed_ft",
        "mean drop",
        "t",
        "df",
        "p",
        "paper p",
    ]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    per_config = rows.groupby(
        ["model", "edit_method", "edit_data", "n_edits", "ft_method"], as_index=False
    )[["es_ed", "es_ed_ft"]].mean()
    records = []
    models = list(dict.fromkeys(per_config["model"]))
    scopes = [("all", per_config)] + (
        [(m, per_config[per_config["model"] == m]) for m in models] if len(models) > 1 else []
    )
    for scope, table in scopes:
        for method in [m for m in TUNED_METHODS if (table["ft_method"] == m).any()] + sorted(
            set(table["ft_method"]) - set(TUNED_METHODS)
        ):
            sub = table[table["ft_method"] == method]
            test = paired_t_test(sub["es_ed"], sub["es_ed_ft"])
            records.append(
                {
                    "model": scope if len(models) > 1 or scope != "all" else models[0],
                    "ft_method": FT_LABELS.get(method, method),
                    "pairs": test.n,
                    "ES M_ed": test.mean_before,
                    "ES M_ed_ft": test.mean_after,
                    "mean drop": test.mean_diff,
                    "t": test.t,
                    "df": test.df,
                    "p": test.p,
                    "paper p": PAPER_T_TEST_P.get(method, "—") if scope == "all" else "—",
                }
            )
    return pd.DataFrame.from_records(records, columns=columns)


def seed_spreads(decay: pd.DataFrame) -> pd.DataFrame:
    """Per group of configurations that differ only in the fine-tuning seed: spread of ES and DS."""
    final = final_for_claims(decay)
    columns = [
        "model",
        "edit_method",
        "edit_data",
        "n_edits",
        "ft_method",
        "ft_data",
        "ft_layers",
        "seeds",
        "ES M_ed_ft",
        "ES SD",
        "ΔES SD",
        "DS M_ed_ft",
        "DS SD",
        "DS range",
        "DS M_ft SD",
    ]
    records = []
    for key, group in fine_tuned_rows(final).groupby(list(SEED_GROUP), dropna=False, sort=True):
        per_seed = group.groupby("seed")[["es_ed_ft", "delta_es", "ds_M_ed_ft", "ds_M_ft"]].mean()
        if len(per_seed) < 2:
            continue
        ds = per_seed["ds_M_ed_ft"].dropna()
        record = dict(zip(SEED_GROUP, key))
        record.update(
            {
                "seeds": len(per_seed),
                "ES M_ed_ft": per_seed["es_ed_ft"].mean(),
                "ES SD": per_seed["es_ed_ft"].std(ddof=1),
                "ΔES SD": per_seed["delta_es"].std(ddof=1),
                "DS M_ed_ft": ds.mean() if len(ds) else math.nan,
                "DS SD": ds.std(ddof=1) if len(ds) > 1 else math.nan,
                "DS range": ds.max() - ds.min() if len(ds) > 1 else math.nan,
                "DS M_ft SD": per_seed["ds_M_ft"].dropna().std(ddof=1)
                if per_seed["ds_M_ft"].notna().sum() > 1
                else math.nan,
            }
        )
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=columns)
    if not frame.empty:
        frame["n_edits"] = frame["n_edits"].astype(int)
    return frame
