"""Repair after fine-tuning: find the edits a fine-tuning flipped and re-edit only those.

The requests are scored on the fine-tuned model; an edit is *flipped* when it fails there (and,
when the edited model's scores are given, succeeded on it). Only the flipped requests are edited
again, with the same method and settings, on the fine-tuned model; the result is measured on every
request (a repair must not break the edits that survived). The cost is set against a full re-edit
of all requests on the same model, and against leaving the flipped edits broken.

The statistic C = E[kkᵀ] may come from the base model (`stats`): fine-tuning changes it little,
and recomputing it is the dearest step on a CPU. The target vectors are computed afresh: they are
hidden states of the fine-tuned model at the last edited layer, so the edited model's targets are
not valid once any layer up to it was fine-tuned (every fine-tuning this project runs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ..data.requests import EditRequest
from ..evaluation.edit_metrics import evaluate_requests, summarise
from ..evaluation.scorer import Scorer
from ..models.registry import LoadedModel
from . import get_editor
from .delta import EditDelta

log = logging.getLogger(__name__)


@dataclass
class RepairResult:
    delta: EditDelta | None  # the re-edit of the flipped requests (None when none flipped)
    full_delta: EditDelta | None  # the full re-edit it is compared with (None when not run)
    summary: dict
    table: pd.DataFrame  # per request: success on the tuned model, after repair, after full re-edit


def success(table: pd.DataFrame) -> pd.Series:
    """Per edit, the study's rule: zsRE (source) every target token right; otherwise CounterFact's
    P(new) > P(true), or every token right where no true object is known."""
    exact = table["rewrite_acc"] >= 1.0
    if "es" not in table:
        return exact.astype(bool)
    zsre = table["source"].astype(str).str.contains("zsre") if "source" in table else False
    counterfact = (table["es"] > 0.5).where(table["es"].notna(), exact)
    return exact.where(zsre, counterfact).astype(bool)


def _scored(lm: LoadedModel, requests: Sequence[EditRequest], desc: str) -> pd.DataFrame:
    table = evaluate_requests(Scorer(lm.model, lm.tokenizer, lm.adapter), requests, desc=desc)
    return table.assign(success=success(table))


def repair_edits(
    tuned: LoadedModel,
    requests: Sequence[EditRequest],
    method: str,
    cfg,
    stats: dict | None = None,
    edited_scores: pd.DataFrame | None = None,
    full_reedit: bool = True,
) -> RepairResult:
    """Re-edit the flipped requests on `tuned` (see the module docstring); `tuned` is left as it was."""
    editor = get_editor(method)
    kwargs = {"stats": stats} if stats is not None else {}
    now = _scored(tuned, requests, "scoring the fine-tuned model")
    broken = ~now["success"]
    if edited_scores is not None:
        before = dict(zip(edited_scores["case_id"], success(edited_scores)))
        broken &= now["case_id"].map(before).fillna(False).astype(bool)
    flipped = [r for r, b in zip(requests, broken) if b]
    table = now[["case_id"]].assign(success_tuned=now["success"], flipped=broken.to_numpy())
    delta, seconds = None, 0.0
    if flipped:
        t0 = time.perf_counter()
        delta = editor.edit(tuned, flipped, cfg, **kwargs)
        seconds = time.perf_counter() - t0
        with delta.apply(tuned.model):
            after = _scored(tuned, requests, "scoring after the repair")
        table["success_repaired"] = after["success"].to_numpy()
        table["ns_repaired"] = after.get("ns")
    else:
        after = now
        table["success_repaired"] = now["success"].to_numpy()
    full_delta, full_seconds, full = None, float("nan"), None
    if full_reedit:
        t0 = time.perf_counter()
        full_delta = editor.edit(tuned, list(requests), cfg, **kwargs)
        full_seconds = time.perf_counter() - t0
        with full_delta.apply(tuned.model):
            full = _scored(tuned, requests, "scoring after a full re-edit")
        table["success_full"] = full["success"].to_numpy()
    n_flipped = len(flipped)
    repaired = int((table["flipped"] & table["success_repaired"]).sum())
    broke = int((table["success_tuned"] & ~table["success_repaired"]).sum())
    summary = {
        "method": method,
        "n_requests": len(requests),
        "n_flipped": n_flipped,
        "n_repaired": repaired,
        "repaired": 100.0 * repaired / n_flipped if n_flipped else float("nan"),
        "n_broken_by_repair": broke,
        "success_tuned": 100.0 * float(table["success_tuned"].mean()),
        "success_repaired": 100.0 * float(table["success_repaired"].mean()),
        "success_full": 100.0 * float(table["success_full"].mean()) if full is not None else None,
        "ns_tuned": summarise(now).get("ns"),
        "ns_repaired": summarise(after).get("ns"),
        "ns_full": summarise(full).get("ns") if full is not None else None,
        "repair_seconds": seconds,
        "seconds_per_repaired_edit": seconds / repaired if repaired else float("nan"),
        "full_seconds": full_seconds,
        "statistic": "given" if stats is not None else "the fine-tuned model's",
    }
    log.info(
        "repair: %d of %d flipped edits restored in %.1f s (full re-edit: %.1f s)",
        repaired,
        n_flipped,
        seconds,
        full_seconds,
    )
    return RepairResult(delta, full_delta, summary, table)
