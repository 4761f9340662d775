"""Claims 12 (activation geometry) and 13 (target frequency) on hand-built activation tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from editdecay.analysis.claims import (
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    NOT_TESTABLE,
    NOT_TESTED,
    check_claim,
)
from editdecay.analysis.claims.conditions import sign_test_p
from editdecay.schema import ACTIVATIONS, DECAY, TARGET_FREQUENCY

LAYERS = 4
EDIT_LAYERS = (1, 2)


def decay() -> pd.DataFrame:
    row = DECAY.row(
        config_id="c0",
        model="m",
        edit_method="memit",
        edit_data="counterfact",
        n_edits=100,
        ft_method="lora",
        ft_data="commonsense",
        ft_layers="all",
        seed=0,
        step=10,
        final=True,
        efficacy_kind="counterfact",
        es_ed=100.0,
        es_ed_ft=80.0,
    )
    return pd.DataFrame([row])


def activations(n_configs=3, norm_ed=0.5, norm_ft=5.0, cosines=(0.05, 0.2, 0.8), flip=()):
    """activations.csv: per configuration, edit prompts at two positions and FT prompts at one;
    zero edit shift below the first edited layer. `flip`: configurations whose norms are swapped."""
    rows = []
    sets = [("edit", "subject_last"), ("edit", "prompt_last"), ("finetune", "prompt_last")]
    for c in range(n_configs):
        for prompts, position in sets:
            for layer in range(LAYERS):
                ed, ft = (norm_ft, norm_ed) if c in flip else (norm_ed, norm_ft)
                rows.append(
                    ACTIVATIONS.row(
                        config_id=f"c{c}",
                        prompts=prompts,
                        position=position,
                        layer=layer,
                        norm_ed=0.0 if layer < EDIT_LAYERS[0] else ed,
                        norm_ft=ft,
                        norm_ed_ft=ft,
                        cos_ed_ft=cosines[0],
                        cos_edft_ed=cosines[1],
                        cos_edft_ft=cosines[2],
                        n_prompts=10,
                        edit_layers=" ".join(map(str, EDIT_LAYERS)),
                    )
                )
    return pd.DataFrame(rows)


def frequencies(stable, erased, emergent=()) -> pd.DataFrame:
    """target_frequency.csv with one distinct target per value."""
    rows = []
    for category, values in (("stable", stable), ("erased", erased), ("emergent", emergent)):
        for i, value in enumerate(values):
            rows.append(
                TARGET_FREQUENCY.row(
                    config_id="c0",
                    case_id=f"{category}:{i}",
                    target_new=f"{category}-target-{i}",
                    n_target_tokens=1,
                    wikitext_log10_per_million=value,
                    category=category,
                )
            )
    return pd.DataFrame(rows)


def claim12(acts):
    tables = {"decay": decay()}
    if acts is not None:
        tables["activations"] = acts
    return check_claim(12, tables)


def claim13(freq):
    tables = {"decay": decay()}
    if freq is not None:
        tables["target_frequency"] = freq
    return check_claim(13, tables)


def test_sign_test_matches_the_binomial():
    assert sign_test_p(6, 0) == pytest.approx(2 / 64)
    assert sign_test_p(3, 3) == 1.0
    assert sign_test_p(0, 0) == 1.0


def test_claim12_holds_when_ft_dominates_and_cosines_are_ordered():
    result = claim12(activations())
    assert result.verdict == HOLDS, result.detail
    assert "9/9" in result.ours and "activations.csv" in result.detail


def test_claim12_does_not_hold_when_the_edit_shift_is_larger():
    assert claim12(activations(norm_ed=5.0, norm_ft=0.5)).verdict == DOES_NOT_HOLD


def test_claim12_does_not_hold_when_the_cosine_order_is_reversed():
    assert claim12(activations(cosines=(0.8, 0.2, 0.05))).verdict == DOES_NOT_HOLD


def test_claim12_inconclusive_with_too_few_units_or_mixed_signs():
    assert claim12(activations(n_configs=1)).verdict == INCONCLUSIVE  # 3 units: p = 0.25
    assert claim12(activations(n_configs=3, flip=(0,))).verdict == INCONCLUSIVE


def test_claim12_not_tested_without_activations():
    assert claim12(None).verdict == NOT_TESTED
    assert claim12(activations().iloc[0:0]).verdict == NOT_TESTED
    assert "editdecay analyse" in claim12(None).detail  # the committed reports keep their text


def test_claim13_holds_when_erased_targets_are_rarer():
    result = claim13(frequencies(stable=np.linspace(2, 3, 8), erased=np.linspace(0, 1, 8)))
    assert result.verdict == HOLDS, result.detail
    assert "target_frequency.csv" in result.detail


def test_claim13_does_not_hold_when_stable_targets_are_rarer():
    result = claim13(frequencies(stable=np.linspace(0, 1, 8), erased=np.linspace(2, 3, 8)))
    assert result.verdict == DOES_NOT_HOLD


def test_claim13_inconclusive_without_a_shift():
    values = np.linspace(0, 1, 8)
    assert claim13(frequencies(stable=values, erased=values)).verdict == INCONCLUSIVE


def test_claim13_not_testable_with_few_erased_edits_and_not_tested_without_the_table():
    result = claim13(frequencies(stable=np.linspace(2, 3, 8), erased=[0.1, 0.2]))
    assert result.verdict == NOT_TESTABLE and "erased 2" in result.detail
    assert claim13(None).verdict == NOT_TESTED


def test_claim13_counts_a_target_repeated_across_configurations_once():
    freq = frequencies(stable=np.linspace(2, 3, 8), erased=np.linspace(0, 1, 4))
    repeated = pd.concat([freq, freq.assign(config_id="c1")], ignore_index=True)
    assert claim13(repeated).verdict == NOT_TESTABLE  # still 4 distinct erased targets


def test_claim_tables_read_the_analysis_tables_from_a_run(tmp_path):
    from editdecay.report.inputs import load_results
    from editdecay.report.reproduction import claim_tables

    results = tmp_path / "results"
    results.mkdir()
    decay().to_csv(results / "decay.csv", index=False)
    assert "activations" not in claim_tables(load_results(tmp_path))
    activations().to_csv(results / "activations.csv", index=False)
    freq = frequencies(stable=np.linspace(2, 3, 8), erased=np.linspace(0, 1, 8))
    freq.to_csv(results / "target_frequency.csv", index=False)
    tables = claim_tables(load_results(tmp_path))
    assert check_claim(12, tables).verdict == HOLDS
    assert check_claim(13, tables).verdict == HOLDS
