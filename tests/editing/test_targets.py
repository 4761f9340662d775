"""Optimisation of the target residuals z (MEMIT §1.4) on the tiny model.

z is optimised at layer 2, not at the last layer (3): a change to the last block's output at the
subject token cannot reach the later target positions (no attention layer follows), so there the
target NLL is flat in δ (see test_z_at_the_last_layer_cannot_move_the_target).
"""

from __future__ import annotations

import pytest
import torch

from editdecay.editing.config import TargetConfig, TemplateConfig
from editdecay.editing.keys import current_residual
from editdecay.editing.targets import optimise_targets
from editdecay.editing.templates import context_templates

Z_LAYER = 2
CFG = TargetConfig(steps=6, lr=0.5)


def _rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).norm(dim=-1) / b.norm(dim=-1)


@pytest.fixture(scope="module")
def requests3(cf_requests):
    # counterfact:4 has the one-token subject "Lyon": its KL prompt "Lyon is a" has its subject at
    # position 0, so with reuse_prefix that row has an empty (fully masked) prefix.
    return cf_requests[:3]


@pytest.fixture(scope="module")
def templates(tiny_lm):
    t = context_templates(tiny_lm, TemplateConfig(seed_words=("The", "Because"), length=4))
    assert t[0] == "{}" and len(t) == 3 and all(x.endswith(". {}") for x in t[1:])
    return t


@pytest.fixture(scope="module")
def joint(tiny_lm, requests3, templates):
    return optimise_targets(tiny_lm, requests3, templates, Z_LAYER, CFG)


@pytest.fixture(scope="module")
def initial(tiny_lm, requests3, templates):
    """steps=1: no update is made, final_nll is the loss at step 0."""
    return optimise_targets(tiny_lm, requests3, templates, Z_LAYER, TargetConfig(steps=1, lr=0.5))


def test_result_shapes(joint):
    assert joint.z.shape == (3, 64) and joint.h_init.shape == (3, 64)
    assert len(joint.delta_norm) == len(joint.final_nll) == len(joint.steps) == 3
    assert joint.steps == [CFG.steps - 1] * 3  # the last step only evaluates; nothing stopped early
    torch.testing.assert_close(
        (joint.z - joint.h_init).norm(dim=-1), torch.tensor(joint.delta_norm)
    )


def test_one_step_makes_no_update(initial):
    assert initial.steps == [0, 0, 0]
    assert initial.delta_norm == [0.0, 0.0, 0.0]
    assert torch.equal(initial.z, initial.h_init)


