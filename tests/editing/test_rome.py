"""ROME: the rank-one update and the editor on the tiny model."""

from __future__ import annotations

import pytest
import torch

from editdecay.editing import default_config
from editdecay.editing.config import RomeConfig, TargetConfig
from editdecay.editing.rome import rank_one_update, rome_edit
from editdecay.evaluation.scorer import Scorer


def test_rank_one_update_maps_k_cur_to_v_star():
    g = torch.Generator().manual_seed(0)
    d_k, d_v = 16, 6
    A = torch.randn(d_k, d_k, generator=g, dtype=torch.float64)
    C = A @ A.T + torch.eye(d_k, dtype=torch.float64)
    W = torch.randn(d_v, d_k, generator=g, dtype=torch.float64)
    k_star, k_cur = (
        torch.randn(d_k, generator=g, dtype=torch.float64),
        torch.randn(d_k, generator=g, dtype=torch.float64),
    )
    v_star = torch.randn(d_v, generator=g, dtype=torch.float64)
    for cov in (C, None):
        dW = rank_one_update(k_star, k_cur, v_star, W @ k_cur, cov)
        assert torch.linalg.matrix_rank(dW).item() == 1
        assert torch.allclose((W + dW) @ k_cur, v_star, atol=1e-10)
    u = torch.linalg.solve(C, k_star)
    dW = rank_one_update(k_star, k_cur, v_star, W @ k_cur, C)
    assert torch.allclose(
        dW @ (torch.eye(d_k, dtype=torch.float64) - torch.outer(u, u) / (u @ u)),
        torch.zeros_like(dW),
        atol=1e-10,
    )  # every row is parallel to C⁻¹k*


def test_rome_on_tiny_model_is_rank_one_per_fact_and_moves_targets(
    tiny_lm, cf_requests, tiny_stat_spec, tiny_stats_dir
):
    from editdecay.editing.statistics import second_moments

    cfg = RomeConfig(layers=(1,), targets=TargetConfig(steps=20), statistic=tiny_stat_spec)
    stats = second_moments(tiny_lm, [1], tiny_stat_spec, cache_dir=tiny_stats_dir)
    one = rome_edit(tiny_lm, cf_requests[:1], cfg, stats=stats)
    ((name, dw),) = one.weights.items()
    assert name == "model.layers.1.mlp.down_proj.weight"
    assert torch.linalg.matrix_rank(dw.double(), rtol=1e-6).item() == 1
    two = rome_edit(tiny_lm, cf_requests[:2], cfg, stats=stats)
    assert (
        torch.linalg.matrix_rank(two.weights[name].double(), rtol=1e-6).item() == 2
    )  # one rank per fact

    scorer = Scorer(tiny_lm.model, tiny_lm.tokenizer, tiny_lm.adapter)
    pair = [(cf_requests[0].text, cf_requests[0].target_new)]
    before = scorer.score(pair)[0].nll
    with one.apply(tiny_lm.model):
        after = scorer.score(pair)[0].nll
    assert after < before


def test_rome_rejects_several_layers(tiny_lm, cf_requests):
    with pytest.raises(ValueError, match="exactly one layer"):
        rome_edit(tiny_lm, cf_requests[:1], RomeConfig(layers=(1, 2)))


def test_default_rome_layer_is_second_of_window(tiny_lm):
    cfg = default_config("rome", tiny_lm)
    assert cfg.layers == (2,)  # tiny window (1, 2)
