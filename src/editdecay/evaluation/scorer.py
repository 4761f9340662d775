"""The one batched teacher-forced scorer every metric is built on.

For each (prompt, target) pair it returns the mean per-token NLL of the target after the prompt and,
per target token, the model's argmax and whether it equals the target token. Rows are right-padded
and sorted by length; logits are computed only at target positions, so scoring a prompt alone or
inside a padded batch gives the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..data.tokenization import Continuation, encode_continuation, pad_right
from ..models.adapter import ArchAdapter, model_device
from ..progress import progress


@dataclass(frozen=True)
class TargetScore:
    nll: float  # mean over target tokens of -log P(t_j | prompt, t_<j)
    predicted: tuple[int, ...]  # argmax token at each target position
    target_ids: tuple[int, ...]

    @property
    def correct(self) -> tuple[bool, ...]:
        return tuple(p == t for p, t in zip(self.predicted, self.target_ids))

    @property
    def accuracy(self) -> float:
        """Teacher-forced token accuracy (MEMIT's zsRE efficacy for one prompt)."""
        c = self.correct
        return sum(c) / len(c)

    @property
    def prob(self) -> float:
        """Geometric-mean per-token probability, exp(-nll)."""
        return math.exp(-self.nll)


class Scorer:
    def __init__(self, model: nn.Module, tokenizer, adapter: ArchAdapter, max_batch_tokens: int = 8192,
                 show_progress: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.adapter = adapter
        self.max_batch_tokens = max_batch_tokens
        self.show_progress = show_progress
        self._encoded: dict[tuple[str, str], Continuation] = {}

    def encode(self, prompt: str, target: str) -> Continuation:
        key = (prompt, target)
        if key not in self._encoded:
            self._encoded[key] = encode_continuation(self.tokenizer, prompt, target)
        return self._encoded[key]

    @torch.no_grad()
    def score(self, pairs: Sequence[tuple[str, str]], desc: str = "scoring") -> list[TargetScore]:
        unique = list(dict.fromkeys(pairs))
        conts = [self.encode(p, t) for p, t in unique]
        order = sorted(range(len(conts)), key=lambda i: -(len(conts[i].prompt_ids) + len(conts[i].target_ids)))
        results: dict[int, TargetScore] = {}
        batches = list(self._batches(order, conts))
        for batch in progress(batches, desc=desc, disable=not self.show_progress):
            for i, s in zip(batch, self._score_batch([conts[i] for i in batch])):
                results[i] = s
        by_pair = {unique[i]: results[i] for i in results}
        return [by_pair[p] for p in pairs]

    def _batches(self, order: list[int], conts: list[Continuation]):
        batch: list[int] = []
        width = 0
        for i in order:
            n = len(conts[i].prompt_ids) + len(conts[i].target_ids) - 1
            width = max(width, n)
            if batch and width * (len(batch) + 1) > self.max_batch_tokens:
                yield batch
                batch, width = [], n
            batch.append(i)
        if batch:
            yield batch

    def _score_batch(self, conts: list[Continuation]) -> list[TargetScore]:
        device = model_device(self.model)
        seqs = [list(c.prompt_ids) + list(c.target_ids[:-1]) for c in conts]
        ids, mask = pad_right(seqs, self.tokenizer.pad_token_id)
        rows, cols, labels = [], [], []
        for r, c in enumerate(conts):
            start = len(c.prompt_ids) - 1
            for j, t in enumerate(c.target_ids):
                rows.append(r)
                cols.append(start + j)
                labels.append(t)
        hidden = self.adapter.backbone(self.model)(
            input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
        ).last_hidden_state
        picked = hidden[torch.tensor(rows), torch.tensor(cols)]
        logp = torch.log_softmax(self.adapter.logits(self.model, picked).float(), dim=-1)
        lab = torch.tensor(labels, device=logp.device)
        tok_nll = -logp.gather(1, lab[:, None])[:, 0].cpu()
        pred = logp.argmax(-1).cpu()
        out, k = [], 0
        for c in conts:
            n = len(c.target_ids)
            out.append(TargetScore(
                nll=float(tok_nll[k:k + n].mean()),
                predicted=tuple(int(x) for x in pred[k:k + n]),
                target_ids=tuple(c.target_ids),
            ))
            k += n
        return out
