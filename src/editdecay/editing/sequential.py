"""Sequential editing: N requests in consecutive batches, each computed on the model that already holds
the earlier batches (AlphaEdit §2.4's protocol). The result is one delta against the original model."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from ..data.requests import EditRequest
from ..models.registry import LoadedModel
from ..progress import progress
from .delta import EditDelta
from .statistics import second_moments

log = logging.getLogger(__name__)


def edit_sequentially(lm: LoadedModel, requests: Sequence[EditRequest], editor, cfg, batch_size: int,
                      state: dict[str, torch.Tensor] | None = None) -> EditDelta:
    """Run `editor` on batches of `batch_size`; stateful editors get the previous batch's state.

    The model is left unchanged; the returned delta is W_final − W_original for every touched weight
    and carries the last editor state, so a later call with `state=` continues the sequence.
    """
    if batch_size <= 0:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    stats = second_moments(lm, list(cfg.layers), cfg.statistic)  # of the original model, once
    params = dict(lm.model.named_parameters())
    handles, batches_info = [], []
    originals: dict[str, torch.Tensor] = {}
    try:
        for start in progress(range(0, len(requests), batch_size), desc="sequential batches"):
            batch = requests[start:start + batch_size]
            kwargs = {"stats": stats}
            if editor.stateful:
                kwargs["state"] = editor.load_state(state)
            delta = editor.edit(lm, batch, cfg, **kwargs)
            for name in delta.weights:
                originals.setdefault(name, params[name].detach().clone())
            handles.append(delta.apply(lm.model, force=True))
            state = delta.state or state
            batches_info.append({"start": start, "size": len(batch), "timings": delta.info.get("timings", {}),
                                 "targets_final_nll_mean": _mean(delta.info.get("targets", {}).get("final_nll", []))})
            log.info("batch %d: %d edits written (%d so far)", len(handles), len(batch), start + len(batch))
        weights = {n: (params[n].detach() - w).cpu() for n, w in originals.items()}
    finally:
        for h in reversed(handles):
            h.revert()
    return EditDelta(
        weights=weights, method=editor.name, config=cfg.to_dict(), request_ids=[r.case_id for r in requests],
        model_fingerprint=lm.fingerprint, statistic_keys={str(l): stats[l].key for l in cfg.layers},
        seeds={"templates": cfg.templates.seed}, info={"sequential": {"batch_size": batch_size, "batches": batches_info}},
        state=state or {},
    )


def _mean(xs) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")
