"""The one batched teacher-forced scorer every metric is built on.

For each (prompt, target) pair it returns the mean per-token NLL of the target after the prompt and,
per target token, the model's argmax and whether it equals the target token. Rows are right-padded
and sorted by length; logits are computed only at target positions, so scoring a prompt alone or
inside a padded batch gives the same numbers. Targets of one prompt that differ only in their last
token (answer labels, single-token targets) are scored from one shared row.
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
    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        adapter: ArchAdapter,
        max_batch_tokens: int = 8192,
        show_progress: bool = False,
        share_rows: bool = True,
    ):
        self.model = model
        self.share_rows = share_rows  # False: one row per pair (same numbers, more compute)
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
        rows = (
            _shared_rows(conts)
            if self.share_rows
            else [_Row(_own_row(c), (i,), (c,)) for i, c in enumerate(conts)]
        )
        order = sorted(range(len(rows)), key=lambda r: -len(rows[r].ids))
        results: dict[int, TargetScore] = {}
        batches = list(self._batches(order, rows))
        for batch in progress(batches, desc=desc, disable=not self.show_progress):
            for r, scores in zip(batch, self._score_batch([rows[r] for r in batch])):
                results.update(zip(rows[r].members, scores))
        by_pair = {unique[i]: results[i] for i in results}
        return [by_pair[p] for p in pairs]

    def _batches(self, order: list[int], rows: list[_Row]):
        batch: list[int] = []
        width = 0
        for r in order:
            n = len(rows[r].ids)
            width = max(width, n)
            if batch and width * (len(batch) + 1) > self.max_batch_tokens:
                yield batch
                batch, width = [], n
            batch.append(r)
        if batch:
            yield batch

    def _score_batch(self, rows: list[_Row]) -> list[list[TargetScore]]:
        device = model_device(self.model)
        ids, mask = pad_right([list(row.ids) for row in rows], self.tokenizer.pad_token_id)
        at_row, at_col, labels = [], [], []
        for r, row in enumerate(rows):
            for c in row.conts:
                start = len(c.prompt_ids) - 1
                for j, t in enumerate(c.target_ids):
                    at_row.append(r)
                    at_col.append(start + j)
                    labels.append(t)
        hidden = self.adapter.backbone(self.model)(
            input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
        ).last_hidden_state
        picked = hidden[torch.tensor(at_row), torch.tensor(at_col)]
        logp = torch.log_softmax(self.adapter.logits(self.model, picked).float(), dim=-1)
        lab = torch.tensor(labels, device=logp.device)
        tok_nll = -logp.gather(1, lab[:, None])[:, 0].cpu()
        pred = logp.argmax(-1).cpu()
        out, k = [], 0
        for row in rows:
            scores = []
            for c in row.conts:
                n = len(c.target_ids)
                scores.append(
                    TargetScore(
                        nll=float(tok_nll[k : k + n].mean()),
                        predicted=tuple(int(x) for x in pred[k : k + n]),
                        target_ids=tuple(c.target_ids),
                    )
                )
                k += n
            out.append(scores)
        return out


@dataclass(frozen=True)
class _Row:
    """One input sequence and the continuations it scores (indices into the unique pairs)."""

    ids: tuple[int, ...]
    members: tuple[int, ...]
    conts: tuple[Continuation, ...]


def _shared_rows(conts: list[Continuation]) -> list[_Row]:
    """Group continuations into input rows.

    Targets of one prompt that share all but their last token (answer labels such as "answer1" /
    "answer2", or single-token targets) are read off a single row, prompt + shared prefix: the logits
    that score each of them are the same positions of the same sequence. Every other continuation
    gets its own row, prompt + target minus its last token.
    """
    by_prompt: dict[tuple[int, ...], list[int]] = {}
    for i, c in enumerate(conts):
        by_prompt.setdefault(tuple(c.prompt_ids), []).append(i)
    rows: list[_Row] = []
    for prompt, members in by_prompt.items():
        prefixes = {tuple(conts[i].target_ids[:-1]) for i in members}
        if len(members) > 1 and len(prefixes) == 1:
            rows.append(
                _Row(prompt + prefixes.pop(), tuple(members), tuple(conts[i] for i in members))
            )
            continue
        rows.extend(_Row(_own_row(conts[i]), (i,), (conts[i],)) for i in members)
    return rows


def _own_row(c: Continuation) -> tuple[int, ...]:
    return tuple(c.prompt_ids) + tuple(c.target_ids[:-1])