def test_h_init_is_the_block_output_at_the_subjects_last_token(tiny_lm, requests3, joint, initial):
    h = current_residual(tiny_lm, requests3, Z_LAYER)
    torch.testing.assert_close(joint.h_init, h.cpu(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(initial.h_init, joint.h_init, rtol=0, atol=0)


def test_final_nll_is_below_the_initial_nll(joint, initial):
    for before, after in zip(initial.final_nll, joint.final_nll):
        assert after < before - 1e-3, (before, after)


def test_reusing_the_prefix_gives_the_same_z(tiny_lm, requests3, templates, joint):
    full = optimise_targets(
        tiny_lm, requests3, templates, Z_LAYER, TargetConfig(steps=6, lr=0.5, reuse_prefix=False)
    )
    assert (_rel(full.z, joint.z) < 1e-4).all(), _rel(full.z, joint.z)
    assert (_rel(full.h_init, joint.h_init) < 1e-5).all()
    for a, b in zip(full.final_nll, joint.final_nll):
        assert abs(a - b) < 1e-4
    assert full.steps == joint.steps


@pytest.mark.parametrize("reuse_prefix", [True, False])
def test_replaying_the_lower_blocks_gives_the_same_z(tiny_lm, requests3, templates, reuse_prefix):
    """The blocks up to z_layer run once; with an early stop that ends requests at different steps,
    the later steps replay a subset of the recorded rows."""
    cfg = TargetConfig(steps=8, lr=0.5, reuse_prefix=reuse_prefix, early_stop_loss=10.6)
    replayed, recomputed = (
        optimise_targets(tiny_lm, requests3, templates, Z_LAYER, cfg, replay_lower_blocks=r)
        for r in (True, False)
    )
    assert len(set(replayed.steps)) > 1, replayed.steps  # requests did stop at different steps
    assert replayed.steps == recomputed.steps
    assert (_rel(replayed.z, recomputed.z) < 1e-5).all(), _rel(replayed.z, recomputed.z)
    for a, b in zip(replayed.final_nll, recomputed.final_nll):
        assert a == pytest.approx(b, abs=1e-5)


def _mlp_calls(tiny_lm, layer: int, steps: int, replay: bool = True, **kw) -> int:
    calls = []
    mlp = tiny_lm.model.get_submodule(f"model.layers.{layer}.mlp")
    handle = mlp.register_forward_hook(lambda *a: calls.append(1))
    try:
        optimise_targets(
            lm=tiny_lm, cfg=TargetConfig(steps=steps, lr=0.5), replay_lower_blocks=replay, **kw
        )
    finally:
        handle.remove()
    return len(calls)


def _calls_per_step(tiny_lm, layer: int, **kw) -> tuple[int, int]:
    """(calls of the first step, prefix cache included; calls of every later step), all recomputed."""
    one = _mlp_calls(tiny_lm, layer, 1, replay=False, **kw)
    per_step = _mlp_calls(tiny_lm, layer, 2, replay=False, **kw) - one
    assert per_step > 0
    return one, per_step


def test_the_lower_blocks_run_at_the_first_step_only(tiny_lm, requests3, templates):
    kw = dict(requests=requests3, templates=templates, at=Z_LAYER)
    first, later = _calls_per_step(tiny_lm, 0, **kw)
    assert _mlp_calls(tiny_lm, 0, 6, **kw) == first  # block 0: every later step replayed
    assert _mlp_calls(tiny_lm, 0, 6, replay=False, **kw) == first + 5 * later
    first, later = _calls_per_step(tiny_lm, Z_LAYER + 1, **kw)
    assert _mlp_calls(tiny_lm, Z_LAYER + 1, 6, **kw) == first + 5 * later  # above z: every step


def test_a_shift_inside_a_block_replays_only_the_blocks_before_it(tiny_lm, requests3, templates):
    """ROME shifts the MLP output of block 2: block 2 itself must run every step, blocks 0-1 once."""
    module = tiny_lm.adapter.mlp_out_name(Z_LAYER)
    kw = dict(requests=requests3, templates=templates, at=module)
    first, _ = _calls_per_step(tiny_lm, 1, **kw)
    assert _mlp_calls(tiny_lm, 1, 6, **kw) == first
    first, later = _calls_per_step(tiny_lm, Z_LAYER, **kw)
    assert _mlp_calls(tiny_lm, Z_LAYER, 6, **kw) == first + 5 * later
    replayed, recomputed = (
        optimise_targets(tiny_lm, requests3, templates, module, CFG, replay_lower_blocks=r)
        for r in (True, False)
    )
    assert (_rel(replayed.z, recomputed.z) < 1e-5).all()


@pytest.mark.parametrize("index", [0, 2])
def test_a_requests_z_does_not_depend_on_its_batch(tiny_lm, requests3, templates, joint, index):
    alone = optimise_targets(tiny_lm, [requests3[index]], templates, Z_LAYER, CFG)
    assert float(_rel(alone.z[0], joint.z[index])) < 1e-4
    assert abs(alone.final_nll[0] - joint.final_nll[index]) < 1e-4


def test_chunked_batches_give_the_same_z(tiny_lm, requests3, templates, joint):
    chunked = optimise_targets(
        tiny_lm, requests3, templates, Z_LAYER, TargetConfig(steps=6, lr=0.5, batch_requests=2)
    )
    assert (_rel(chunked.z, joint.z) < 1e-4).all()


def test_delta_is_clamped_to_a_multiple_of_h_init(tiny_lm, requests3, templates):
    res = optimise_targets(
        tiny_lm, requests3, templates, Z_LAYER, TargetConfig(steps=6, lr=5.0, clamp_norm_factor=0.5)
    )
    limits = 0.5 * res.h_init.norm(dim=-1)
    norms = torch.tensor(res.delta_norm)
    assert (norms <= limits * (1 + 1e-5)).all()
    assert (norms >= limits * (1 - 1e-3)).all()  # with this learning rate the clamp is reached


def test_early_stop_freezes_a_request_at_its_current_delta(tiny_lm, requests3, templates):
    res = optimise_targets(
        tiny_lm, requests3, templates, Z_LAYER, TargetConfig(steps=6, lr=0.5, early_stop_loss=1e9)
    )
    assert res.steps == [0, 0, 0]
    assert torch.equal(res.z, res.h_init)


def test_no_hook_or_replayed_forward_is_left_behind(tiny_lm, joint):
    for layer in range(Z_LAYER + 1):
        block = tiny_lm.model.get_submodule(f"model.layers.{layer}")
        assert len(block._forward_hooks) == 0
        assert "forward" not in block.__dict__


def test_layer_out_of_range_raises(tiny_lm, requests3, templates):
    with pytest.raises(ValueError, match="out of range"):
        optimise_targets(tiny_lm, requests3, templates, 4, CFG)


def test_z_at_the_last_layer_cannot_move_the_target(tiny_lm, requests3, templates):
    """Why the tests above use layer 2: at the last layer the target NLL does not depend on δ."""
    before = optimise_targets(tiny_lm, requests3, templates, 3, TargetConfig(steps=1))
    after = optimise_targets(tiny_lm, requests3, templates, 3, TargetConfig(steps=6))
    for a, b in zip(before.final_nll, after.final_nll):
        assert a == pytest.approx(b, abs=1e-5)


def test_a_request_read_at_the_start_gets_no_context_template(tiny_lm, requests3, templates):
    """`at_start`: keys and target rows use the plain prompt in every template slot, so the key
    equals the plain prompt's and the optimisation matches one over the plain template alone."""
    from dataclasses import replace

    from editdecay.editing.keys import compute_keys, keyed_prompts

    anchored = replace(requests3[0], at_start=True)
    filled = keyed_prompts([anchored], templates)
    assert {f.text for f in filled} == {anchored.text}
    plain_key = compute_keys(tiny_lm, [requests3[0]], ["{}"], Z_LAYER)
    torch.testing.assert_close(compute_keys(tiny_lm, [anchored], templates, Z_LAYER), plain_key)
    assert not torch.allclose(compute_keys(tiny_lm, [requests3[0]], templates, Z_LAYER), plain_key)
    alone = optimise_targets(tiny_lm, [requests3[0]], ["{}"], Z_LAYER, CFG)
    torch.testing.assert_close(
        optimise_targets(tiny_lm, [anchored], templates, Z_LAYER, CFG).z,
        alone.z,
        atol=1e-5,
        rtol=1e-4,
    )
