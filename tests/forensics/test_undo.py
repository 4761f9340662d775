"""Undo from weights on the tiny model: a single unfine-tuned edit is removed exactly, the rank undo
keeps a fine-tuning-like tail, the keys undo removes the response to the chosen subjects only, and
the measured effect counts the reverted edits."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch

from editdecay.config_types import ConfigError
from editdecay.data.tokenization import fill
from editdecay.editing.keys import read_at_subject
from editdecay.evaluation.edit_metrics import evaluate_requests
from editdecay.evaluation.scorer import Scorer
from editdecay.forensics.undo import (
    UndoConfig,
    paired_downstream,
    top_components,
    undo_delta,
    undo_effect,
)
from editdecay.forensics.weights import locate_edits
from editdecay.models.registry import LoadedModel

PARAM = "model.layers.2.mlp.down_proj.weight"


def _suspect(tiny_lm, edit: torch.Tensor, noise: float = 0.0) -> LoadedModel:
    model = copy.deepcopy(tiny_lm.model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if noise and p.dim() == 2:
                p.add_(noise * p.norm() / p.numel() ** 0.5 * torch.randn(p.shape, generator=gen))
        dict(model.named_parameters())[PARAM].add_(edit)
    return LoadedModel(tiny_lm.name, model, tiny_lm.tokenizer, tiny_lm.adapter, "suspect")


def _rank_one(tiny_lm, scale: float = 1.0) -> torch.Tensor:
    w = dict(tiny_lm.model.named_parameters())[PARAM]
    gen = torch.Generator().manual_seed(0)
    u, v = torch.randn(w.shape[0], 1, generator=gen), torch.randn(1, w.shape[1], generator=gen)
    return scale * w.norm() * (u @ v) / (u.norm() * v.norm())


def test_undo_of_a_single_unfine_tuned_edit_restores_the_base(tiny_lm, cf_requests):
    suspect = _suspect(tiny_lm, _rank_one(tiny_lm))
    report, _ = locate_edits(tiny_lm, suspect.model)
    assert report["edited_modules"] == [PARAM]
    for mode in ("rank", "full"):
        undo = undo_delta(tiny_lm.model, suspect, report["edited_modules"], UndoConfig(mode=mode))
        assert undo.info["removed_rank"] == {PARAM: 1}
        with undo.apply(suspect.model):
            for (name, a), b in zip(
                suspect.model.named_parameters(), tiny_lm.model.parameters(), strict=True
            ):
                assert torch.allclose(a, b, atol=1e-6), (mode, name)
            scorer = Scorer(suspect.model, suspect.tokenizer, suspect.adapter)
            after = evaluate_requests(scorer, cf_requests)
    base = evaluate_requests(Scorer(tiny_lm.model, tiny_lm.tokenizer, tiny_lm.adapter), cf_requests)
    assert torch.allclose(torch.tensor(after["nll_new"]), torch.tensor(base["nll_new"]), atol=1e-4)


def test_rank_undo_keeps_a_fine_tuning_like_tail(tiny_lm):
    edit = _rank_one(tiny_lm, scale=0.5)
    suspect = _suspect(tiny_lm, edit, noise=0.01)
    base_w = dict(tiny_lm.model.named_parameters())[PARAM]
    tuned_w = dict(suspect.model.named_parameters())[PARAM] - edit  # base + the noise only
    rank = undo_delta(tiny_lm.model, suspect, [PARAM], UndoConfig(mode="rank", energy=0.9))
    full = undo_delta(tiny_lm.model, suspect, [PARAM], UndoConfig(mode="full"))
    with rank.apply(suspect.model):
        w = dict(suspect.model.named_parameters())[PARAM]
        assert (w - tuned_w).norm() < 0.1 * edit.norm()  # the edit is gone
        assert (w - base_w).norm() > 0  # the fine-tuning-like change stays
    with full.apply(suspect.model):
        assert torch.allclose(dict(suspect.model.named_parameters())[PARAM], base_w, atol=1e-6)


def test_keys_undo_removes_the_response_to_the_chosen_subjects_only(tiny_lm, cf_requests):
    suspect = _suspect(tiny_lm, _rank_one(tiny_lm), noise=0.0)
    chosen, other = cf_requests[:1], cf_requests[1:]
    undo = undo_delta(tiny_lm.model, suspect, [PARAM], UndoConfig(mode="keys"), chosen)
    module = PARAM.removesuffix(".weight")

    def keys(requests):
        return read_at_subject(
            suspect, [fill(r.prompt, r.subject) for r in requests], module, inputs=True
        )

    k_chosen, k_other = keys(chosen), keys(other)
    base_w = dict(tiny_lm.model.named_parameters())[PARAM]
    with undo.apply(suspect.model):
        w = dict(suspect.model.named_parameters())[PARAM]
        assert torch.allclose(k_chosen @ w.T, k_chosen @ base_w.T, atol=1e-4)
        assert not torch.allclose(k_other @ w.T, k_other @ base_w.T, atol=1e-3)
    with pytest.raises(ConfigError, match="candidate"):
        undo_delta(tiny_lm.model, suspect, [PARAM], UndoConfig(mode="keys"))
    with pytest.raises(ValueError, match="nothing to undo"):
        undo_delta(tiny_lm.model, suspect, [], UndoConfig())


def test_effect_counts_the_reverted_edits(tiny_lm, cf_requests):
    suspect = _suspect(tiny_lm, _rank_one(tiny_lm, scale=3.0))
    undo = undo_delta(tiny_lm.model, suspect, [PARAM], UndoConfig(mode="full"))
    summary, table = undo_effect(suspect, undo, cf_requests, ppl_tokens=0)
    expected = int((table["success_before"] & ~table["success_after"]).sum())
    assert summary["n_reverted"] == expected == int(table["reverted"].sum())
    assert summary["n_successful_before"] == int(table["success_before"].sum())
    base = evaluate_requests(Scorer(tiny_lm.model, tiny_lm.tokenizer, tiny_lm.adapter), cf_requests)
    assert list(table["success_after"]) == list(base["es"] > 0.5)  # after the undo: the base
    # an undo that removes nothing reverts nothing
    nothing = copy.deepcopy(undo)
    nothing.weights = {k: torch.zeros_like(v) for k, v in undo.weights.items()}
    summary, _ = undo_effect(suspect, nothing, cf_requests, ppl_tokens=0)
    assert summary["n_reverted"] == 0


def test_top_components_follow_energy_and_rank():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(12, 2, generator=gen) @ torch.randn(2, 9, generator=gen)
    b = 1e-3 * torch.randn(12, 9, generator=gen)
    assert torch.linalg.matrix_rank(top_components(a + b, 0.99, None)) == 2
    assert torch.linalg.matrix_rank(top_components(a + b, 1.0, 3)) == 3
    assert torch.allclose(top_components(a, 1.0, None), a, atol=1e-5)


def _items(correct: dict[str, list[bool]]) -> pd.DataFrame:
    rows = [
        {"task": task, "mode": mode, "index": i, "correct": c}
        for mode in ("rank", "generate")
        for task, values in correct.items()
        for i, c in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_paired_downstream_counts_the_items_that_changed():
    before = _items({"boolq": [True, True, False, False], "piqa": [True, False]})
    same = paired_downstream(before, before.copy())
    assert same["n_items"] == 6
    assert same["rank"]["only_right_before"] == same["rank"]["only_right_after"] == 0
    assert same["rank"]["mcnemar_p"] == 1.0 and same["rank"]["before"] == same["rank"]["after"]
    # the undo loses five items and gains none: lower accuracy, and a McNemar p below 1
    after = _items({"boolq": [False, False, False, False], "piqa": [False, False]})
    worse = paired_downstream(before, after)
    assert (
        worse["generate"]["only_right_before"] == 3 and worse["generate"]["only_right_after"] == 0
    )
    assert worse["generate"]["before"] == pytest.approx(100 * (0.5 + 0.5) / 2)
    assert worse["generate"]["after"] == 0.0 and worse["generate"]["mcnemar_p"] < 1.0
