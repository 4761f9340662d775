"""memit_edit end to end on the tiny random model.

The edit layers are (1, 2), so z lives at layer 2. With (1, 2, 3) z would sit at the model's last
layer, where it cannot influence the target positions at all (see test_targets.py), and the update
would not reliably lower the target NLL on a 4-layer model.
"""

from __future__ import annotations

import pytest
import torch

from editdecay.editing.config import MemitConfig, TargetConfig, TemplateConfig
from editdecay.editing.delta import EditDelta
from editdecay.editing.keys import compute_keys, current_residual
from editdecay.editing.memit import memit_edit, solve_memit
from editdecay.editing.statistics import SecondMoment
from editdecay.editing.targets import EditingError, optimise_targets
from editdecay.evaluation.scorer import Scorer

LAYERS = (1, 2)
LAM = 10.0


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_state(model, expected):
    for k, v in model.state_dict().items():
        assert torch.equal(v, expected[k]), k


def _rewrite_nll(lm, requests):
    scorer = Scorer(lm.model, lm.tokenizer, lm.adapter)
    return [s.nll for s in scorer.score([(r.text, r.target_new) for r in requests])]


@pytest.fixture(scope="module")
def cfg(tiny_stat_spec):
    return MemitConfig(
        layers=LAYERS,
        mom2_update_weight=LAM,
        targets=TargetConfig(steps=30),
        statistic=tiny_stat_spec,
    )


@pytest.fixture(scope="module")
def edit(tiny_lm, cf_requests, tiny_stats, cfg):
    before = _snapshot(tiny_lm.model)
    nll_before = _rewrite_nll(tiny_lm, cf_requests)
    delta = memit_edit(tiny_lm, cf_requests, cfg, stats=tiny_stats)
    return delta, before, nll_before


def test_delta_describes_the_edit(tiny_lm, cf_requests, tiny_stats, cfg, edit):
    delta = edit[0]
    assert set(delta.weights) == {
        "model.layers.1.mlp.down_proj.weight",
        "model.layers.2.mlp.down_proj.weight",
    }
    for w in delta.weights.values():
        assert w.shape == (64, 128) and w.dtype == torch.float32
        assert torch.isfinite(w).all() and float(w.norm()) > 0
    assert delta.method == "memit"
    assert delta.model_fingerprint == tiny_lm.fingerprint
    assert delta.request_ids == [r.case_id for r in cf_requests]
    assert delta.statistic_keys == {"1": tiny_stats[1].key, "2": tiny_stats[2].key}
    assert delta.config == cfg.to_dict()
    assert delta.seeds == {"templates": 0}
    assert len(delta.info["targets"]["final_nll"]) == 4
    assert delta.info["context_templates"][0] == "{}"
    assert len(delta.info["context_templates"]) == 1 + len(cfg.templates.seed_words)


def test_applying_the_delta_lowers_the_target_nll_of_every_request(tiny_lm, cf_requests, edit):
    delta, before, nll_before = edit
    with delta.apply(tiny_lm.model):
        nll_after = _rewrite_nll(tiny_lm, cf_requests)
    _assert_state(tiny_lm.model, before)
    for req, a, b in zip(cf_requests, nll_before, nll_after):
        assert b < a - 1e-3, (req.case_id, a, b)


def test_each_layer_update_is_the_memit_solve(tiny_lm, cf_requests, tiny_stats, cfg, edit):
    """Recompute ΔW_l from z, the keys on the model edited so far and the residual spread over the
    layers left, and compare with what memit_edit produced."""
    delta = edit[0]
    templates = delta.info["context_templates"]
    z = optimise_targets(tiny_lm, cf_requests, templates, max(LAYERS), cfg.targets).z
    applied = []
    try:
        for i, layer in enumerate(LAYERS):
            K = compute_keys(tiny_lm, cf_requests, templates, layer).T
            R = (z - current_residual(tiny_lm, cf_requests, max(LAYERS)).cpu()).T / (
                len(LAYERS) - i
            )
            expected = solve_memit(K.cpu(), R, tiny_stats[layer].matrix, LAM).float()
            name = f"model.layers.{layer}.mlp.down_proj.weight"
            got = delta.weights[name]
            assert float((got - expected).norm() / expected.norm()) < 1e-6, layer
            applied.append(
                EditDelta({name: got}, "memit", {}, [], "").apply(tiny_lm.model, force=True)
            )
    finally:
        for handle in reversed(applied):
            handle.revert()


def _few_steps(steps: int) -> MemitConfig:
    """A MEMIT config that reaches the solve quickly (the tests below fail there on purpose)."""
    return MemitConfig(
        layers=LAYERS,
        targets=TargetConfig(steps=steps),
        templates=TemplateConfig(seed_words=("The",), length=2),
    )


def test_nan_statistic_raises_editing_error(tiny_lm, cf_requests, tiny_stats):
    """Layer 1's statistic is fine, layer 2's is NaN: layer 1 is already written when layer 2 fails,
    and must be restored."""
    stats = {
        1: tiny_stats[1],
        2: SecondMoment(
            2, "model.layers.2.mlp.down_proj", torch.full((128, 128), float("nan")), 2000, "nan"
        ),
    }
    cfg = _few_steps(2)
    before = _snapshot(tiny_lm.model)
    with pytest.raises(EditingError, match="non-finite update at layer 2"):
        memit_edit(tiny_lm, cf_requests[:2], cfg, stats=stats)
    _assert_state(tiny_lm.model, before)


def test_all_nan_statistics_raise_editing_error(tiny_lm, cf_requests):
    nan = torch.full((128, 128), float("nan"))
    stats = {
        layer: SecondMoment(layer, f"model.layers.{layer}.mlp.down_proj", nan, 1, "x")
        for layer in LAYERS
    }
    cfg = _few_steps(1)
    with pytest.raises(EditingError, match="non-finite"):
        memit_edit(tiny_lm, cf_requests[:1], cfg, stats=stats)


def test_no_requests_raises(tiny_lm, tiny_stats, cfg):
    with pytest.raises(ValueError, match="no edit requests"):
        memit_edit(tiny_lm, [], cfg, stats=tiny_stats)


def test_edit_layer_out_of_range_raises(tiny_lm, cf_requests, tiny_stats):
    with pytest.raises(ValueError, match="out of range"):
        memit_edit(tiny_lm, cf_requests, MemitConfig(layers=(2, 4)), stats=tiny_stats)
