"""AlphaEdit: the null-space projector, the projected solve, editor state and sequential editing."""

from __future__ import annotations

import pytest
import torch

from editdecay.editing import EDITORS, default_config
from editdecay.editing.alphaedit import AlphaEditState, alphaedit_edit, nullspace, solve_alphaedit
from editdecay.editing.config import AlphaEditConfig, TargetConfig
from editdecay.editing.delta import EditDelta
from editdecay.editing.sequential import edit_sequentially
from editdecay.editing.statistics import SecondMoment


def synthetic_stat(evals: torch.Tensor, seed: int = 0) -> SecondMoment:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(evals), len(evals), generator=g, dtype=torch.float64))
    C = (q * evals) @ q.T
    return SecondMoment(layer=3, module="m", matrix=C.float(), n_tokens=1000, key="synthetic")


def test_threshold_rules_keep_the_documented_number_of_directions():
    evals = torch.tensor([10.0, 5.0, 1.0, 0.5, 0.09, 0.05, 0.02, 0.001], dtype=torch.float64)
    stat = synthetic_stat(evals)
    assert (
        nullspace(stat, "relative", 1e-2).dim == 4
    )  # below 0.1 (= 1e-2 · max 10): 0.09, 0.05, 0.02, 0.001
    assert nullspace(stat, "relative", 0.2).dim == 6  # below 2.0: also 1.0 and 0.5

    assert nullspace(stat, "absolute", 0.06).dim == 3  # 0.05, 0.02, 0.001
    assert nullspace(stat, "keep", 5).dim == 5
    with pytest.raises(ValueError, match="keeps no direction"):
        nullspace(stat, "absolute", 1e-6)
    with pytest.raises(ValueError, match="unknown nullspace rule"):
        nullspace(stat, "fraction", 0.5)


def test_projector_is_the_orthogonal_projection_on_the_small_eigen_directions():
    evals = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.01, 0.005], dtype=torch.float64)
    stat = synthetic_stat(evals, seed=1)
    P = nullspace(stat, "absolute", 0.1).projector.double()
    assert torch.allclose(P @ P, P, atol=1e-6) and torch.allclose(P, P.T, atol=1e-6)
    assert float(torch.trace(P)) == pytest.approx(2.0, abs=1e-5)
    w, v = torch.linalg.eigh(stat.matrix.double())
    assert torch.allclose(P @ v[:, :2], v[:, :2], atol=1e-5)  # null-space directions kept
    assert torch.allclose(
        P @ v[:, 2:], torch.zeros_like(v[:, 2:]), atol=1e-5
    )  # preserved ones removed


def test_update_annihilates_the_preserved_subspace():
    d_k, d_v, n = 24, 8, 5
    evals = torch.logspace(1, -4, d_k, dtype=torch.float64)
    stat = synthetic_stat(evals, seed=2)
    ns = nullspace(stat, "relative", 1e-3)
    g = torch.Generator().manual_seed(3)
    K, R = torch.randn(d_k, n, generator=g), torch.randn(d_v, n, generator=g)
    kk_prev = torch.randn(d_k, 3, generator=g)
    dW = solve_alphaedit(K, R, ns.projector, kk_prev @ kk_prev.T, l2=1.0)
    assert dW.shape == (d_v, d_k)
    _, v = torch.linalg.eigh(stat.matrix.double())
    preserved = v[:, ns.dim :]  # the top eigen-directions, which P removes
    assert float((dW @ preserved).abs().max()) < 1e-6 * float(dW.abs().max())
    assert float(dW.abs().max()) > 1e-3  # and the update is not trivially zero


def test_projected_solve_matches_the_papers_form():
    d_k, d_v, n = 12, 4, 3
    stat = synthetic_stat(torch.logspace(1, -3, d_k, dtype=torch.float64), seed=4)
    P = nullspace(stat, "relative", 1e-2).projector.double()
    g = torch.Generator().manual_seed(5)
    K, R = (
        torch.randn(d_k, n, generator=g, dtype=torch.float64),
        torch.randn(d_v, n, generator=g, dtype=torch.float64),
    )
    kp = torch.randn(d_k, 2, generator=g, dtype=torch.float64)
    l2 = 10.0
    expected = (
        R
        @ K.T
        @ P
        @ torch.linalg.inv((kp @ kp.T + K @ K.T) @ P + l2 * torch.eye(d_k, dtype=torch.float64))
    )
    got = solve_alphaedit(K, R, P, kp @ kp.T, l2)
    assert torch.allclose(got, expected, rtol=1e-8, atol=1e-10)


@pytest.fixture(scope="module")
def alpha_cfg(tiny_stat_spec):
    return AlphaEditConfig(
        layers=(1, 2),
        targets=TargetConfig(steps=8),
        statistic=tiny_stat_spec,
        nullspace_rule="relative",
        nullspace_threshold=0.05,
        l2=1.0,
    )


def test_alphaedit_edit_on_tiny_model_rows_lie_in_the_null_space(
    tiny_lm, cf_requests, alpha_cfg, tiny_stats_dir
):
    from editdecay.editing.statistics import second_moments

    stats = second_moments(tiny_lm, [1, 2], alpha_cfg.statistic, cache_dir=tiny_stats_dir)
    before = {n: p.detach().clone() for n, p in tiny_lm.model.named_parameters()}
    delta = alphaedit_edit(tiny_lm, cf_requests[:2], alpha_cfg, stats=stats)
    for n, p in tiny_lm.model.named_parameters():
        assert torch.equal(p, before[n])  # the editor leaves the model unchanged
    for layer in (1, 2):
        P = nullspace(stats[layer], "relative", 0.05).projector
        dW = delta.weights[f"model.layers.{layer}.mlp.down_proj.weight"]
        assert torch.allclose(dW @ P, dW, atol=1e-5 * float(dW.abs().max()))
    state = AlphaEditState.from_tensors(delta.state)
    assert state.n_edits == 2 and set(state.kk) == {1, 2}
    assert all(torch.allclose(m, m.T) for m in state.kk.values())
    assert delta.info["nullspace_dims"]["1"] > 0


