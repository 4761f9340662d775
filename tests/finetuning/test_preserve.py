"""Edit-preserving fine-tuning on the tiny model: the projected update has no component in the
protected key subspace (LoRA and full), the activation term holds the edited outputs closer than
plain fine-tuning, distill holds the edits' answers closer than plain fine-tuning and its KL is
zero at the start and a lower bound of the full KL, freeze drops the edited layers, paraphrase adds
the edits as examples."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from editdecay.config_types import ConfigError
from editdecay.data.instructions import load_commonsense
from editdecay.data.tokenization import encode_continuation, fill
from editdecay.editing.delta import EditDelta
from editdecay.editing.keys import read_at_subject
from editdecay.finetuning.preserve import (
    DISTILL_TOP_K,
    PRESERVE_MODES,
    PRESERVERS,
    PreserveConfig,
    ProtectedEdits,
    _bins,
    _log_rest,
    make_preservation,
    protected_basis,
)
from editdecay.finetuning.tuner import FinetuneConfig, finetune, load_finetuned, trainable_state
from editdecay.models.registry import LoadedModel

MODULE = "model.layers.2.mlp.down_proj"
TEMPLATES = ["{}", "The weather is fine. {}"]


@pytest.fixture()
def factory(tiny_lm):
    """Fresh copies of the tiny model (fine-tuning changes the one it is given)."""

    def make() -> LoadedModel:
        model = copy.deepcopy(tiny_lm.model)
        return LoadedModel(
            tiny_lm.name, model, tiny_lm.tokenizer, tiny_lm.adapter, tiny_lm.fingerprint
        )

    return make


@pytest.fixture(scope="module")
def examples():
    return load_commonsense("train", tasks=("boolq", "piqa"), n_per_task=8, seed=0)


@pytest.fixture()
def edits(tiny_lm, cf_requests):
    weight = dict(tiny_lm.model.named_parameters())[MODULE + ".weight"]
    delta = EditDelta(
        weights={MODULE + ".weight": torch.zeros_like(weight)},
        method="memit",
        config={"layers": [2]},
        request_ids=[r.case_id for r in cf_requests],
        model_fingerprint=tiny_lm.fingerprint,
        info={"context_templates": TEMPLATES},
    )
    return ProtectedEdits.from_delta(delta, cf_requests)


def _cfg(method: str, preserve: str = "none", **preserve_settings) -> FinetuneConfig:
    return FinetuneConfig(
        method=method,
        r=4,
        alpha=8,
        max_steps=6,
        batch_size=4,
        micro_batch_size=2,
        cutoff_len=96,
        warmup_steps=1,
        lr=1e-2 if method != "full" else 1e-3,
        preserve=PreserveConfig(mode=preserve, **preserve_settings),
    )


def _keys(lm, edits) -> torch.Tensor:
    prompts = [fill(r.prompt, r.subject, t) for r in edits.requests for t in TEMPLATES]
    return read_at_subject(lm, prompts, MODULE, inputs=True)


def _delta_w(fresh_lm_factory, examples, cfg, edits) -> torch.Tensor:
    lm = fresh_lm_factory()
    before = lm.model.get_submodule(MODULE).weight.detach().clone()
    res = finetune(lm, examples, cfg, (2,), preserve=make_preservation(cfg.preserve, edits))
    weights = trainable_state(res.model)
    rebuilt = fresh_lm_factory()
    model = load_finetuned(rebuilt, cfg, res.layers, weights)
    return model.get_submodule(MODULE).weight.detach() - before


@pytest.mark.parametrize("method", ["lora", "full"])
def test_subspace_update_has_no_component_on_the_edit_keys(method, factory, examples, edits):
    keys = _keys(factory(), edits)
    exact = {"energy": 1.0, "max_rank_share": 1.0}
    plain = _delta_w(factory, examples, _cfg(method), edits)
    kept = _delta_w(factory, examples, _cfg(method, "subspace", **exact), edits)
    on_keys = lambda dw: float((keys @ dw.T).norm() / (keys.norm() * dw.norm()))  # noqa: E731
    assert kept.norm() > 0, "the projected update must still change the module"
    assert on_keys(plain) > 1e-3  # plain fine-tuning moves the edited keys' outputs
    assert on_keys(kept) < 1e-5
    # every direction orthogonal to the keys is still free: the update is not projected to zero there
    basis = protected_basis(keys, 1.0, keys.shape[1])
    free = kept - (kept @ basis) @ basis.T
    assert torch.allclose(free, kept, atol=1e-6)


def test_activation_term_holds_the_edited_outputs(factory, examples, edits):
    def change(cfg) -> float:
        lm = factory()
        prompts = [fill(r.prompt, r.subject) for r in edits.requests]
        before = read_at_subject(lm, prompts, MODULE, inputs=False)
        res = finetune(lm, examples, cfg, (2,), preserve=make_preservation(cfg.preserve, edits))
        rebuilt = factory()
        model = load_finetuned(rebuilt, cfg, res.layers, trainable_state(res.model))
        tuned = LoadedModel(rebuilt.name, model, rebuilt.tokenizer, rebuilt.adapter, "tuned")
        after = read_at_subject(tuned, prompts, MODULE, inputs=False)
        return float((after - before).norm() / before.norm())

    plain = change(_cfg("lora"))
    held = change(_cfg("lora", "activation", weight=100.0, prompts_per_step=4))
    assert held < 0.5 * plain, (plain, held)


def _target_log_probs(lm, requests) -> torch.Tensor:
    """log p(target token) at every target position of the rewrite prompts, teacher-forced."""
    out = []
    with torch.no_grad():
        for r in requests:
            c = encode_continuation(lm.tokenizer, r.text, r.target_new)
            ids = torch.tensor([[*c.prompt_ids, *c.target_ids]])
            logp = torch.log_softmax(lm.model(input_ids=ids).logits[0].float(), -1)
            start = len(c.prompt_ids) - 1
            out.append(logp[start : start + len(c.target_ids)].gather(
                -1, torch.tensor(c.target_ids)[:, None]
            ).flatten())  # fmt: skip
    return torch.cat(out)


def test_distill_term_holds_the_edits_answers(factory, examples, edits):
    def change(cfg) -> float:
        lm = factory()
        before = _target_log_probs(lm, edits.requests)
        res = finetune(lm, examples, cfg, (2,), preserve=make_preservation(cfg.preserve, edits))
        rebuilt = factory()
        model = load_finetuned(rebuilt, cfg, res.layers, trainable_state(res.model))
        tuned = LoadedModel(rebuilt.name, model.eval(), rebuilt.tokenizer, rebuilt.adapter, "t")
        return float((_target_log_probs(tuned, edits.requests) - before).abs().mean())

    # λ is large because the tiny random model's next-token distribution is nearly flat (its top 64
    # tokens hold about 0.2 % of the mass), so the KL and its gradient are small; at λ = 100 the
    # answers moved 0.049 against 0.077 under LoRA, at 1000 0.014 against 0.077
    for method in ("lora", "full"):
        plain = change(_cfg(method))
        held = change(_cfg(method, "distill", weight=1000.0, prompts_per_step=4))
        assert plain > 1e-3, method  # plain fine-tuning moves the answers at all
        assert held < 0.5 * plain, (method, plain, held)


def test_distill_kl_is_zero_unchanged_and_a_lower_bound_of_the_full_kl(factory, edits):
    lm = factory()
    lm.model.eval().requires_grad_(True)
    preservation = make_preservation(PreserveConfig(mode="distill", prompts_per_step=3), edits)
    preservation.attach(lm, lm.model)
    assert preservation.ref_index.shape[-1] == DISTILL_TOP_K
    assert preservation.penalty(lm.model, 0) == pytest.approx(0.0, abs=1e-6)
    reference = preservation._log_probs(range(3)).detach()
    with torch.no_grad():
        for p in lm.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    lm.model.zero_grad()
    coarse = preservation.penalty(lm.model, 0)  # rows 0, 1, 2 at step 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lm.model.parameters())
    with torch.no_grad():
        logq = preservation._log_probs(range(3))
        full = float((reference.exp() * (reference - logq)).sum(-1).mean())
    assert 0 < coarse <= full + 1e-6


def test_freeze_drops_the_edited_layers(factory, examples, edits):
    cfg = _cfg("lora", "freeze")
    preserve = make_preservation(cfg.preserve, edits)
    res = finetune(factory(), examples, cfg, (2,), preserve=preserve)
    assert res.layers == [0, 1, 3]
    with pytest.raises(ConfigError, match="no layer to fine-tune"):
        finetune(factory(), examples, replace(cfg, layers=(2,)), (2,), preserve=preserve)


def test_paraphrase_adds_the_edits_to_the_training_data(edits, examples):
    preservation = make_preservation(PreserveConfig(mode="paraphrase", paraphrases=2), edits)
    out = preservation.training_examples(list(examples))
    added = out[len(examples) :]
    assert out[: len(examples)] == list(examples)
    assert len(added) == 2 * len(edits.requests)
    for request, example in zip([r for r in edits.requests for _ in range(2)], added, strict=True):
        assert request.target_new in example.output
        assert request.subject in example.instruction + example.input + example.output
        for paraphrase in request.paraphrases:  # the held-out PS prompts are never trained on
            assert paraphrase not in example.instruction + example.input + example.output


def test_paraphrase_examples_are_trained_on(factory, examples, edits):
    cfg = replace(_cfg("lora", "paraphrase", paraphrases=3), max_steps=None, epochs=1)
    res = finetune(factory(), examples, cfg, (2,), preserve=make_preservation(cfg.preserve, edits))
    assert res.steps == -(-(len(examples) + 3 * len(edits.requests)) // cfg.batch_size)


def test_protected_edits_from_a_delta(edits, cf_requests):
    assert edits.modules == [MODULE] and edits.layers == [2]
    assert edits.context_templates == TEMPLATES[1:]
    delta = EditDelta({MODULE + ".weight": torch.zeros(1)}, "memit", {}, [], "fp")
    assert ProtectedEdits.from_delta(delta, cf_requests).layers == [2]  # read from the names
    with pytest.raises(ValueError, match="needs the edit requests"):
        ProtectedEdits.from_delta(delta, [])


def test_registry_and_config():
    assert set(PRESERVERS) == set(PRESERVE_MODES)
    assert make_preservation(PreserveConfig(), None) is None
    with pytest.raises(ConfigError, match="needs the edits"):
        make_preservation(PreserveConfig(mode="subspace"), None)
    with pytest.raises(ConfigError, match="mode"):
        PreserveConfig(mode="scrub")
    with pytest.raises(ConfigError, match="energy"):
        PreserveConfig(energy=1.5)
    with pytest.raises(ConfigError, match="preserve.mode"):
        FinetuneConfig.check_overrides({"preserve": {"mode": "subspace"}})
    cfg = FinetuneConfig.from_dict({"preserve": {"mode": "freeze"}})
    assert cfg.preserve.mode == "freeze" and "preserve" in cfg.to_dict()
    assert "preserve" not in FinetuneConfig().to_dict()  # plain runs keep their stage keys


def test_protected_basis_rank_follows_energy_and_cap():
    gen = torch.Generator().manual_seed(0)
    keys = torch.randn(20, 3, generator=gen) @ torch.randn(3, 16, generator=gen)  # rank 3
    keys = keys + 1e-4 * torch.randn(20, 16, generator=gen)
    assert protected_basis(keys, 0.999999, 16).shape == (16, 3)
    assert protected_basis(keys, 1.0, 16).shape[1] > 3
    assert protected_basis(keys, 1.0, 2).shape == (16, 2)
    basis = protected_basis(keys, 1.0, 16)
    assert torch.allclose(basis.T @ basis, torch.eye(basis.shape[1]), atol=1e-5)


def test_distill_bins_always_hold_the_answer_token():
    logp = torch.log_softmax(torch.randn(3, 500), dim=-1)
    top = logp.topk(DISTILL_TOP_K, dim=-1).indices
    outside = logp.argsort(dim=-1)[0, 0]  # the least likely token of row 0: not in its top K
    answer = torch.stack([outside, top[1, 3], top[2, 0]])
    index = _bins(logp, answer)
    assert index.shape == (3, DISTILL_TOP_K)
    assert all(int(answer[i]) in index[i].tolist() for i in range(3))
    assert index[0, -1] == outside and torch.equal(index[0, :-1], top[0, :-1])
    assert torch.equal(index[1:], top[1:])  # rows whose answer is already kept are unchanged
    assert all(len(set(row.tolist())) == DISTILL_TOP_K for row in index)


def test_distill_bins_leave_a_rest_bucket_on_a_vocabulary_smaller_than_k():
    logp = torch.log_softmax(torch.randn(2, 10), dim=-1)
    answer = logp.argsort(dim=-1)[:, 0]  # each row's least likely token
    index = _bins(logp, answer)
    assert index.shape == (2, 9)
    assert all(int(answer[i]) in index[i].tolist() for i in range(2))
    rest = _log_rest(logp, index)
    assert torch.isfinite(rest).all()  # one token left outside: its own log-probability
    assert torch.allclose(rest.exp() + logp.gather(-1, index).exp().sum(-1), torch.ones(2))
