"""Edit retention beside the model's own-knowledge retention (the intrinsic-knowledge baseline).

An edit is retained when it succeeds on M_ed and still succeeds on M_ed_ft: 100 − EFR over the
n_success_ed edits that succeeded. An own fact is one M ranks first (known_facts.csv, `known_by_M`)
among records of the same edit set that were not edited; it is retained by a state that still ranks it
first. Fine-tuning M alone (M_ft) gives the baseline: how much of what the model knew any fine-tuning
of this kind removes. Edits and own facts are different items, so their difference is judged as two
independent binomial shares (normal approximation).
"""

from __future__ import annotations

import math

import pandas as pd

from .claims.noise import Z  # the band width every verdict uses

STATES_KEPT = ("M_ed", "M_ft", "M_ed_ft")


def own_knowledge(known: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: `n_known` (facts M knows) and `kept_<state>` (% of them each state keeps)."""
    facts = known[known["known_by_M"].astype(bool)]
    rows = []
    for config_id, group in facts.groupby("config_id", sort=False):
        by_state = group.groupby("state")["correct"]
        n = int((group["state"] == "M").sum())
        row: dict[str, object] = {"config_id": config_id, "n_known": n}
        for state in STATES_KEPT:
            share = by_state.mean().get(state)
            row[f"kept_{state}"] = 100 * float(share) if share is not None else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=["config_id", "n_known", *(f"kept_{s}" for s in STATES_KEPT)])


def retention_table(known: pd.DataFrame, final: pd.DataFrame) -> pd.DataFrame:
    """Per fine-tuned configuration (final step): edit retention, own-knowledge retention under the
    same fine-tuning of M, their difference and its 95% band (± Z·SE of two binomial shares)."""
    own = own_knowledge(known)
    edits = final.dropna(subset=["efr"])[["config_id", "efr", "n_success_ed"]]
    merged = edits.merge(own, on="config_id", how="inner")
    out = merged.assign(edit_kept=100 - merged["efr"])
    se = (
        _binomial_se(out["edit_kept"], out["n_success_ed"]) ** 2
        + _binomial_se(out["kept_M_ft"], out["n_known"]) ** 2
    ) ** 0.5
    out["edits_minus_own"] = out["edit_kept"] - out["kept_M_ft"]
    out["band"] = Z * se
    return out[
        [
            "config_id",
            "n_success_ed",
            "edit_kept",
            "n_known",
            "kept_M_ft",
            "kept_M_ed",
            "kept_M_ed_ft",
            "edits_minus_own",
            "band",
        ]
    ]


def _binomial_se(percent: pd.Series, n: pd.Series) -> pd.Series:
    """SE in points of a share given in percent over n items (0 where n is 0)."""
    p = percent / 100
    return 100 * (p * (1 - p) / n.where(n > 0)).fillna(0) ** 0.5
