"""Claim 14 (a poor edit-layer choice collapses batch-edit success): every verdict it can give."""

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
from editdecay.analysis.claims.edit_layers import COLLAPSE_MARGIN, layer_pairs
from editdecay.analysis.claims.registry import final_for_claims
from editdecay.schema import DECAY

MOVED = "24 25 26 27 28"


def _successes(n: int, es: float, seed: int) -> np.ndarray:
    """n per-edit CounterFact outcomes (0/1) with exactly round(es% of n) successes."""
    out = np.zeros(n)
    out[: int(round(es / 100 * n))] = 1.0
    return np.random.default_rng(seed).permutation(out)


def _config(method, n, layers, es, es_m=20.0, seed=0, per_edit=None):
    """One edit-only configuration: its decay row and its M_ed rows of edits.csv (`per_edit`
    outcomes, or `es`% successes in a seeded order)."""
    cid = f"m.{method}-counterfact{n}.noft.{layers.replace(' ', '-') or 'default'}"
    per_edit = _successes(n, es, seed) if per_edit is None else per_edit
    decay = DECAY.row(
        config_id=cid,
        model="m",
        edit_method=method,
        edit_data="counterfact",
        n_edits=n,
        edit_layers=layers,
        ft_method="none",
        step=0,
        final=True,
        efficacy_kind="counterfact",
        es_M=es_m,
        es_ed=100 * per_edit.mean(),
        n_success_ed=int(per_edit.sum()),
    )
    edits = pd.DataFrame(
        {
            "config_id": cid,
            "state": "M_ed",
            "case_id": [f"counterfact:{i}" for i in range(n)],
            "es": per_edit,
            "source": "counterfact",
        }
    )
    return decay, edits


def _tables(specs):
    """specs: (method, n, layers, es[, es_M]) per edit-only configuration."""
    parts = [_config(*spec, seed=i) for i, spec in enumerate(specs)]
    return {
        "decay": pd.DataFrame([d for d, _ in parts]),
        "edits": pd.concat([e for _, e in parts], ignore_index=True),
    }


def _both(n_small, n_large, default_es, moved_es, es_m=20.0):
    specs = []
    for method in ("memit", "alphaedit"):
        for n in (n_small, n_large):
            specs.append((method, n, "", default_es[n], es_m))
            specs.append((method, n, MOVED, moved_es[n], es_m))
    return _tables(specs)


def test_a_window_that_loses_most_edits_holds_and_reports_the_batch_trend():
    t = _both(50, 150, {50: 96, 150: 94}, {50: 70, 150: 30})
    result = check_claim(14, t)
    assert result.verdict == HOLDS
    assert "layers 24 25 26 27 28" in result.ours
    assert "gap change from the smaller to the larger batch +" in result.ours


def test_a_window_that_edits_as_well_does_not_hold():
    t = _both(50, 150, {50: 96, 150: 94}, {50: 96, 150: 93})
    assert check_claim(14, t).verdict == DOES_NOT_HOLD


def test_a_gap_near_the_margin_on_few_edits_is_inconclusive():
    gap = COLLAPSE_MARGIN + 1
    t = _both(20, 40, {20: 90, 40: 90}, {20: 90 - gap, 40: 90 - gap})
    assert check_claim(14, t).verdict == INCONCLUSIVE


def test_default_layers_that_do_not_edit_make_it_not_testable():
    t = _both(50, 150, {50: 22, 150: 20}, {50: 10, 150: 4})
    result = check_claim(14, t)
    assert result.verdict == NOT_TESTABLE
    assert "default layers do not edit either" in result.detail


def test_without_a_moved_window_or_per_edit_scores_it_is_not_tested():
    default_only = _tables([("memit", 50, "", 95), ("alphaedit", 50, "", 96)])
    result = check_claim(14, default_only)
    assert result.verdict == NOT_TESTED
    assert "on the default layers: m ES 20.0 → 96.0" in result.ours
    t = _both(50, 150, {50: 96, 150: 94}, {50: 70, 150: 30})
    assert check_claim(14, {"decay": t["decay"]}).verdict == NOT_TESTED


def test_the_gap_is_paired_edit_by_edit():
    """The moved window loses 45 of the default's successes and nothing else: paired over the
    300 requests the gap's interval is about ±4 points; as two independent samples it would be
    about ±8 (binomial SE of each arm ~2.8 points)."""
    n = 300
    default = _successes(n, 60, 0)
    moved = default.copy()
    moved[np.flatnonzero(default)[:45]] = 0.0  # 15 points fewer, all among the default's successes
    parts = [
        _config("memit", n, layers, None, es_m=10.0, per_edit=values)
        for layers, values in (("", default), (MOVED, moved))
    ]
    decay, edits = pd.DataFrame([d for d, _ in parts]), pd.concat([e for _, e in parts])
    result = check_claim(14, {"decay": decay, "edits": edits})
    assert result.verdict == HOLDS
    low, high = map(float, result.ours.split("95% interval [")[1].split("]")[0].split(","))
    assert low < 15.0 < high and high - low < 10.0


def test_pairs_match_model_editor_data_and_count():
    t = _both(50, 150, {50: 96, 150: 94}, {50: 70, 150: 30})
    final = final_for_claims(t["decay"])
    pairs = layer_pairs(final)
    assert {(p.method, p.n_edits) for p in pairs} == {
        (m, n) for m in ("memit", "alphaedit") for n in (50, 150)
    }
    assert all(p.default_id.endswith("default") and p.layers == MOVED for p in pairs)


@pytest.mark.parametrize("missing", ["", MOVED])
def test_a_window_without_its_twin_is_not_paired(missing):
    t = _tables([("memit", 50, "", 95), ("memit", 50, MOVED, 40)])
    t["decay"] = t["decay"][t["decay"]["edit_layers"] != missing]
    assert layer_pairs(final_for_claims(t["decay"])) == []
