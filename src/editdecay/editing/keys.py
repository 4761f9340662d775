"""Reading activations at the subject's last token: the keys K (MEMIT §1.3) and the current residuals."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data.requests import EditRequest
from ..data.tokenization import FilledPrompt, encode, fill, pad_right, subject_last_index
from ..models.adapter import model_device
from ..models.hooks import record, run_until
from ..models.registry import LoadedModel


@torch.no_grad()
def read_at_subject(
    lm: LoadedModel,
    prompts: Sequence[FilledPrompt],
    module: str,
    *,
    inputs: bool,
    max_batch_tokens: int = 8192,
) -> torch.Tensor:
    """The input (or output hidden state) of `module` at each prompt's subject-last token, (N, dim) fp32."""
    tok, model = lm.tokenizer, lm.model
    device = model_device(model)
    encoded = [encode(tok, p.text) for p in prompts]
    index = [subject_last_index(tok, p) for p in prompts]
    out: list[torch.Tensor | None] = [None] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    start = 0
    while start < len(order):
        width = len(encoded[order[start]])
        size = max(1, max_batch_tokens // width)
        batch = order[start : start + size]
        start += size
        ids, mask = pad_right([encoded[i] for i in batch], tok.pad_token_id)
        with record(model, [module], inputs=inputs, outputs=not inputs, stop_after=module) as rec:
            run_until(
                model, input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
            )
        acts = (rec.inputs if inputs else rec.outputs)[module]
        rows = torch.arange(len(batch))
        cols = torch.tensor([index[i] for i in batch])
        for r, v in zip(batch, acts[rows, cols].float()):
            out[r] = v
    return torch.stack(out)


def keyed_prompts(requests: Sequence[EditRequest], templates: Sequence[str]) -> list[FilledPrompt]:
    """Request-major list: for each request, its rewrite prompt inside every context template (the
    plain prompt in every slot for a request read only at the start, `EditRequest.at_start`)."""
    return [fill(r.prompt, r.subject, r.context(t)) for r in requests for t in templates]


def compute_keys(
    lm: LoadedModel, requests: Sequence[EditRequest], templates: Sequence[str], layer: int
) -> torch.Tensor:
    """K for one layer, (n_requests, d_k): per request, the mean of the plain-prompt key and the mean
    of the templated keys (so the plain prompt weighs ½, as in the reference)."""
    acts = read_at_subject(
        lm, keyed_prompts(requests, templates), lm.adapter.mlp_out_name(layer), inputs=True
    )
    acts = acts.view(len(requests), len(templates), -1)
    plain = acts[:, 0]
    if len(templates) == 1:
        return plain
    return (plain + acts[:, 1:].mean(1)) / 2


def current_residual(lm: LoadedModel, requests: Sequence[EditRequest], layer: int) -> torch.Tensor:
    """Block `layer`'s output at the subject-last token of each plain rewrite prompt, (n, d)."""
    prompts = [fill(r.prompt, r.subject) for r in requests]
    return read_at_subject(lm, prompts, lm.adapter.block_name(layer), inputs=False)
