"""Edit retention beside own-knowledge retention: the shares, and a difference that comes out each
way (edits kept less, more, or within the band)."""

from __future__ import annotations

import pandas as pd
import pytest

from editdecay.analysis.retention import own_knowledge, retention_table


def _known(config_id: str, n: int, kept: dict[str, int], unknown: int = 5) -> pd.DataFrame:
    """n facts M knows (`kept[state]` of them still right on each state) and `unknown` it does not."""
    rows = []
    for i in range(n + unknown):
        is_known = i < n
        for state in ("M", "M_ed", "M_ft", "M_ed_ft"):
            right = is_known and (state == "M" or i < kept[state])
            rows.append(
                {
                    "config_id": config_id,
                    "state": state,
                    "case_id": str(i),
                    "correct": right,
                    "token_accuracy": 1.0 if right else 0.5,
                    "known_by_M": is_known,
                }
            )
    return pd.DataFrame(rows)


def test_own_knowledge_counts_only_the_facts_m_knows():
    table = own_knowledge(_known("a", 100, {"M_ed": 97, "M_ft": 80, "M_ed_ft": 75}))
    row = table.iloc[0]
    assert row["n_known"] == 100
    assert (row["kept_M_ed"], row["kept_M_ft"], row["kept_M_ed_ft"]) == (97.0, 80.0, 75.0)


@pytest.mark.parametrize(
    ("efr", "kept_ft", "direction"),
    [(40.0, 180, "less"), (2.0, 140, "more"), (12.0, 180, "within")],
)
def test_edits_against_own_facts_each_way(efr, kept_ft, direction):
    known = _known("a", 200, {"M_ed": 200, "M_ft": kept_ft, "M_ed_ft": kept_ft})
    final = pd.DataFrame([{"config_id": "a", "efr": efr, "n_success_ed": 200}])
    row = retention_table(known, final).iloc[0]
    assert row["edit_kept"] == 100 - efr and row["kept_M_ft"] == kept_ft / 2
    diff, band = row["edits_minus_own"], row["band"]
    assert band > 0
    observed = "less" if diff < -band else "more" if diff > band else "within"
    assert observed == direction


def test_configurations_without_efr_or_facts_are_left_out():
    known = _known("a", 10, {"M_ed": 10, "M_ft": 10, "M_ed_ft": 10})
    final = pd.DataFrame(
        [
            {"config_id": "a", "efr": float("nan"), "n_success_ed": 10},  # not fine-tuned
            {"config_id": "b", "efr": 5.0, "n_success_ed": 10},  # no known_facts rows
        ]
    )
    assert retention_table(known, final).empty
