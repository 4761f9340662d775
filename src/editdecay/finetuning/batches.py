"""How one optimiser step's examples go through the model (`FinetuneConfig.batching`).

`padded`: `micro_batch_size` examples per forward pass in the step's drawn order, right-padded to
the longest, so the compute spent on padding grows with the spread of lengths.

`by-length` (the default): the step's examples sorted by length first, so that examples of similar
length share a forward pass and little padding is computed.

Either way a step's loss is the sum of its examples' token losses divided by the same count, so it
is the same function of the weights; only the order of floating-point sums and the layout of the
dropout masks differ. (Packing several examples into one sequence, with attention kept within
each, was measured as well and saved no time here: benchmarks/RESULTS.md.)
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.tokenization import pad_right
from .config import FinetuneConfig

Row = tuple[list[int], list[int]]  # token ids and labels (-100 where not trained) of one example


def micro_batches(rows: list[Row], cfg: FinetuneConfig) -> list[list[Row]]:
    """The forward passes of one step, `micro_batch_size` examples each."""
    if cfg.batching == "by-length":
        rows = sorted(rows, key=lambda r: -len(r[0]))
    size = cfg.micro_batch_size
    return [rows[k : k + size] for k in range(0, len(rows), size)]


def summed_loss(
    model: nn.Module, pad_id: int, micro: list[Row], precision: str, device
) -> tuple[torch.Tensor, int]:
    """The summed next-token cross-entropy of a micro-batch, and its non-pad input tokens."""
    ids, mask = pad_right([r[0] for r in micro], pad_id)
    labels = torch.full_like(ids, -100)
    for k, (_, lab) in enumerate(micro):
        labels[k, : len(lab)] = torch.tensor(lab)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    logits = logits[:, :-1].float()
    target = labels[:, 1:].to(device)
    loss = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return loss, int(mask.sum())


def trained_tokens(micro: list[Row]) -> int:
    """The tokens whose next token is a target (what a validation loss is divided by)."""
    return sum(sum(1 for t in lab[1:] if t != -100) for _, lab in micro)
