"""decay.csv as every consumer reads it: normalised by the schema, one final row per configuration.

The report and the claim checks both start here, so a blank cell or a missing column means the same
to both (the rules are in :mod:`editdecay.schema`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pandas as pd

from ..schema import DECAY, FT_METHODS, FT_NONE, LAYER_CHOICES

# The settings that define one edit (everything before fine-tuning).
EDIT_KEYS = ("model", "edit_method", "edit_data", "n_edits", "edit_layers")
CONFIG_KEYS = (*EDIT_KEYS, "ft_method", "ft_data", "ft_layers", "ft_preserve", "seed")
SEED_GROUP = tuple(k for k in CONFIG_KEYS if k != "seed")
SORT_KEYS = (*CONFIG_KEYS, "config_id")


def normalise_decay(decay: pd.DataFrame) -> pd.DataFrame:
    """decay.csv with every schema column typed, and the values derivable from others filled in.

    An empty `config_id` becomes `row-<i>`; `delta_es` and `relative_decay` are computed from `es_ed`
    and `es_ed_ft` where empty; an empty `efficacy_kind` is read from the edit data's name. Applying it
    twice changes nothing.
    """
    df = DECAY.normalise(decay)
    df["config_id"] = [cid or f"row-{i}" for i, cid in enumerate(df["config_id"])]
    drop = df["es_ed"] - df["es_ed_ft"]
    df["delta_es"] = df["delta_es"].fillna(drop)
    df["relative_decay"] = df["relative_decay"].fillna(
        100.0 * drop / df["es_ed"].where(df["es_ed"] != 0)
    )
    by_name = df["edit_data"].map(lambda d: "zsre" if "zsre" in str(d).lower() else "counterfact")
    df["efficacy_kind"] = df["efficacy_kind"].where(df["efficacy_kind"] != "", by_name)
    return df


def final_rows(decay: pd.DataFrame, preserved: bool = False) -> pd.DataFrame:
    """One row per configuration: its row marked final (the last one if several), else its last step.

    Configurations fine-tuned with an edit-preserving option (`ft_preserve` other than none) are
    left out unless `preserved`: the decay tables and the claims are about plain fine-tuning, and
    the preservation section compares the options with it.
    """
    df = normalise_decay(decay)
    if not preserved:
        df = df[df["ft_preserve"] == "none"]
    if df.empty:
        return df
    ordered = df.sort_values(["config_id", "step"], kind="stable")
    marked = ordered[ordered["final"]].groupby("config_id", sort=False).tail(1)
    unmarked = ordered[~ordered["config_id"].isin(set(marked["config_id"]))]
    last = unmarked.groupby("config_id", sort=False).tail(1)
    return sort_configurations(pd.concat([marked, last]))


def fine_tuned_rows(final: pd.DataFrame) -> pd.DataFrame:
    return final[final["ft_method"] != FT_NONE]


def rank(order: Sequence[str]) -> Callable[[object], int]:
    """Position of a value in `order`; values outside it come after every listed one."""

    def position(value: object) -> int:
        return order.index(value) if value in order else len(order)

    return position


def in_order(values: Iterable[str], order: Sequence[str]) -> list[str]:
    """The distinct values, those in `order` first in that order, then the rest alphabetically."""
    unique = list(dict.fromkeys(values))
    return sorted(unique, key=lambda v: (rank(order)(v), v))


def sort_configurations(frame: pd.DataFrame, keys: Iterable[str] = SORT_KEYS) -> pd.DataFrame:
    """Sort rows by the config columns present; fine-tuning methods and layer choices in paper order."""
    work = frame.copy()
    by: list[str] = []
    for key in keys:
        if key not in work.columns:
            continue
        if key == "ft_method":
            work["_rank_ft_method"] = work[key].map(rank(FT_METHODS))
            by.append("_rank_ft_method")
        elif key == "ft_layers":
            work["_rank_ft_layers"] = work[key].map(rank(LAYER_CHOICES))
            by.append("_rank_ft_layers")
        if pd.api.types.is_numeric_dtype(work[key]):
            by.append(key)
        else:
            work[f"_text_{key}"] = work[key].map(_sort_text)
            by.append(f"_text_{key}")
    if not by or work.empty:
        return work[list(frame.columns)]
    work = work.sort_values(by, kind="stable", na_position="last")
    return work[list(frame.columns)].reset_index(drop=True)


def _sort_text(value: object) -> str:
    # blanks sort after every value, as the report shows them ("—")
    text = (
        "" if value is None or (isinstance(value, float) and value != value) else str(value).strip()
    )
    return text if text else "\uffff"
