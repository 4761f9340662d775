"""Fine-tuning after editing: LoRA, DoRA (PEFT) or full fine-tuning, on chosen layers.

The paper's recipe (LLM-Adapters / DoRA commonsense setting) is the documented default; CPU runs size
it down with `max_steps` / `n_examples`. The data order is a seeded permutation per epoch, so a base
model and its edited version fine-tuned with the same config see identical batches.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..config_types import ConfigError, build, check_fields
from ..data.instructions import InstructionExample, alpaca_prompt, training_text
from ..data.tokenization import pad_right
from ..integrity import as_json, load_resume_point, remove_resume_point, save_resume_point
from ..models.adapter import model_device
from ..models.registry import LoadedModel
from ..progress import progress
from ..schema import FT_METHODS, FT_NONE, LAYER_CHOICES

log = logging.getLogger(__name__)


FinetuneMethod = Literal[tuple(m for m in FT_METHODS if m != FT_NONE)]
LayerChoice = Literal[LAYER_CHOICES]
Precision = Literal["fp32", "bf16"]
# set per configuration of a study (its ft_method, ft_layers and seed), never in its `finetune` table
RUN_LEVEL_FIELDS = {"method": "ft_method", "layers": "ft_layers", "seed": "seed"}


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run. Defaults are the paper's; `max_steps` caps them for CPU runs."""

    method: FinetuneMethod = field(
        default="lora",
        metadata={"help": "'lora', 'dora' or 'full'", "label": "fine-tuning method"},
    )
    layers: LayerChoice | tuple[int, ...] = field(
        default="all",
        metadata={
            "help": "'all', 'edited' (only the edited layers), 'non-edited', or explicit layer indices",
            "ge": 0,
        },
    )
    r: int = field(default=32, metadata={"help": "adapter rank", "ge": 1})
    alpha: int = field(
        default=64, metadata={"help": "adapter scaling numerator (scale = alpha / r)", "gt": 0}
    )
    dropout: float = field(
        default=0.05, metadata={"help": "adapter dropout probability", "ge": 0, "lt": 1}
    )
    target_modules: tuple[str, ...] | None = field(
        default=None,
        metadata={
            "help": "adapter targets; default: the architecture adapter's (Llama: q, k, v, up, down)"
        },
    )
    lr: float | None = field(
        default=None, metadata={"help": "default 2e-4 for adapters, 5e-6 for full FT", "gt": 0}
    )
    epochs: int = field(default=3, metadata={"help": "passes over the data", "ge": 1})
    max_steps: int | None = field(
        default=None, metadata={"help": "stop after this many optimiser steps", "ge": 1}
    )
    batch_size: int = field(default=16, metadata={"help": "examples per optimiser step", "ge": 1})
    micro_batch_size: int = field(
        default=4, metadata={"help": "examples per forward pass (gradient accumulation)", "ge": 1}
    )
    cutoff_len: int = field(
        default=256, metadata={"help": "tokens kept of each training text", "ge": 1}
    )
    warmup_steps: int = field(
        default=100, metadata={"help": "linear learning-rate warm-up steps", "ge": 0}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay", "ge": 0})
    train_on_inputs: bool = field(
        default=True, metadata={"help": "loss on prompt and answer (the paper's setting)"}
    )
    seed: int = field(
        default=0, metadata={"help": "data order, adapter initialisation and dropout"}
    )
    checkpoint_steps: tuple[int, ...] = field(
        default=(), metadata={"help": "steps at which on_checkpoint runs", "ge": 1}
    )
    precision: Precision = field(
        default="fp32",
        metadata={
            "help": "'fp32', or 'bf16' for bf16 autocast of the forward pass (weights and optimiser stay fp32); "
            "faster only where the CPU/GPU has fast bf16 matmuls (see benchmarks/RESULTS.md)"
        },
    )

    field_noun = "finetune setting"

    def __post_init__(self):
        check_fields(self)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (5e-6 if self.method == "full" else 2e-4)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["learning_rate"] = self.learning_rate
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FinetuneConfig:
        """The config `to_dict` wrote (its derived `learning_rate` is dropped), lists and all."""
        return build(cls, {k: v for k, v in d.items() if k != "learning_rate"})

    @classmethod
    def check_overrides(cls, overrides: dict) -> None:
        """Refuse a study's `finetune` table if a key is unknown, set per configuration instead, or
        of the wrong type or range (the messages name the fields without the table's name)."""
        for key, run_level in RUN_LEVEL_FIELDS.items():
            if key in overrides:
                raise ConfigError(key, f"set it through the configuration's {run_level}")
        build(cls, overrides)


@dataclass
class FinetuneResult:
    model: nn.Module  # the tuned model (a PEFT wrapper for adapters)
    losses: list[float]
    steps: int
    tokens: int
    seconds: float
    layers: list[int]
    trainable_parameters: int

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else math.nan


def select_layers(
    selection: str | Sequence[int], n_layers: int, edited: Sequence[int] = ()
) -> list[int]:
    if isinstance(selection, str):
        if selection == "all":
            return list(range(n_layers))
        if selection in ("edited", "non-edited"):
            if not edited:
                raise ValueError(f"layer selection {selection!r} needs the edited layers")
            chosen = (
                sorted(set(edited))
                if selection == "edited"
                else [l for l in range(n_layers) if l not in edited]
            )
            return chosen
        raise ValueError(
            f"unknown layer selection {selection!r}; use all, edited, non-edited or a list"
        )
    layers = sorted(set(int(l) for l in selection))
    bad = [l for l in layers if not 0 <= l < n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range: the model has layers 0..{n_layers - 1}")
    return layers


def finetune(
    lm: LoadedModel,
    examples: Sequence[InstructionExample],
    cfg: FinetuneConfig,
    edited_layers: Sequence[int] = (),
    on_checkpoint: Callable[[int, nn.Module], None] | None = None,
    snapshot: str | Path | None = None,
    snapshot_every: int = 0,
) -> FinetuneResult:
    """Train `lm.model` in place (adapters are injected into it; full FT changes its weights).

    With `snapshot` set (a directory), the complete training state (trainable weights, optimiser,
    schedule, data order, random generators) is written there as safetensors + JSON every
    `snapshot_every` steps, and a run that finds a snapshot continues from it: an interrupted run
    resumed this way ends bit-identical to an uninterrupted one. The snapshot is deleted when
    training ends; an old torch.save `snapshot.pt` is ignored (with a warning), never loaded.
    """
    if not examples:
        raise ValueError("no fine-tuning examples")
    if cfg.precision not in ("fp32", "bf16"):
        raise ValueError(f"unknown precision {cfg.precision!r}; use fp32 or bf16")
    layers = select_layers(cfg.layers, lm.n_layers, edited_layers)
    torch.manual_seed(cfg.seed)  # adapter initialisation and dropout
    model = _prepare(lm, cfg, layers)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    log.info(
        "%s fine-tuning of layers %s: %d trainable parameters",
        cfg.method,
        _span(layers),
        n_trainable,
    )

    rows = [_encode(lm.tokenizer, ex, cfg) for ex in examples]
    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    total = (
        steps_per_epoch * cfg.epochs
        if cfg.max_steps is None
        else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    )
    opt = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_multiplier(s, total, cfg.warmup_steps)
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    device = model_device(model)
    model.train()
    losses, tokens, step = [], 0, 0
    epoch_order: list[int] = []
    elapsed = 0.0
    snapshot = Path(snapshot) if snapshot is not None else None
    state = _load_snapshot(snapshot, cfg, len(rows)) if snapshot is not None else None
    if state is not None:
        _restore(model, opt, sched, gen, state)
        losses, tokens, step, epoch_order, elapsed = (
            state["losses"],
            state["tokens"],
            state["step"],
            state["epoch_order"],
            state["elapsed"],
        )
        log.info(
            "resuming %s fine-tuning from step %d of %d (%s)", cfg.method, step, total, snapshot
        )
    t0 = time.perf_counter() - elapsed
    bar = progress(range(total), desc=f"{cfg.method} fine-tuning", initial=step)
    it = iter(bar)
    while step < total:
        if not epoch_order:
            epoch_order = torch.randperm(len(rows), generator=gen).tolist()
        batch, epoch_order = epoch_order[: cfg.batch_size], epoch_order[cfg.batch_size :]
        opt.zero_grad(set_to_none=True)
        n_tok = sum(int((torch.tensor(rows[i][1]) != -100).sum()) for i in batch)
        loss_sum = 0.0
        for k in range(0, len(batch), cfg.micro_batch_size):
            micro = [rows[i] for i in batch[k : k + cfg.micro_batch_size]]
            ids, mask = pad_right([m[0] for m in micro], lm.tokenizer.pad_token_id)
            labels = torch.full_like(ids, -100)
            for r, (_, lab) in enumerate(micro):
                labels[r, : len(lab)] = torch.tensor(lab)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                logits = (
                    model(input_ids=ids.to(device), attention_mask=mask.to(device))
                    .logits[:, :-1]
                    .float()
                )
            target = labels[:, 1:].to(device)
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                target.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            ) / max(1, n_tok)
            loss.backward()
            loss_sum += float(loss.detach())
            tokens += int(mask.sum())
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        step += 1
        next(it, None)
        losses.append(loss_sum)
        if on_checkpoint and step in cfg.checkpoint_steps:
            model.eval()
            on_checkpoint(step, model)
            model.train()
        if snapshot is not None and snapshot_every and step % snapshot_every == 0 and step < total:
            _save_snapshot(
                snapshot,
                model,
                opt,
                sched,
                gen,
                cfg,
                len(rows),
                losses,
                tokens,
                step,
                epoch_order,
                time.perf_counter() - t0,
            )
    model.eval()
    if snapshot is not None:
        remove_resume_point(snapshot)
    return FinetuneResult(
        model, losses, step, tokens, time.perf_counter() - t0, layers, n_trainable
    )


def lr_multiplier(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over `warmup` steps to the full rate, then linear decay to zero at `total`
    (the LLM-Adapters schedule); a run shorter than its warm-up only warms up."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def load_finetuned(
    lm: LoadedModel, cfg: FinetuneConfig, layers: Sequence[int], weights: dict[str, torch.Tensor]
) -> nn.Module:
    """Rebuild a fine-tuned model from `trainable_state` output: adapters are re-created with the same
    config, loaded and merged, so the result is a plain model of `lm`'s class (changed in place)."""
    model = _prepare(lm, cfg, list(layers))
    params = dict(model.named_parameters())
    unknown = sorted(set(weights) - set(params))
    if unknown:
        raise ValueError(
            f"fine-tuned weights do not fit this model/config: unknown parameters {unknown[:3]}"
        )
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    if cfg.method != "full":
        model = model.merge_and_unload()
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    return model


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that fine-tuning changes (adapter weights, or the unfrozen weights for full FT)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


# --------------------------------------------------------------------------- resumable snapshots
# A snapshot is a directory written by `integrity.save_resume_point`: the tensors in safetensors, as
# "weights.<name>", "optim.state.<param index>.<key>" and "rng.<generator>"; the rest (optimiser
# param groups and scalars, schedule, Python / numpy generators, progress) in JSON. Loading it
# executes nothing.

_WEIGHTS, _OPTIM_STATE, _RNG = "weights.", "optim.state.", "rng."


def _save_snapshot(
    path: Path,
    model,
    opt,
    sched,
    gen,
    cfg: FinetuneConfig,
    n_examples: int,
    losses,
    tokens,
    step,
    epoch_order,
    elapsed,
) -> None:
    optim_tensors, optim_meta = _flatten_optimizer(opt.state_dict())
    tensors = {
        **{_WEIGHTS + n: t for n, t in trainable_state(model).items()},
        **{_OPTIM_STATE + n: t for n, t in optim_tensors.items()},
        **{_RNG + n: t for n, t in _torch_rng_states(gen, model).items()},
    }
    meta = {
        "config": cfg.to_dict(),
        "n_examples": n_examples,
        "optimizer": optim_meta,
        "scheduler": sched.state_dict(),
        "python_rng": _python_rng_to_json(random.getstate()),
        "numpy_rng": _numpy_rng_to_json(np.random.get_state()),
        "losses": list(losses),
        "tokens": tokens,
        "step": step,
        "epoch_order": list(epoch_order),
        "elapsed": elapsed,
    }
    save_resume_point(path, tensors, meta)


def _load_snapshot(path: Path, cfg: FinetuneConfig, n_examples: int) -> dict | None:
    """The snapshot's state, None when there is none (or only an unusable or old torch.save one)."""
    loaded = load_resume_point(path)
    if loaded is None:
        return None
    tensors, meta = loaded
    if meta["config"] != as_json(cfg.to_dict()) or meta["n_examples"] != n_examples:
        raise ValueError(
            f"snapshot {path} belongs to a different fine-tuning run; delete it to start over"
        )
    return {
        **meta,
        "weights": _with_prefix(tensors, _WEIGHTS),
        "optim_tensors": _with_prefix(tensors, _OPTIM_STATE),
        "rng": _with_prefix(tensors, _RNG),
    }


def _restore(model, opt, sched, gen, state: dict) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["weights"].items():
            params[name].copy_(value)
    opt.load_state_dict(
        _unflatten_optimizer(state["optim_tensors"], state["optimizer"], opt.state_dict())
    )
    sched.load_state_dict(state["scheduler"])
    gen.set_state(state["rng"]["generator"])
    torch.set_rng_state(state["rng"]["torch"])
    device = model_device(model)
    if device.type == "cuda" and "cuda" in state["rng"]:  # dropout draws from the GPU's generator
        torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    random.setstate(_python_rng_from_json(state["python_rng"]))
    np.random.set_state(_numpy_rng_from_json(state["numpy_rng"]))


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {n[len(prefix) :]: t for n, t in tensors.items() if n.startswith(prefix)}


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimiser state dict as tensors named "<param index>.<key>" and JSON for the rest."""
    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "state_scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict, fresh: dict) -> dict:
    """The inverse of `_flatten_optimizer`; `fresh` (the new optimiser's own state dict) gives the
    param groups' tuples back (e.g. AdamW's betas), which JSON turned into lists."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, values in meta["state_scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [
        {k: tuple(v) if isinstance(like.get(k), tuple) else v for k, v in saved.items()}
        for like, saved in zip(fresh["param_groups"], meta["param_groups"], strict=True)
    ]
    return {"state": state, "param_groups": groups}


def _torch_rng_states(gen, model) -> dict[str, torch.Tensor]:
    states = {"generator": gen.get_state(), "torch": torch.get_rng_state()}
    device = model_device(model)
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _python_rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_rng_from_json(state: list) -> tuple:
    version, internal, gauss = state
    return version, tuple(internal), gauss


def _numpy_rng_to_json(state: tuple) -> list:
    name, keys, pos, has_gauss, cached_gaussian = state
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached_gaussian)]


