"""Fine-tuning after editing: LoRA, DoRA (PEFT) or full fine-tuning, on chosen layers.

The paper's recipe per method (PAPER §2.4, :data:`RECIPES`, :meth:`FinetuneConfig.recipe_for`) is
written in one place; the field defaults are the adapter recipe, and CPU runs size it down with
`max_steps` / `n_examples`. The data order is a seeded permutation per epoch, so a base model and
its edited version fine-tuned with the same config see identical batches.

Two seeds: `data_seed` draws the data (the study's sample and the validation split held out of
it), `seed` the order, the adapter initialisation and dropout; `data_seed=None` is `seed`.
With `validation_examples` > 0 the validation loss is computed at every checkpoint step, every
`validation_every` steps and at the end; `select_best` makes the final model the checkpoint with
the lowest validation loss (the paper's "best checkpoint by val loss kept").
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..data.instructions import InstructionExample, alpaca_prompt, training_text
from ..integrity import remove_resume_point
from ..models.adapter import model_device
from ..models.registry import LoadedModel
from ..progress import progress
from .batches import micro_batches, summed_loss, trained_tokens
from .config import (  # noqa: F401  (re-exported: the import path others use)
    OMITTED_AT_DEFAULT,
    RECIPES,
    RUN_LEVEL_FIELDS,
    FinetuneConfig,
    FinetuneMethod,
    LayerChoice,
    Precision,
)
from .preserve import Preservation
from .snapshot import load_snapshot, restore, save_snapshot, trainable_state

log = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    model: nn.Module  # the tuned model (a PEFT wrapper for adapters)
    losses: list[float]
    steps: int
    tokens: int
    seconds: float
    layers: list[int]
    trainable_parameters: int
    validation: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss)
    best_step: int | None = None  # the step whose weights the model holds when select_best

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


def split_validation(examples: Sequence, n_validation: int, seed: int) -> tuple[list, list]:
    """(training, validation): `n_validation` examples drawn with `seed`, held out; order kept."""
    if n_validation <= 0:
        return list(examples), []
    if n_validation >= len(examples):
        raise ValueError(
            f"validation_examples={n_validation} leaves no training data of {len(examples)}"
        )
    held = set(
        torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))[
            :n_validation
        ].tolist()
    )
    train = [ex for i, ex in enumerate(examples) if i not in held]
    return train, [ex for i, ex in enumerate(examples) if i in held]


def planned_steps(cfg: FinetuneConfig, n_examples: int) -> int:
    """The optimiser steps `finetune` takes on `n_examples` examples (validation ones included)."""
    n_train = n_examples - cfg.validation_examples
    total = math.ceil(max(0, n_train) / cfg.batch_size) * cfg.epochs
    return total if cfg.max_steps is None else min(cfg.max_steps, total)


class _Training:
    """The state that a snapshot saves and restores, beside the model, optimiser and generators."""

    def __init__(self):
        self.losses: list[float] = []
        self.tokens = 0
        self.step = 0
        self.epoch_order: list[int] = []
        self.elapsed = 0.0
        self.validation: list[tuple[int, float]] = []
        self.best: dict[str, torch.Tensor] = {}

    def restore(self, state: dict) -> None:
        for name in ("losses", "tokens", "step", "epoch_order", "elapsed", "validation", "best"):
            setattr(self, name, state[name])

    @property
    def best_step(self) -> int | None:
        return min(self.validation, key=lambda v: v[1])[0] if self.validation else None


def finetune(
    lm: LoadedModel,
    examples: Sequence[InstructionExample],
    cfg: FinetuneConfig,
    edited_layers: Sequence[int] = (),
    on_checkpoint: Callable[[int, nn.Module], None] | None = None,
    snapshot: str | Path | None = None,
    snapshot_every: int = 0,
    preserve: Preservation | None = None,
) -> FinetuneResult:
    """Train `lm.model` in place (adapters are injected into it; full FT changes its weights).

    `cfg.validation_examples` of `examples` are held out (seeded by `cfg.split_seed`) and scored
    at every checkpoint step, every `cfg.validation_every` steps and at the end; with
    `cfg.select_best` the returned model holds the weights of the lowest-loss one.

    With `snapshot` set (a directory), the complete training state (trainable weights, optimiser,
    schedule, data order, random generators, validation so far) is written there as safetensors +
    JSON every `snapshot_every` steps, and a run that finds a snapshot continues from it: an
    interrupted run resumed this way ends bit-identical to an uninterrupted one. The snapshot is
    deleted when training ends; an old torch.save `snapshot.pt` is ignored (with a warning).

    `preserve` (finetuning/preserve.py) protects the edits the model carries: it may add training
    examples, drop layers, add a loss term and project the weights after every step.
    """
    if not examples:
        raise ValueError("no fine-tuning examples")
    if cfg.precision not in ("fp32", "bf16"):
        raise ValueError(f"unknown precision {cfg.precision!r}; use fp32 or bf16")
    train, held_out = split_validation(examples, cfg.validation_examples, cfg.split_seed)
    layers = select_layers(cfg.layers, lm.n_layers, edited_layers)
    if preserve is not None:
        train = preserve.training_examples(train)
        layers = preserve.layers(layers)
    torch.manual_seed(cfg.seed)  # adapter initialisation and dropout
    model = _prepare(lm, cfg, layers)
    if preserve is not None:
        preserve.attach(lm, model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    log.info(
        "%s fine-tuning of layers %s: %d trainable parameters, %d training and %d validation examples",
        cfg.method,
        _span(layers),
        n_trainable,
        len(train),
        len(held_out),
    )
    rows = [_encode(lm.tokenizer, ex, cfg) for ex in train]
    val_rows = [_encode(lm.tokenizer, ex, cfg) for ex in held_out]
    total = planned_steps(cfg, len(train) + len(held_out))
    opt = torch.optim.AdamW(
        trainable,
        lr=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        **({"fused": True} if cfg.adamw == "fused" else {}),
    )
    warmup = cfg.warmup_for(total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, total, warmup))
    gen = torch.Generator().manual_seed(cfg.seed)
    device = model_device(model)
    model.train()
    run = _Training()
    snapshot = Path(snapshot) if snapshot is not None else None
    state = load_snapshot(snapshot, cfg, len(rows)) if snapshot is not None else None
    if state is not None:
        restore(model, opt, sched, gen, state)
        run.restore(state)
        log.info(
            "resuming %s fine-tuning from step %d of %d (%s)", cfg.method, run.step, total, snapshot
        )
    t0 = time.perf_counter() - run.elapsed
    it = iter(progress(range(total), desc=f"{cfg.method} fine-tuning", initial=run.step))
    while run.step < total:
        if not run.epoch_order:
            run.epoch_order = torch.randperm(len(rows), generator=gen).tolist()
        batch = run.epoch_order[: cfg.batch_size]
        run.epoch_order = run.epoch_order[cfg.batch_size :]
        opt.zero_grad(set_to_none=True)
        loss, n_tokens = _batch_loss(model, lm.tokenizer, [rows[i] for i in batch], cfg, device)
        run.tokens += n_tokens
        if preserve is not None:
            preserve.penalty(model, run.step)
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        if preserve is not None:
            preserve.after_step(model)
        run.step += 1
        next(it, None)
        run.losses.append(loss)
        if on_checkpoint and run.step in cfg.checkpoint_steps:
            model.eval()
            on_checkpoint(run.step, model)
            model.train()
        if val_rows and _validates_at(run.step, total, cfg):
            _validate(model, lm.tokenizer, val_rows, cfg, device, run)
        if (
            snapshot is not None
            and snapshot_every
            and run.step % snapshot_every == 0
            and run.step < total
        ):
            save_snapshot(
                snapshot, model, opt, sched, gen, cfg, len(rows), run.losses, run.tokens,
                run.step, run.epoch_order, time.perf_counter() - t0, run.validation, run.best,
            )  # fmt: skip
    model.eval()
    best_step = run.best_step if cfg.select_best else None
    if best_step is not None and run.best:
        _load_trainable(model, run.best)
        log.info("kept step %d, the lowest validation loss", best_step)
    if snapshot is not None:
        remove_resume_point(snapshot)
    return FinetuneResult(
        model, run.losses, run.step, run.tokens, time.perf_counter() - t0, layers, n_trainable,
        run.validation, best_step,
    )  # fmt: skip


def _batch_loss(model, tok, batch: list, cfg: FinetuneConfig, device) -> tuple[float, int]:
    """Backpropagate the mean token loss of one optimiser step's examples, one forward pass per
    micro-batch (batches.py); returns the loss and the tokens (padding excluded) that went through."""
    n_tok = sum(int((torch.tensor(lab) != -100).sum()) for _, lab in batch)
    loss_sum, tokens = 0.0, 0
    for micro in micro_batches(batch, cfg):
        summed, n_in = summed_loss(model, tok.pad_token_id, micro, cfg.precision, device)
        loss = summed / max(1, n_tok)
        loss.backward()
        loss_sum += float(loss.detach())
        tokens += n_in
    return loss_sum, tokens


def _validates_at(step: int, total: int, cfg: FinetuneConfig) -> bool:
    every = cfg.validation_every and step % cfg.validation_every == 0
    return bool(every) or step in cfg.checkpoint_steps or step == total


@torch.no_grad()
def validation_loss(model, tok, rows: list, cfg: FinetuneConfig, device) -> float:
    """Mean token loss over the validation rows (dropout off; no generator is drawn from)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for micro in micro_batches(rows, cfg):
        loss, _ = summed_loss(model, tok.pad_token_id, micro, cfg.precision, device)
        total += float(loss)
        count += trained_tokens(micro)
    model.train(was_training)
    return total / max(1, count)


def _validate(model, tok, val_rows: list, cfg: FinetuneConfig, device, run: _Training) -> None:
    loss = validation_loss(model, tok, val_rows, cfg, device)
    run.validation.append((run.step, loss))
    log.info("step %d: validation loss %.4f", run.step, loss)
    if cfg.select_best and run.best_step == run.step:
        run.best = {n: t.to("cpu") for n, t in trainable_state(model).items()}


def _load_trainable(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)


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
