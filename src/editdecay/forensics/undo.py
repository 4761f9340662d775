"""Undo a located edit without training: an `EditDelta` that, added to the suspect, removes it.

Given the matrices judged edited (`locate_edits`) and their differences ΔW = W_suspect − W_base:

- ``full``: −ΔW. The matrices go back to the base exactly, fine-tuning changes to them included.
- ``rank``: −Σ_{i≤k} σᵢ uᵢ vᵢᵀ, the top-k singular components of ΔW, with k the fewest holding
  ``energy`` of ‖ΔW‖²_F (or ``rank`` when set). An edit is a large low-rank update; fine-tuning
  spreads a small full-rank change, which the tail keeps.
- ``keys``: −ΔW B Bᵀ with B an orthonormal basis of the candidate subjects' keys (the input of the
  matrix at each subject's last token, read on the suspect): only the difference's response to
  those subjects is removed.

`undo_effect` measures it: the edits that succeeded on the suspect and no longer do after the undo
(*reverted*), and NS, perplexity and (optionally) downstream accuracy before and after, the last
paired item by item (McNemar on the items whose correctness changed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import pandas as pd
import torch

from ..config_types import ConfigError, check_fields
from ..data.requests import EditRequest
from ..data.tokenization import fill
from ..editing.delta import EditDelta
from ..editing.keys import read_at_subject
from ..editing.repair import success
from ..evaluation.edit_metrics import evaluate_requests, summarise
from ..evaluation.perplexity import heldout_perplexity
from ..evaluation.scorer import Scorer
from ..finetuning.preserve import protected_basis
from ..models.registry import LoadedModel, fingerprint

log = logging.getLogger(__name__)

UNDO_MODES = ("full", "rank", "keys")
UndoMode = Literal[UNDO_MODES]


@dataclass(frozen=True)
class UndoConfig:
    mode: UndoMode = field(default="rank", metadata={"help": "full, rank or keys"})
    energy: float = field(
        default=0.9,
        metadata={"help": "rank: share of ‖ΔW‖² the removed components hold", "gt": 0, "le": 1},
    )
    rank: int | None = field(
        default=None,
        metadata={"help": "rank: components removed per matrix (overrides energy)", "ge": 1},
    )
    key_energy: float = field(
        default=0.999,
        metadata={"help": "keys: share of the keys' ΣK² the removed basis spans", "gt": 0, "le": 1},
    )

    field_noun = "undo setting"

    def __post_init__(self):
        check_fields(self)


def top_components(delta: torch.Tensor, energy: float, rank: int | None) -> torch.Tensor:
    """The sum of ΔW's leading singular components (see the module docstring)."""
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    if rank is None:
        share = torch.cumsum(s**2, 0) / (s**2).sum()
        rank = int((share < energy).sum()) + 1
    rank = min(rank, len(s))
    return ((u[:, :rank] * s[:rank]) @ vh[:rank]).to(delta.dtype)


def undo_delta(
    base: torch.nn.Module,
    suspect: LoadedModel,
    parameters: Sequence[str],
    cfg: UndoConfig | None = None,
    candidates: Sequence[EditRequest] = (),
) -> EditDelta:
    """The undo of the edit in `parameters` (the weight names `locate_edits` judged edited)."""
    cfg = cfg or UndoConfig()
    if not parameters:
        raise ValueError("nothing to undo: no matrix was judged edited")
    if cfg.mode == "keys" and not candidates:
        raise ConfigError("mode", "keys needs candidate subjects (the requests to undo)")
    base_params = dict(base.named_parameters())
    suspect_params = dict(suspect.model.named_parameters())
    prompts = [fill(r.prompt, r.subject) for r in candidates]
    weights, ranks = {}, {}
    for name in parameters:
        if name not in base_params or name not in suspect_params:
            raise KeyError(f"{name}: not a parameter of both models")
        w = suspect_params[name].detach()
        delta = (w.float() - base_params[name].detach().float().to(w.device)).cpu()
        if cfg.mode == "full":
            removed = delta
        elif cfg.mode == "rank":
            removed = top_components(delta, cfg.energy, cfg.rank)
        else:
            module = name.removesuffix(".weight")
            keys = read_at_subject(suspect, prompts, module, inputs=True).cpu()
            basis = protected_basis(keys, cfg.key_energy, keys.shape[1])
            as_out_in = suspect.adapter.weight_as_out_in(delta)
            removed = suspect.adapter.weight_as_out_in((as_out_in @ basis) @ basis.T)
        ranks[name] = _rank(removed)
        weights[name] = (-removed).to(w.dtype)
    return EditDelta(
        weights=weights,
        method=f"undo-{cfg.mode}",
        config=asdict(cfg),
        request_ids=[r.case_id for r in candidates],
        model_fingerprint=fingerprint(suspect.model),
        info={"removed_rank": ranks},
    )


