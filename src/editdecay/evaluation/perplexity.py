"""Perplexity on held-out WikiText articles (never the ones the statistic C is computed from).

Windows start with BOS when the tokenizer adds one to prompts (pitfall P2), as the statistic's do;
the first text token is then predicted from BOS and counted.
"""

from __future__ import annotations

import math

import torch

from ..data.corpus import split_articles, token_windows, wikitext_articles
from ..data.tokenization import pad_right
from ..editing.statistics import bos_windows
from ..models.adapter import model_device
from ..models.registry import LoadedModel
from ..progress import progress


@torch.no_grad()
def heldout_perplexity(
    lm: LoadedModel, max_tokens: int = 16384, window: int = 512, batch_windows: int = 4
) -> float:
    """exp(mean token NLL) over the held-out split, in windows of `window` tokens (deterministic)."""
    _, heldout = split_articles(wikitext_articles())
    windows = token_windows(
        lm.tokenizer, [a.text for a in heldout], window=window, max_tokens=max_tokens
    )
    windows = bos_windows(lm.tokenizer, windows)
    device = model_device(lm.model)
    total, count = 0.0, 0
    starts = range(0, len(windows), batch_windows)
    for i in progress(starts, desc=f"perplexity ({len(windows)} windows)"):
        batch = windows[i : i + batch_windows]
        ids, mask = pad_right(batch, lm.tokenizer.pad_token_id)
        hidden = lm.adapter.backbone(lm.model)(
            input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
        ).last_hidden_state
        keep = mask[:, 1:].bool().to(device)
        logits = lm.adapter.logits(lm.model, hidden[:, :-1][keep]).float()
        labels = ids[:, 1:].to(device)[keep]
        total += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
        count += int(keep.sum())
    return math.exp(total / count)