def _numpy_rng_from_json(state: list) -> tuple:
    name, keys, pos, has_gauss, cached_gaussian = state
    return name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian


def _prepare(lm: LoadedModel, cfg: FinetuneConfig, layers: list[int]) -> nn.Module:
    model = lm.model
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.method == "full":
        all_layers = len(layers) == lm.n_layers
        for name, p in model.named_parameters():
            if all_layers or any(name.startswith(lm.adapter.block_name(l) + ".") for l in layers):
                p.requires_grad_(True)
        return model
    if cfg.method not in ("lora", "dora"):
        raise ValueError(f"unknown fine-tuning method {cfg.method!r}; use lora, dora or full")
    from peft import LoraConfig, get_peft_model

    targets = list(cfg.target_modules or lm.adapter.lora_targets)
    pcfg = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets,
        use_dora=cfg.method == "dora",
        layers_to_transform=layers,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, pcfg)


def _encode(tok, ex: InstructionExample, cfg: FinetuneConfig) -> tuple[list[int], list[int]]:
    """Token ids of prompt + answer + EOS (cut at cutoff_len) and their labels (-100 where not trained)."""
    ids = list(tok(training_text(ex))["input_ids"])
    if tok.eos_token_id is not None:
        ids.append(tok.eos_token_id)
    ids = ids[: cfg.cutoff_len]
    labels = list(ids)
    if not cfg.train_on_inputs:
        n_prompt = len(tok(alpaca_prompt(ex))["input_ids"])
        labels[:n_prompt] = [-100] * min(n_prompt, len(labels))
    return ids, labels


def _span(layers: list[int]) -> str:
    return (
        f"{layers[0]}..{layers[-1]} ({len(layers)})"
        if layers == list(range(layers[0], layers[-1] + 1))
        else str(layers)
    )
