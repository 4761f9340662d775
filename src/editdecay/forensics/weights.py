"""Forensics from weights: find an edit in a suspect model by comparing it with its base.

For every weight matrix the two models share, the difference ΔW = W_suspect − W_base is described by
its Frobenius norm relative to ‖W‖, its singular values, its stable rank ‖ΔW‖²_F / σ₁² and its
effective rank exp(H(σ²/Σσ²)). Locate-then-edit methods (MEMIT, AlphaEdit, ROME) write large low-rank
updates into the MLP out-projections of a few layers, while fine-tuning moves every matrix it trains
by a similar relative amount. The rule: over all per-layer matrices (every module at every layer), a
matrix is judged edited when its relative ‖ΔW‖ x is a robust outlier,

    z = (x − median) / max(1.4826 · MAD, spread · median) > outlier_z        and        x > floor;

when that scale is 0 (most matrices unchanged, an edit without fine-tuning) every changed matrix
stands out. An outlier is judged edited only when its difference also has a direction stronger
than fine-tuning gave any other layer of the same module: σ₁(ΔW) above the largest σ₁ among that
module's layers that are not outliers (0 when they are unchanged). A relative norm can stand out
because ‖W‖ is small (full fine-tuning moves layer 0's attention of SmolLM2-135M by 3× the median
relative amount at an ordinary σ₁), while an edit writes directions far above the fine-tuning
level (MEMIT's 50 edits: σ₁ 5–10 against 1.3 after LoRA). Known blind spot: fine-tuning of a few
layers only (LoRA on the edited layers) changes few matrices, which the rule then reads as edits.

The number of facts written is estimated from the edited matrices' spectra: MEMIT's update for n
requests has rank n; the singular values above the fine-tuning level (the largest σ₁ among the
family's layers not judged edited, or σ₁·`rank_tol` without fine-tuning) are counted, and the
median over the edited layers is reported.

Candidate subjects are ranked by how strongly the difference responds to their keys (the input of
the edited out-projection at the subject's last token, read on the base model): the mean over edited
layers of ‖ΔW k‖ / (σ₁ ‖k‖).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch

from ..config_types import check_fields
from ..data.requests import EditRequest
from ..data.tokenization import fill
from ..editing.keys import read_at_subject
from ..models.registry import LoadedModel

LAYER_INDEX = re.compile(r"\.(\d+)\.")
TOP_SINGULAR = 8  # singular values written per matrix


@dataclass(frozen=True)
class ForensicsConfig:
    outlier_z: float = field(
        default=6.0, metadata={"help": "robust z above which a layer's ‖ΔW‖ is an edit", "gt": 0}
    )
    floor: float = field(
        default=1e-6, metadata={"help": "relative ‖ΔW‖ below which a matrix is unchanged", "ge": 0}
    )
    spread: float = field(
        default=0.1,
        metadata={
            "help": "the z scale is at least this share of the median relative norm",
            "gt": 0,
        },
    )
    rank_tol: float = field(
        default=1e-3,
        metadata={"help": "without fine-tuning, singular values above σ₁·rank_tol count", "gt": 0},
    )

    def __post_init__(self):
        check_fields(self)


def family_of(name: str) -> tuple[str, int | None]:
    """("model.layers.{}.mlp.down_proj.weight", 4) for a per-layer matrix, (name, None) otherwise."""
    m = LAYER_INDEX.search(name)
    if not m:
        return name, None
    return name[: m.start()] + ".{}." + name[m.end() :], int(m.group(1))


@torch.no_grad()
def spectrum(delta: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(delta.double()).float()


def effective_rank(sigma: torch.Tensor) -> float:
    energy = sigma.double() ** 2
    total = float(energy.sum())
    if total <= 0:
        return 0.0
    p = energy / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def weight_differences(
    base: torch.nn.Module, suspect: torch.nn.Module
) -> tuple[pd.DataFrame, dict]:
    """One row per shared 2-D parameter; and {name: ΔW} of the changed ones."""
    suspect_params = dict(suspect.named_parameters())
    rows, deltas = [], {}
    for name, w in base.named_parameters():
        other = suspect_params.get(name)
        if other is None or w.dim() != 2 or other.shape != w.shape:
            continue
        delta = other.detach().float().cpu() - w.detach().float().cpu()
        norm = float(delta.norm())
        family, layer = family_of(name)
        row = {
            "parameter": name,
            "family": family,
            "layer": layer,
            "norm": norm,
            "relative_norm": norm / max(float(w.float().norm()), 1e-12),
        }
        if norm > 0:
            sigma = spectrum(delta)
            deltas[name] = delta
            row.update(
                sigma_1=float(sigma[0]),
                stable_rank=norm**2 / float(sigma[0]) ** 2,
                effective_rank=effective_rank(sigma),
                top_singular=" ".join(f"{s:.4g}" for s in sigma[:TOP_SINGULAR].tolist()),
            )
        else:
            row.update(sigma_1=0.0, stable_rank=0.0, effective_rank=0.0, top_singular="")
        rows.append(row)
    return pd.DataFrame(rows), deltas


def judge_edited(table: pd.DataFrame, cfg: ForensicsConfig) -> pd.DataFrame:
    """`table` with `robust_z` and `edited` (see the module docstring for the rule)."""
    out = table.assign(robust_z=math.nan, edited=False)
    per_layer = out[out["layer"].notna()]
    if per_layer.empty:
        return out
    x = per_layer["relative_norm"]
    median = float(x.median())
    scale = max(1.4826 * float((x - median).abs().median()), cfg.spread * median)
    if scale > 0:
        z = (x - median) / scale
    else:  # most matrices unchanged: every changed one stands out
        z = (x - median).map(lambda d: math.inf if d > 0 else 0.0)
    out.loc[per_layer.index, "robust_z"] = z
    outlier = (z > cfg.outlier_z) & (x > cfg.floor)
    # the fine-tuning level of each module: the strongest direction among its ordinary layers
    level = per_layer["sigma_1"].where(~outlier, 0.0).groupby(per_layer["family"]).transform("max")
    out.loc[per_layer.index, "edited"] = outlier & (per_layer["sigma_1"] > level)
    return out


def facts_estimate(table: pd.DataFrame, deltas: dict, cfg: ForensicsConfig) -> int:
    edited = table[table["edited"]]
    counts = []
    for family, group in edited.groupby("family"):
        others = table[(table["family"] == family) & ~table["edited"]]
        ft_level = float(others["sigma_1"].max()) if len(others) else 0.0
        for name in group["parameter"]:
            sigma = spectrum(deltas[name])
            level = max(ft_level, float(sigma[0]) * cfg.rank_tol)
            counts.append(int((sigma > level).sum()))
    return int(sorted(counts)[len(counts) // 2]) if counts else 0


@torch.no_grad()
def rank_subjects(
    base: LoadedModel, deltas: dict, table: pd.DataFrame, candidates: Sequence[EditRequest]
) -> pd.DataFrame:
    """Candidates by the difference's response to their keys at the edited out-projections."""
    edited = table[table["edited"]]
    scores = torch.zeros(len(candidates), dtype=torch.float64)
    used = 0
    prompts = [fill(r.prompt, r.subject) for r in candidates]
    for _, row in edited.iterrows():
        layer = int(row["layer"])
        if row["parameter"] != base.adapter.mlp_out_weight_name(layer):
            continue  # keys are defined for the MLP out-projection only
        keys = read_at_subject(
            base, prompts, base.adapter.mlp_out_name(layer), inputs=True
        ).double()
        delta = base.adapter.weight_as_out_in(deltas[row["parameter"]]).double()
        response = (keys @ delta.T).norm(dim=1) / (keys.norm(dim=1) * row["sigma_1"] + 1e-30)
        scores += response
        used += 1
    ranked = pd.DataFrame(
        {
            "case_id": [r.case_id for r in candidates],
            "subject": [r.subject for r in candidates],
            "score": (scores / max(used, 1)).tolist(),
        }
    )
    return ranked.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def locate_edits(
    base: LoadedModel,
    suspect: torch.nn.Module,
    candidates: Sequence[EditRequest] = (),
    cfg: ForensicsConfig | None = None,
) -> tuple[dict, pd.DataFrame]:
    """(report, per-matrix table): edited_layers, edited_modules, n_facts_estimate, subjects."""
    cfg = cfg or ForensicsConfig()
    table, deltas = weight_differences(base.model, suspect)
    table = judge_edited(table, cfg)
    edited = table[table["edited"]]
    report = {
        "edited_layers": sorted({int(x) for x in edited["layer"]}),
        "edited_modules": sorted(edited["parameter"]),
        "n_facts_estimate": facts_estimate(table, deltas, cfg),
        "changed_matrices": int((table["norm"] > 0).sum()),
        "matrices": len(table),
        "rule": {
            "outlier_z": cfg.outlier_z,
            "floor": cfg.floor,
            "rank_tol": cfg.rank_tol,
            "text": "relative ‖ΔW‖ a robust outlier (median/MAD z) among all per-layer matrices, "
            "and σ₁(ΔW) above the largest σ₁ of the same module's other layers",
        },
        "subjects": [],
    }
    if candidates and len(edited):
        ranked = rank_subjects(base, deltas, table, candidates)
        report["subjects"] = ranked.to_dict(orient="records")
    return report, table
