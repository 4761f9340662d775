"""Batching of a step's examples (padded, by length): the same loss, gradients and fine-tuning."""

from __future__ import annotations

import copy

import pytest
import torch

from editdecay.data.instructions import load_commonsense
from editdecay.finetuning.batches import micro_batches, summed_loss
from editdecay.finetuning.tuner import FinetuneConfig, _encode, finetune
from editdecay.models.registry import LoadedModel

BATCHINGS = ("padded", "by-length")


def test_by_length_sorts_a_step_and_padded_keeps_its_order():
    rows = [([1] * n, [1] * n) for n in (90, 10, 35, 60, 96, 20, 41, 5)]
    lengths = {
        b: [[len(r[0]) for r in m] for m in micro_batches(rows, FinetuneConfig(micro_batch_size=3, batching=b))]
        for b in BATCHINGS
    }  # fmt: skip
    assert lengths["padded"] == [[90, 10, 35], [60, 96, 20], [41, 5]]
    assert lengths["by-length"] == [[96, 90, 60], [41, 35, 20], [10, 5]]


def test_every_batching_gives_the_same_loss_and_gradients(tiny_lm):
    examples = load_commonsense("train", tasks=("boolq", "piqa"), n_per_task=6, seed=0)
    rows = [_encode(tiny_lm.tokenizer, ex, FinetuneConfig(cutoff_len=96)) for ex in examples]
    model = copy.deepcopy(tiny_lm.model).train(False).requires_grad_(True)
    results = {}
    for batching in BATCHINGS:
        cfg = FinetuneConfig(micro_batch_size=3, batching=batching)
        model.zero_grad()
        total = sum(
            summed_loss(model, tiny_lm.tokenizer.pad_token_id, m, "fp32", torch.device("cpu"))[0]
            for m in micro_batches(rows, cfg)
        )
        total.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[batching] = (float(total.detach()), grads)
    (loss, grads), (sorted_loss, sorted_grads) = results["padded"], results["by-length"]
    assert sorted_loss == pytest.approx(loss, rel=1e-5)
    assert (sorted_grads - grads).abs().max() <= 1e-4 * grads.abs().max()


@pytest.mark.parametrize("method", ["lora", "full"])
def test_every_batching_follows_the_same_losses_in_fine_tuning(method, tiny_lm):
    examples = load_commonsense("train", tasks=("boolq", "piqa"), n_per_task=8, seed=0)
    losses = {}
    for batching in BATCHINGS:
        lm = LoadedModel(
            tiny_lm.name, copy.deepcopy(tiny_lm.model), tiny_lm.tokenizer, tiny_lm.adapter,
            tiny_lm.fingerprint,
        )  # fmt: skip
        cfg = FinetuneConfig(
            method=method, r=4, alpha=8, dropout=0.0, max_steps=4, batch_size=4,
            micro_batch_size=2, cutoff_len=96, warmup_steps=1, batching=batching,
            lr=1e-2 if method != "full" else 1e-3,
        )  # fmt: skip
        res = finetune(lm, examples, cfg)
        losses[batching] = res.losses
        assert res.tokens == sum(len(_encode(lm.tokenizer, ex, cfg)[0]) for ex in examples)
    assert losses["by-length"] == pytest.approx(losses["padded"], rel=1e-4)


def test_padded_runs_keep_their_keys_and_the_default_gets_new_ones():
    assert "batching" not in FinetuneConfig(batching="padded").to_dict()
    assert FinetuneConfig().to_dict()["batching"] == "by-length"
    with pytest.raises(ValueError, match="batching"):
        FinetuneConfig(batching="packed")
