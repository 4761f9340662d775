"""Repair on the tiny model: the edits a "fine-tuning" broke are found and re-edited, the ones it
kept are left alone, and nothing is re-edited when nothing flipped."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch

from editdecay.editing import get_editor
from editdecay.editing.config import MemitConfig, TargetConfig, TemplateConfig
from editdecay.editing.repair import repair_edits, success
from editdecay.evaluation.edit_metrics import evaluate_requests
from editdecay.evaluation.scorer import Scorer
from editdecay.models.registry import LoadedModel, fingerprint


@pytest.fixture(scope="module")
def cfg(tiny_stat_spec):
    return MemitConfig(
        layers=(1, 2),
        targets=TargetConfig(steps=20),
        templates=TemplateConfig(seed_words=("The",), length=2),
        statistic=tiny_stat_spec,
    )


def _copy(lm: LoadedModel) -> LoadedModel:
    model = copy.deepcopy(lm.model)
    return LoadedModel(lm.name, model, lm.tokenizer, lm.adapter, fingerprint(model))


def _scores(lm, requests) -> pd.DataFrame:
    return evaluate_requests(Scorer(lm.model, lm.tokenizer, lm.adapter), requests)


def test_the_flipped_edits_are_re_edited_and_restored(tiny_lm, tiny_stats, cf_requests, cfg):
    delta = get_editor("memit").edit(tiny_lm, cf_requests, cfg, stats=tiny_stats)
    edited = _copy(tiny_lm)
    delta.apply(edited.model, force=True)
    edited_scores = _scores(edited, cf_requests)
    assert success(edited_scores).all(), "the quick MEMIT edit must write every fact"
    # a "fine-tuning" that erased the edits: the base weights, plus a small random drift
    tuned = _copy(tiny_lm)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in tuned.model.parameters():
            p.add_(1e-4 * torch.randn(p.shape, generator=gen))
    tuned = LoadedModel(
        tuned.name, tuned.model, tuned.tokenizer, tuned.adapter, fingerprint(tuned.model)
    )
    before = fingerprint(tuned.model)
    result = repair_edits(tuned, cf_requests, "memit", cfg, tiny_stats, edited_scores)
    assert fingerprint(tuned.model) == before  # the repair is a delta; the model is unchanged
    s = result.summary
    flipped = ~success(_scores(tuned, cf_requests))
    assert s["n_flipped"] == int(flipped.sum()) > 0
    assert s["n_repaired"] == s["n_flipped"] and s["repaired"] == 100.0
    assert s["n_broken_by_repair"] == 0
    assert s["success_full"] == 100.0 and s["full_seconds"] > 0
    assert result.delta.request_ids == [r.case_id for r, f in zip(cf_requests, flipped) if f]


def test_nothing_flipped_means_no_re_edit(tiny_lm, tiny_stats, cf_requests, cfg):
    tuned = _copy(tiny_lm)
    # on the unedited model every edit fails, but none succeeded on "M_ed" either: nothing flipped
    never = _scores(tuned, cf_requests).assign(es=0.0)
    result = repair_edits(tuned, cf_requests, "memit", cfg, tiny_stats, never, full_reedit=False)
    assert result.delta is None and result.full_delta is None
    assert result.summary["n_flipped"] == 0 and result.summary["n_repaired"] == 0
    assert result.table["flipped"].sum() == 0


def test_success_rule_per_dataset_kind():
    table = pd.DataFrame(
        {
            "es": [1.0, 0.0, float("nan"), float("nan"), 1.0, 0.0],
            "rewrite_acc": [0, 1, 1, 0.5, 0.5, 1.0],
            "source": ["counterfact"] * 4 + ["zsre"] * 2,
        }
    )
    assert list(success(table)) == [True, False, True, False, False, True]
