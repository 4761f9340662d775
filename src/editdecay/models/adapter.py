"""Where things live inside a causal LM, per architecture family.

Editors and tuners never spell module names themselves: they ask an `ArchAdapter`. A family is
recognised from `config.model_type` (never from the model's name), so a fine-tuned Llama, a
SmolLM2 and a Llama-3 checkpoint all share one adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ArchAdapter:
    """Module-name templates for one architecture family. `{}` is the layer index.

    mlp_out: the MLP output projection, the matrix MEMIT-style editors rewrite. Its *input* is
        the key k, its output the value.
    block: the decoder block whose output is the residual stream after layer l.
    final_norm / lm_head: applied to the last hidden state to get logits (the head may be tied
        to the input embedding; we always go through the module, never `named_parameters`).
    layers_path: the ModuleList of blocks (used for depth).
    mlp_out_transposed: True where the projection is a GPT-2 `Conv1D` storing W as (in, out).
    lora_targets: the per-layer linear modules adapters target by default (relative names).
    mlp_post_norm: set where the MLP output is normalised before it joins the residual stream; the
        multi-layer solves then map their residual targets through that norm (memit.through_post_norm).
    """

    family: str
    mlp_out: str
    block: str
    final_norm: str
    lm_head: str
    layers_path: str
    embed: str
    mlp_out_transposed: bool = False
    lora_targets: tuple[str, ...] = ()
    mlp_post_norm: str | None = None  # a norm between the MLP output and the residual (Gemma 2/3)

    def n_layers(self, model: nn.Module) -> int:
        return len(get_module(model, self.layers_path))

    def mlp_out_name(self, layer: int) -> str:
        return self.mlp_out.format(layer)

    def block_name(self, layer: int) -> str:
        return self.block.format(layer)

    def mlp_out_module(self, model: nn.Module, layer: int) -> nn.Module:
        self.check_layer(model, layer)
        return get_module(model, self.mlp_out_name(layer))

    def block_module(self, model: nn.Module, layer: int) -> nn.Module:
        self.check_layer(model, layer)
        return get_module(model, self.block_name(layer))

    def mlp_out_weight_name(self, layer: int) -> str:
        return self.mlp_out_name(layer) + ".weight"

    def key_dim(self, model: nn.Module, layer: int = 0) -> int:
        w = self.mlp_out_module(model, layer).weight
        return w.shape[0] if self.mlp_out_transposed else w.shape[1]

    def hidden_dim(self, model: nn.Module, layer: int = 0) -> int:
        w = self.mlp_out_module(model, layer).weight
        return w.shape[1] if self.mlp_out_transposed else w.shape[0]

    def check_layer(self, model: nn.Module, layer: int) -> None:
        n = self.n_layers(model)
        if not 0 <= layer < n:
            raise ValueError(
                f"layer {layer} is out of range: this {self.family} model has layers 0..{n - 1}"
            )

    def weight_as_out_in(self, weight: torch.Tensor) -> torch.Tensor:
        """View a projection weight as (out, in), the orientation every solve is written in."""
        return weight.T if self.mlp_out_transposed else weight

    def delta_to_param_shape(self, delta_out_in: torch.Tensor) -> torch.Tensor:
        return delta_out_in.T.contiguous() if self.mlp_out_transposed else delta_out_in

    def logits(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """LM-head logits from final-norm'ed hidden states (what the backbone returns)."""
        out = get_module(model, self.lm_head)(hidden)
        cap = getattr(model.config, "final_logit_softcapping", None)
        if cap:
            out = torch.tanh(out / cap) * cap
        return out

    def backbone(self, model: nn.Module) -> nn.Module:
        """The base model returning final-normed hidden states (no LM head)."""
        return model.get_decoder() if hasattr(model, "get_decoder") else model.base_model


_LLAMA_LIKE = dict(
    mlp_out="model.layers.{}.mlp.down_proj",
    block="model.layers.{}",
    final_norm="model.norm",
    lm_head="lm_head",
    layers_path="model.layers",
    embed="model.embed_tokens",
    lora_targets=("q_proj", "k_proj", "v_proj", "up_proj", "down_proj"),
)
_GEMMA_POST_NORM = "model.layers.{}.post_feedforward_layernorm"

ADAPTERS: dict[str, ArchAdapter] = {
    "llama": ArchAdapter(family="llama", **_LLAMA_LIKE),
    "mistral": ArchAdapter(family="mistral", **_LLAMA_LIKE),
    "qwen2": ArchAdapter(family="qwen2", **_LLAMA_LIKE),
    "qwen3": ArchAdapter(family="qwen3", **_LLAMA_LIKE),
    "gemma": ArchAdapter(family="gemma", **_LLAMA_LIKE),
    "gemma2": ArchAdapter(family="gemma2", mlp_post_norm=_GEMMA_POST_NORM, **_LLAMA_LIKE),
    "gemma3_text": ArchAdapter(family="gemma3_text", mlp_post_norm=_GEMMA_POST_NORM, **_LLAMA_LIKE),
    "gpt2": ArchAdapter(
        family="gpt2",
        mlp_out="transformer.h.{}.mlp.c_proj",
        block="transformer.h.{}",
        final_norm="transformer.ln_f",
        lm_head="lm_head",
        layers_path="transformer.h",
        embed="transformer.wte",
        mlp_out_transposed=True,
        lora_targets=("c_attn", "c_proj", "c_fc"),
    ),
    "gptj": ArchAdapter(
        family="gptj",
        mlp_out="transformer.h.{}.mlp.fc_out",
        block="transformer.h.{}",
        final_norm="transformer.ln_f",
        lm_head="lm_head",
        layers_path="transformer.h",
        embed="transformer.wte",
        lora_targets=("q_proj", "k_proj", "v_proj", "fc_in", "fc_out"),
    ),
}


def adapter_for(model: nn.Module) -> ArchAdapter:
    """The adapter for `model`'s family, read from `config.model_type`."""
    model_type = getattr(model.config, "model_type", None)
    if model_type == "gemma3":  # multimodal wrapper config around a gemma3_text decoder
        model_type = "gemma3_text"
    try:
        return ADAPTERS[model_type]
    except KeyError:
        raise ValueError(
            f"unsupported architecture family {model_type!r}; supported: {', '.join(sorted(ADAPTERS))}"
        ) from None


def cache_argument(backbone: nn.Module) -> str:
    """Name of the key/value-cache argument of a backbone's forward (`cache` in newer transformers)."""
    import inspect

    params = inspect.signature(backbone.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def get_module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"module {name!r} not found in {type(model).__name__}") from None


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def model_dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype
