"""Per-edit efficacy / generalisation / specificity, kept edit by edit (later stages need flips).

Columns of the per-edit table (one row per request), all in [0, 1] or NLL units:
- es, ps, ns: CounterFact scores (MEMIT convention). es = 1[nll(new) < nll(true)] on the rewrite
  prompt; ps = the same averaged over paraphrases; ns = mean over neighbours of 1[nll(true) <
  nll(new)]. Defined only where the request has a `target_true` (ns: where every neighbour's
  answer is `target_true`, the CounterFact layout); NaN otherwise.
- em, pm, nm: the magnitudes, exp(-nll_new) - exp(-nll_true) (nm with the sign flipped).
- rewrite_acc, paraphrase_acc, neighbour_acc: teacher-forced token accuracy of `target_new` on the
  rewrite / paraphrase prompts and of each neighbour's own answer (MEMIT's zsRE metrics; neighbour
  accuracy is absolute, as in MEMIT).
- locality: share of neighbour answer tokens whose argmax equals the reference (unedited) model's
  argmax; NaN when no reference is given (EasyEdit's locality definition).
- nll_new, nll_true: rewrite-prompt NLLs, for diagnostics.
- source: the request's dataset ("counterfact", "zsre", "user"), which picks the efficacy rule
  (analysis.decay.efficacy_kind): zsRE requests edited toward `alt` have a `target_true` and so an
  `es`, but their efficacy is the token accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..data.requests import EditRequest
from .scorer import Scorer, TargetScore

HEADLINE = ("es", "ps", "ns", "rewrite_acc", "paraphrase_acc", "neighbour_acc", "locality")


def _pairs(req: EditRequest) -> list[tuple[str, str]]:
    prompts = [req.text, *req.paraphrases]
    pairs = [(p, req.target_new) for p in prompts]
    if req.target_true:
        pairs += [(p, req.target_true) for p in prompts]
    for n in req.neighbours:
        pairs.append((n.prompt, n.target))
        if req.target_true:
            pairs.append((n.prompt, req.target_new))
    return pairs


def _mean(xs) -> float:
    xs = list(xs)
    return float(np.mean(xs)) if xs else math.nan


def evaluate_requests(
    scorer: Scorer,
    requests: Sequence[EditRequest],
    reference: pd.DataFrame | None = None,
    desc: str = "evaluating",
) -> pd.DataFrame:
    """Score every request; `reference` is the same function's output on the unedited model."""
    all_pairs = [p for r in requests for p in _pairs(r)]
    scores = dict(zip(all_pairs, scorer.score(all_pairs, desc=desc)))
    ref_preds = None
    if reference is not None:
        ref_preds = dict(zip(reference["case_id"], reference["neighbour_pred"]))
    rows = [_row(req, scores, ref_preds) for req in requests]
    return pd.DataFrame(rows)


def _row(req: EditRequest, s: dict[tuple[str, str], TargetScore], ref_preds: dict | None) -> dict:
    new = lambda p: s[(p, req.target_new)]  # noqa: E731
    row: dict = {
        "case_id": req.case_id,
        "source": req.source,
        "subject": req.subject,
        "target_new": req.target_new,
        "target_true": req.target_true,
    }
    row["rewrite_acc"] = new(req.text).accuracy
    row["paraphrase_acc"] = _mean(new(p).accuracy for p in req.paraphrases)
    row["neighbour_acc"] = _mean(s[(n.prompt, n.target)].accuracy for n in req.neighbours)
    row["nll_new"] = new(req.text).nll
    if req.target_true:
        true = lambda p: s[(p, req.target_true)]  # noqa: E731
        row["nll_true"] = true(req.text).nll
        row["es"] = float(new(req.text).nll < true(req.text).nll)
        row["em"] = new(req.text).prob - true(req.text).prob
        row["ps"] = _mean(float(new(p).nll < true(p).nll) for p in req.paraphrases)
        row["pm"] = _mean(new(p).prob - true(p).prob for p in req.paraphrases)
        cf_layout = req.neighbours and all(n.target == req.target_true for n in req.neighbours)
        if cf_layout:
            row["ns"] = _mean(float(true(n.prompt).nll < new(n.prompt).nll) for n in req.neighbours)
            row["nm"] = _mean(true(n.prompt).prob - new(n.prompt).prob for n in req.neighbours)
    preds = [list(s[(n.prompt, n.target)].predicted) for n in req.neighbours]
    row["neighbour_pred"] = " ".join(",".join(map(str, p)) for p in preds)
    if ref_preds is not None and req.case_id in ref_preds:
        ref = [[int(x) for x in part.split(",") if x] for part in ref_preds[req.case_id].split(" ")]
        agree = [a == b for p, q in zip(preds, ref) for a, b in zip(p, q)]
        row["locality"] = _mean(agree)
    for col in ("es", "em", "ps", "pm", "ns", "nm", "nll_true", "locality"):
        row.setdefault(col, math.nan)
    return row


def summarise(table: pd.DataFrame) -> dict[str, float]:
    """Means over edits, in percent for the scores (NaN columns are left out)."""
    out = {}
    for col in (
        "es",
        "ps",
        "ns",
        "rewrite_acc",
        "paraphrase_acc",
        "neighbour_acc",
        "locality",
        "em",
        "pm",
        "nm",
    ):
        if col in table and table[col].notna().any():
            out[col] = float(table[col].mean() * 100)
    return out
