"""Editing with a trained MEND hypernetwork: one gradient capture per batch, one ΔW per edited weight.

For a batch of requests the edit loss is Σ_requests NLL(target_new | rewrite prompt); each edited
weight's inputs u and output gradients δ at every token go through the hypernetwork, and the
pseudo-gradients of all tokens of all requests are summed (MEND's batched editing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch

from ...data.requests import EditRequest
from ...models.registry import LoadedModel
from ..config import MendConfig
from ..delta import EditDelta
from ..targets import EditingError
from .artifact import load_editor
from .forward import PrefixRunner, SeqBatch, SequenceCache, capture
from .network import MendHypernet

log = logging.getLogger(__name__)

CHUNK = 32  # requests per gradient capture at edit time (the sum is the same for any chunking)


def compute_deltas(
    hypernet: MendHypernet,
    runner: PrefixRunner,
    batch: SeqBatch,
    *,
    update_statistics: bool = False,
) -> tuple[dict[str, torch.Tensor], dict]:
    """ΔW for every edited weight from one batch of edit sequences, plus diagnostics.

    With `update_statistics` (training) the normalisers first absorb this batch's u and δ.
    Gradients flow from ΔW into the hypernetwork; u and δ are constants.
    """
    captured, nll = capture(runner, batch, hypernet.targets)
    deltas = {}
    for i, (u, d) in captured.items():
        if update_statistics:
            hypernet.update_statistics(i, u, d)
        deltas[hypernet.targets[i].name] = hypernet.delta(i, u, d)
    n_tokens = next(iter(captured.values()))[0].shape[0]
    return deltas, {"nll_before": nll, "n_tokens": n_tokens}


def edited_weights(lm: LoadedModel, deltas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """W + ΔW for every edited parameter (a graph through ΔW when it has one)."""
    params = dict(lm.model.named_parameters())
    return {n: params[n] + dw.to(params[n].dtype) for n, dw in deltas.items()}


def mend_edit(
    lm: LoadedModel, requests: Sequence[EditRequest], cfg: MendConfig, stats=None
) -> EditDelta:
    """Edit `requests` in one batch with the trained editor for `lm` (`cfg.artifact` or the default place).

    `stats` is accepted for the common editor signature and ignored. The model is left unchanged.
    """
    if not requests:
        raise ValueError("no edit requests given")
    t0 = time.perf_counter()
    editor = load_editor(lm, cfg.artifact)
    trained = editor.config
    if tuple(cfg.layers) != tuple(trained.layers) or tuple(cfg.modules) != tuple(trained.modules):
        raise ValueError(
            f"the trained MEND editor edits layers {list(trained.layers)} / modules {list(trained.modules)}, "
            f"but layers {list(cfg.layers)} / modules {list(cfg.modules)} were asked for; retrain with "
            f"`editdecay mend-train --set layers=...` or drop the layer override"
        )
    load_s = time.perf_counter() - t0
    hypernet = editor.hypernet.eval()
    runner = PrefixRunner(lm, min(trained.layers), split=False)
    cache = SequenceCache(runner)
    t0 = time.perf_counter()
    totals: dict[str, torch.Tensor] = {}
    n_tokens, nll = 0, []
    with torch.no_grad():
        for start in range(0, len(requests), CHUNK):
            chunk = requests[start : start + CHUNK]
            batch = cache.batch([(r.text, r.target_new) for r in chunk])
            deltas, diag = compute_deltas(hypernet, runner, batch)
            for name, dw in deltas.items():
                totals[name] = totals[name] + dw if name in totals else dw
            n_tokens += diag["n_tokens"]
            nll += diag["nll_before"].tolist()
    weights = {n: dw.detach().float().cpu() for n, dw in totals.items()}
    bad = [n for n, w in weights.items() if not torch.isfinite(w).all()]
    if bad:
        raise EditingError(f"MEND produced a non-finite update for {bad}")
    edit_s = time.perf_counter() - t0
    where = str(cfg.artifact) if cfg.artifact else "default"
    log.info(
        "MEND: %d edits, %d tokens, |ΔW| %s",
        len(requests),
        n_tokens,
        ", ".join(f"{float(w.norm()):.3g}" for w in weights.values()),
    )
    config = trained.to_dict()
    config["artifact"] = cfg.artifact
    return EditDelta(
        weights=weights,
        method="mend",
        config=config,
        request_ids=[r.case_id for r in requests],
        model_fingerprint=lm.fingerprint,
        seeds={"train": trained.seed},
        info={
            "editor": {
                "artifact": where,
                "model_name": editor.model_name,
                "training_steps": editor.training.get("steps"),
                "edit_lrs": [float(x) for x in hypernet.edit_lrs.detach().cpu()],
            },
            "n_tokens": n_tokens,
            "timings": {"load_editor_s": load_s, "solve_s": edit_s},
            "targets": {"nll_before": nll},
        },
    )


__all__ = ["compute_deltas", "edited_weights", "mend_edit"]
