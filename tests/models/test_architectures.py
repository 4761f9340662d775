"""Adapters, hooks and a whole MEMIT edit on tiny random models of every supported family."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from editdecay.editing.config import MemitConfig, StatisticSpec, TargetConfig
from editdecay.editing.keys import compute_keys
from editdecay.editing.memit import memit_edit
from editdecay.models.adapter import adapter_for
from editdecay.models.hooks import edit_output, hidden_of, record, replace_hidden, run_until
from editdecay.models.registry import LoadedModel, fingerprint


class _Block(nn.Module):
    def __init__(self, as_tuple: bool):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.as_tuple = as_tuple

    def forward(self, x):
        y = self.lin(x)
        return (y, "aux") if self.as_tuple else y


class _Net(nn.Module):
    def __init__(self, as_tuple: bool):
        super().__init__()
        self.a, self.b = _Block(as_tuple), _Block(as_tuple)

    def forward(self, x):
        return hidden_of(self.b(hidden_of(self.a(x))))


@pytest.mark.parametrize("as_tuple", [False, True])
def test_hooks_work_for_tensor_and_tuple_outputs(as_tuple):
    torch.manual_seed(0)
    net = _Net(as_tuple)
    x = torch.randn(2, 4)
    with record(net, ["a", "b.lin"], inputs=True, outputs=True) as rec:
        out = net(x)
    assert torch.equal(rec.inputs["a"], x)
    assert torch.allclose(rec.outputs["a"], net.a.lin(x))
    assert torch.allclose(rec.outputs["b.lin"], out)
    with edit_output(net, "a", lambda h: h + 1.0):
        shifted = net(x)
    assert torch.allclose(shifted, net.b.lin(net.a.lin(x) + 1.0))
    assert torch.allclose(net(x), out)  # the hook is gone after the context
    with record(net, ["a"], outputs=True, stop_after="a") as rec:
        run_until(net, x=x)
    assert "a" in rec.outputs
    assert replace_hidden((1, 2), 5) == (5, 2) and replace_hidden(1, 5) == 5


def _tiny(family: str, tok, sliding_window: int = 16):
    from transformers import (
        AutoModelForCausalLM,
        Gemma3TextConfig,
        GPT2Config,
        GPTJConfig,
        LlamaConfig,
        Qwen2Config,
    )

    v = len(tok)
    cfgs = {
        "llama": LlamaConfig(
            vocab_size=v,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
        ),
        "qwen2": Qwen2Config(
            vocab_size=v,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
        ),
        "gemma3_text": Gemma3TextConfig(
            vocab_size=v,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            sliding_window=sliding_window,
        ),
        "gpt2": GPT2Config(vocab_size=v, n_embd=32, n_layer=4, n_head=4, n_positions=256),
        "gptj": GPTJConfig(
            vocab_size=v, n_embd=32, n_layer=4, n_head=4, rotary_dim=4, n_positions=256
        ),
    }
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfgs[family]).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(f"tiny-{family}", model, tok, adapter_for(model), fingerprint(model))


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3_text", "gpt2", "gptj"])
def test_memit_runs_on_every_family(family, tiny_lm, cf_requests, tmp_path, monkeypatch):
    monkeypatch.setenv("EDITDECAY_CACHE", str(tmp_path))
    lm = _tiny(
        family, tiny_lm.tokenizer
    )  # gemma3's 16-token window is narrower than the prefixes: fallback path
    a = lm.adapter
    assert a.family == family and a.n_layers(lm.model) == 4
    d, d_k = a.hidden_dim(lm.model), a.key_dim(lm.model)
    assert d == 32 and d_k in (64, 128)  # GPT-2/GPT-J use 4·d
    keys = compute_keys(lm, cf_requests[:2], ["{}", "Hello. {}"], 1)
    assert keys.shape == (2, d_k) and torch.isfinite(keys).all()

    cfg = MemitConfig(
        layers=(1, 2),
        targets=TargetConfig(steps=4),
        mom2_update_weight=10.0,
        statistic=StatisticSpec(max_tokens=1000, window=64),
    )
    delta = memit_edit(lm, cf_requests[:2], cfg)
    params = dict(lm.model.named_parameters())
    for name, dw in delta.weights.items():
        assert dw.shape == params[name].shape and torch.isfinite(dw).all() and dw.abs().sum() > 0
    with delta.apply(lm.model):
        pass
    assert fingerprint(lm.model) == lm.fingerprint


def test_unknown_family_is_a_clear_error():
    class Cfg:
        model_type = "mamba"

    class M(nn.Module):
        config = Cfg()

    with pytest.raises(ValueError, match="unsupported architecture family 'mamba'"):
        adapter_for(M())


@pytest.mark.parametrize("family", ["qwen2", "gemma3_text", "gpt2", "gptj"])
def test_prefix_reuse_matches_full_recompute_on_every_family(family, tiny_lm, cf_requests):
    from editdecay.editing.targets import optimise_targets

    lm = _tiny(
        family, tiny_lm.tokenizer, sliding_window=128
    )  # wider than every prefix: the cache is reused
    templates = ["{}", "Because of that, many people. {}"]
    z = [
        optimise_targets(lm, cf_requests[:2], templates, 2, TargetConfig(steps=3, reuse_prefix=r)).z
        for r in (True, False)
    ]
    assert torch.allclose(z[0], z[1], rtol=1e-4, atol=1e-5)
    recomputed = optimise_targets(
        lm, cf_requests[:2], templates, 2, TargetConfig(steps=3), replay_lower_blocks=False
    ).z
    assert torch.allclose(z[0], recomputed, rtol=1e-4, atol=1e-5)
