"""Sequential editing: N requests in consecutive batches, each computed on the model that already holds
the earlier batches (AlphaEdit §2.4's protocol). The result is one delta against the original model."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from ..data.requests import EditRequest
from ..integrity import as_json, load_resume_point, remove_resume_point, save_resume_point
from ..models.registry import LoadedModel
from ..progress import progress
from .delta import EditDelta
from .statistics import second_moments

log = logging.getLogger(__name__)


def edit_sequentially(
    lm: LoadedModel,
    requests: Sequence[EditRequest],
    editor,
    cfg,
    batch_size: int,
    state: dict[str, torch.Tensor] | None = None,
    progress_file: str | Path | None = None,
) -> EditDelta:
    """Run `editor` on batches of `batch_size`; stateful editors get the previous batch's state.

    The model is left unchanged; the returned delta is W_final − W_original for every touched weight
    and carries the last editor state, so a later call with `state=` continues the sequence. With
    `progress_file` (a directory: safetensors + JSON, see `integrity.save_resume_point`), the edits
    so far (weights, state, batch log) are saved after every batch and a call that finds them
    continues after the last saved batch, so an interrupted sequence loses at most one batch.
    """
    if batch_size <= 0:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    # of the original model, once (editors without a statistic, such as MEND, get none)
    stats = (
        second_moments(lm, list(cfg.layers), cfg.statistic) if hasattr(cfg, "statistic") else None
    )
    params = dict(lm.model.named_parameters())
    batches_info: list[dict] = []
    originals: dict[str, torch.Tensor] = {}
    first = 0
    progress_file = Path(progress_file) if progress_file is not None else None
    ids = [r.case_id for r in requests]
    saved = _load_progress(progress_file) if progress_file is not None else None
    if saved is not None:
        _check_progress(saved, progress_file, ids, batch_size, cfg, lm.fingerprint)
        with torch.no_grad():
            for name, current in saved["current"].items():  # the weights as they were, bit for bit
                originals[name] = params[name].detach().clone()
                params[name].copy_(current)
        state, batches_info, first = saved["state"], saved["batches"], saved["next"]
        log.info(
            "resuming sequential editing at request %d of %d (%s)",
            first,
            len(requests),
            progress_file,
        )
    try:
        for start in progress(
            range(first, len(requests), batch_size),
            desc="sequential batches",
            total=len(range(first, len(requests), batch_size)),
        ):
            batch = requests[start : start + batch_size]
            kwargs = {"stats": stats} if stats is not None else {}
            if editor.stateful:
                kwargs["state"] = editor.load_state(state)
            delta = editor.edit(lm, batch, cfg, **kwargs)
            for name in delta.weights:
                originals.setdefault(name, params[name].detach().clone())
            delta.apply(lm.model, force=True)  # undone below by restoring `originals`
            state = delta.state or state
            batches_info.append(
                {
                    "start": start,
                    "size": len(batch),
                    "timings": delta.info.get("timings", {}),
                    "targets_final_nll_mean": _mean(
                        delta.info.get("targets", {}).get("final_nll", [])
                    ),
                }
            )
            log.info(
                "batch %d: %d edits written (%d so far)",
                len(batches_info),
                len(batch),
                start + len(batch),
            )
            if progress_file is not None:
                done = {
                    "request_ids": ids,
                    "batch_size": batch_size,
                    "config": cfg.to_dict(),
                    "model_fingerprint": lm.fingerprint,
                    "state": state,
                    "batches": batches_info,
                    "next": start + batch_size,
                    "current": {n: params[n].detach() for n in originals},
                }
                _save_progress(progress_file, done)
        weights = {n: (params[n].detach() - w).cpu() for n, w in originals.items()}
    finally:
        with torch.no_grad():
            for name, w in originals.items():
                params[name].copy_(w)
    if progress_file is not None:
        remove_resume_point(progress_file)
    return EditDelta(
        weights=weights,
        method=editor.name,
        config=cfg.to_dict(),
        request_ids=ids,
        model_fingerprint=lm.fingerprint,
        statistic_keys={str(l): stats[l].key for l in cfg.layers} if stats is not None else {},
        seeds={"templates": cfg.templates.seed} if hasattr(cfg, "templates") else {},
        info={"sequential": {"batch_size": batch_size, "batches": batches_info}},
        state=state or {},
    )


_CURRENT, _STATE = "current.", "state."  # tensor name prefixes in the progress files


def _save_progress(directory: Path, done: dict) -> None:
    """The weights so far and the editor state as tensors; everything else as JSON."""
    tensors = {_CURRENT + n: t for n, t in done["current"].items()}
    tensors.update({_STATE + n: t for n, t in (done["state"] or {}).items()})
    meta = {k: v for k, v in done.items() if k not in ("current", "state")}
    meta["has_state"] = done["state"] is not None
    save_resume_point(directory, tensors, meta)


def _load_progress(directory: Path) -> dict | None:
    loaded = load_resume_point(directory)
    if loaded is None:
        return None
    tensors, meta = loaded
    state = _with_prefix(tensors, _STATE) if meta.pop("has_state") else None
    return {**meta, "current": _with_prefix(tensors, _CURRENT), "state": state}


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {n[len(prefix) :]: t for n, t in tensors.items() if n.startswith(prefix)}


def _check_progress(saved: dict, where: Path, ids, batch_size: int, cfg, fingerprint: str) -> None:
    if (
        saved["request_ids"] != ids
        or saved["batch_size"] != batch_size
        or saved["config"] != as_json(cfg.to_dict())
    ):
        raise ValueError(f"{where} belongs to another sequential edit; delete it to start over")
    if saved["model_fingerprint"] != fingerprint:
        raise ValueError(f"{where} was made on another model (fingerprint mismatch)")


def _mean(xs) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")