def test_saved_state_gives_the_same_next_update(
    tiny_lm, cf_requests, alpha_cfg, tiny_stats_dir, tmp_path
):
    from editdecay.editing.statistics import second_moments

    stats = second_moments(tiny_lm, [1, 2], alpha_cfg.statistic, cache_dir=tiny_stats_dir)
    first = alphaedit_edit(tiny_lm, cf_requests[:2], alpha_cfg, stats=stats)
    first.save(tmp_path / "first")
    reloaded = EditDelta.load(tmp_path / "first")
    assert set(reloaded.state) == set(first.state)

    def next_update(state_tensors):
        with first.apply(tiny_lm.model, force=True):
            return alphaedit_edit(
                tiny_lm,
                cf_requests[2:],
                alpha_cfg,
                stats=stats,
                state=AlphaEditState.from_tensors(state_tensors),
            )

    a, b = next_update(first.state), next_update(reloaded.state)
    for name in a.weights:
        assert torch.equal(a.weights[name], b.weights[name])
    fresh = next_update({})  # without the memory of the first batch the update differs
    assert not torch.allclose(fresh.weights[name], a.weights[name])


def test_sequential_driver_leaves_model_unchanged_and_accumulates(
    tiny_lm, cf_requests, alpha_cfg, monkeypatch, tiny_stats_dir
):
    monkeypatch.setenv("EDITDECAY_CACHE", str(tiny_stats_dir.parent))
    before = {n: p.detach().clone() for n, p in tiny_lm.model.named_parameters()}
    delta = edit_sequentially(tiny_lm, cf_requests, EDITORS["alphaedit"], alpha_cfg, batch_size=2)
    for n, p in tiny_lm.model.named_parameters():
        assert torch.equal(p, before[n])
    assert delta.request_ids == [r.case_id for r in cf_requests]
    assert AlphaEditState.from_tensors(delta.state).n_edits == 4
    assert [b["size"] for b in delta.info["sequential"]["batches"]] == [2, 2]
    with pytest.raises(ValueError, match="batch size"):
        edit_sequentially(tiny_lm, cf_requests, EDITORS["alphaedit"], alpha_cfg, batch_size=0)


def test_default_config_for_alphaedit_uses_model_layers(tiny_lm):
    cfg = default_config("alphaedit", tiny_lm, {"l2": 3.0})
    assert (
        isinstance(cfg, AlphaEditConfig)
        and cfg.l2 == 3.0
        and max(cfg.layers) < tiny_lm.n_layers - 1
    )


def test_interrupted_sequential_edit_resumes_bit_identical(
    tiny_lm, cf_requests, alpha_cfg, monkeypatch, tiny_stats_dir, tmp_path
):
    import dataclasses

    monkeypatch.setenv("EDITDECAY_CACHE", str(tiny_stats_dir.parent))
    spec = EDITORS["alphaedit"]
    whole = edit_sequentially(tiny_lm, cf_requests, spec, alpha_cfg, batch_size=1)
    calls = []

    def dies_on_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return spec.edit(*args, **kwargs)

    progress_file = tmp_path / "sequential.pt"
    with pytest.raises(KeyboardInterrupt):
        edit_sequentially(
            tiny_lm,
            cf_requests,
            dataclasses.replace(spec, edit=dies_on_third_batch),
            alpha_cfg,
            batch_size=1,
            progress_file=progress_file,
        )
    assert progress_file.exists()
    counted = []

    def counting(*args, **kwargs):
        counted.append(1)
        return spec.edit(*args, **kwargs)

    resumed = edit_sequentially(
        tiny_lm,
        cf_requests,
        dataclasses.replace(spec, edit=counting),
        alpha_cfg,
        batch_size=1,
        progress_file=progress_file,
    )
    assert len(counted) == 2 and not progress_file.exists()  # batches 3 and 4 only
    assert resumed.weights.keys() == whole.weights.keys()
    assert all(torch.equal(resumed.weights[n], whole.weights[n]) for n in whole.weights)
    assert all(torch.equal(resumed.state[k], whole.state[k]) for k in whole.state)
    assert [b["start"] for b in resumed.info["sequential"]["batches"]] == [0, 1, 2, 3]


def test_registry_edit_defaults_apply_before_user_overrides(tiny_lm, monkeypatch):
    from editdecay.models import registry

    spec = registry.ModelSpec(
        "tiny-llama",
        "test entry",
        resolve=lambda: (None, ""),
        edit_defaults={"alphaedit": {"nullspace_threshold": 1e-3, "l2": 4.0}},
    )
    monkeypatch.setitem(registry.REGISTRY, "tiny-llama", spec)
    cfg = default_config("alphaedit", tiny_lm, {"l2": 3.0})
    assert cfg.nullspace_threshold == 1e-3 and cfg.l2 == 3.0
    assert default_config("memit", tiny_lm).layers == default_config("alphaedit", tiny_lm).layers
    assert not hasattr(default_config("memit", tiny_lm), "nullspace_threshold")