def _rank(matrix: torch.Tensor, rel_tol: float = 1e-5) -> int:
    """Singular values above σ₁·rel_tol (fp32 rounding of W_suspect − W_base sits near 1e-7)."""
    sigma = torch.linalg.svdvals(matrix.double())
    return int((sigma > sigma[0] * rel_tol).sum()) if len(sigma) and sigma[0] > 0 else 0


def undo_effect(
    suspect: LoadedModel,
    undo: EditDelta,
    requests: Sequence[EditRequest],
    ppl_tokens: int = 4096,
    ds_per_task: int = 0,
) -> tuple[dict, pd.DataFrame]:
    """(summary, per-edit table): ES / NS / perplexity of the suspect before and after the undo,
    and the share of the edits successful before that the undo reverted; with `ds_per_task`, DS on
    that many bundled commonsense test items per task, before and after (`summary["ds"]`)."""
    scorer = Scorer(suspect.model, suspect.tokenizer, suspect.adapter)
    before = evaluate_requests(scorer, requests, desc="scoring the suspect")
    ppl_before = heldout_perplexity(suspect, max_tokens=ppl_tokens) if ppl_tokens else float("nan")
    ds_before = _downstream(suspect, scorer, ds_per_task)
    with undo.apply(suspect.model):
        after = evaluate_requests(scorer, requests, desc="scoring after the undo")
        ppl_after = (
            heldout_perplexity(suspect, max_tokens=ppl_tokens) if ppl_tokens else float("nan")
        )
        ds_after = _downstream(suspect, scorer, ds_per_task)
    table = pd.DataFrame(
        {
            "case_id": before["case_id"],
            "success_before": success(before).to_numpy(),
            "success_after": success(after).to_numpy(),
            "ns_before": before.get("ns"),
            "ns_after": after.get("ns"),
        }
    )
    succeeded = table["success_before"]
    reverted = succeeded & ~table["success_after"]
    s_before, s_after = summarise(before), summarise(after)
    summary = {
        "mode": undo.method,
        "n_requests": len(requests),
        "n_successful_before": int(succeeded.sum()),
        "n_reverted": int(reverted.sum()),
        "reverted": 100.0 * float(reverted.sum()) / max(1, int(succeeded.sum())),
        "es_before": s_before.get("es"),
        "es_after": s_after.get("es"),
        "ns_before": s_before.get("ns"),
        "ns_after": s_after.get("ns"),
        "neighbour_acc_before": s_before.get("neighbour_acc"),
        "neighbour_acc_after": s_after.get("neighbour_acc"),
        "perplexity_before": ppl_before,
        "perplexity_after": ppl_after,
        "removed_rank": undo.info.get("removed_rank", {}),
    }
    if ds_per_task:
        summary["ds"] = paired_downstream(ds_before, ds_after)
    return summary, table.assign(reverted=reverted)


def _downstream(lm: LoadedModel, scorer: Scorer, per_task: int) -> pd.DataFrame | None:
    if not per_task:
        return None
    from ..evaluation.downstream import downstream_accuracy

    _, items = downstream_accuracy(lm, n_per_task=per_task, details=True, scorer=scorer)
    return items


def paired_downstream(before: pd.DataFrame, after: pd.DataFrame) -> dict:
    """Per DS mode: accuracy (the mean over tasks, in %) before and after, the items only right
    before / only right after, and McNemar's exact p on those two counts."""
    from ..analysis.stats import mcnemar_exact_p

    out = {"n_items": int((before["mode"] == before["mode"].iloc[0]).sum())}
    for mode, b in before.groupby("mode", sort=False):
        a = after[after["mode"] == mode]
        right_b, right_a = b["correct"].to_numpy(), a["correct"].to_numpy()
        lost, gained = int((right_b & ~right_a).sum()), int((~right_b & right_a).sum())
        out[mode] = {
            "before": 100.0 * float(b.groupby("task")["correct"].mean().mean()),
            "after": 100.0 * float(a.groupby("task")["correct"].mean().mean()),
            "only_right_before": lost,
            "only_right_after": gained,
            "mcnemar_p": mcnemar_exact_p(lost, gained),
        }
    return out
