"""Context templates (MEMIT §1.2): short model-generated prefixes, seeded so runs repeat (P12)."""

from __future__ import annotations

import torch

from ..data.tokenization import encode
from ..models.adapter import model_device
from ..models.registry import LoadedModel
from ..progress import progress
from .config import TemplateConfig


@torch.no_grad()
def context_templates(lm: LoadedModel, cfg: TemplateConfig) -> list[str]:
    """["{}", "<generated>. {}", ...]: the plain prompt first, then one sample per seed word.

    Each sample continues its seed word with top-k sampling for `cfg.length` tokens from a
    generator seeded with `cfg.seed`; braces are blanked so the text is a safe format string.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    device = model_device(lm.model)
    out = ["{}"]
    for word in progress(cfg.seed_words, desc="context templates"):
        ids = encode(lm.tokenizer, word)
        for _ in range(cfg.length):
            logits = (
                lm.model(input_ids=torch.tensor([ids], device=device), use_cache=False)
                .logits[0, -1]
                .float()
                .cpu()
            )
            top = torch.topk(logits, cfg.top_k)
            probs = torch.softmax(top.values, -1)
            ids.append(int(top.indices[torch.multinomial(probs, 1, generator=gen)]))
        text = (
            lm.tokenizer.decode(ids, skip_special_tokens=True).replace("{", " ").replace("}", " ")
        )
        out.append(text + ". {}")
    return out
