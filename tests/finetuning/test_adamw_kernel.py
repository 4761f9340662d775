"""AdamW's kernel (fused or torch's default): the same training up to rounding, keyed apart."""

from __future__ import annotations

import copy

import pytest
import torch

from editdecay.config_types import ConfigError
from editdecay.data.instructions import load_commonsense
from editdecay.finetuning.tuner import FinetuneConfig, finetune
from editdecay.models.registry import LoadedModel


@pytest.mark.parametrize("method", ["lora", "full"])
def test_fused_and_torch_default_adamw_train_the_same_model(method, tiny_lm):
    examples = load_commonsense("train", tasks=("boolq", "piqa"), n_per_task=8, seed=0)
    runs = {}
    for kernel in ("torch-default", "fused"):
        lm = LoadedModel(
            tiny_lm.name, copy.deepcopy(tiny_lm.model), tiny_lm.tokenizer, tiny_lm.adapter,
            tiny_lm.fingerprint,
        )  # fmt: skip
        cfg = FinetuneConfig(
            method=method, r=4, alpha=8, dropout=0.0, max_steps=5, batch_size=4,
            micro_batch_size=2, cutoff_len=96, warmup_steps=1, weight_decay=0.01, adamw=kernel,
            lr=1e-2 if method != "full" else 1e-3,
        )  # fmt: skip
        res = finetune(lm, examples, cfg)
        runs[kernel] = (res.losses, dict(res.model.named_parameters()))
    (loop_losses, loop_params), (fused_losses, fused_params) = runs["torch-default"], runs["fused"]
    assert fused_losses == pytest.approx(loop_losses, rel=1e-5)
    assert loop_losses[-1] < loop_losses[0]  # it trained at all
    initial = dict(tiny_lm.model.named_parameters())
    moved = 0
    for name, p in loop_params.items():
        if p.requires_grad:
            q = fused_params[name]
            assert (p - q).abs().max() <= 1e-5 * max(p.abs().max(), 1e-8), name
            if name in initial:  # full fine-tuning: the weight left its starting value
                moved += not torch.equal(p.detach(), initial[name].detach())
            elif "lora_B" in name:  # LoRA: B starts at zero
                moved += bool(p.detach().abs().sum() > 0)
    assert moved > 0  # the compared weights are ones that training changed


def test_torch_default_runs_keep_their_keys_and_fused_gets_new_ones():
    assert "adamw" not in FinetuneConfig(adamw="torch-default").to_dict()
    assert FinetuneConfig().to_dict()["adamw"] == "fused"
    for kernel in ("torch-default", "fused"):
        for batching in ("padded", "by-length"):
            cfg = FinetuneConfig(adamw=kernel, batching=batching, lr=1e-3)
            assert FinetuneConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="adamw"):
        FinetuneConfig(adamw="foreach")
