"""AlphaEdit (Fang et al. 2025): MEMIT's keys, targets and residual spreading, with the update projected
onto the null space of the preserved knowledge's keys.

    P_l  = U₀U₀ᵀ, U₀ the eigenvectors of C_l with small eigenvalues                   (AlphaEdit §2.1)
    ΔW_l = R Kᵀ P [ (K Kᵀ + K_p K_pᵀ) P + α I ]⁻¹                                       (AlphaEdit eq. 14)

Every row of ΔW lies in range(P), so ΔW k₀ ≈ 0 for keys k₀ of the preserved text. K_p K_pᵀ sums
K Kᵀ over earlier batches; it lives in an explicit `AlphaEditState` that is saved with each delta, so a
sequential run can stop and resume.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..data.requests import EditRequest
from ..models.registry import LoadedModel
from .config import AlphaEditConfig
from .delta import EditDelta
from .keys import compute_keys
from .memit import Prepared, layer_updates, prepare
from .statistics import SecondMoment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NullSpace:
    layer: int
    projector: torch.Tensor  # (d_k, d_k), fp32
    dim: int  # directions kept (the null space's dimension)
    eigenvalue_max: float


def nullspace(stat: SecondMoment, rule: str, threshold: float) -> NullSpace:
    """P from the eigen-decomposition of C (symmetric PSD, so eigh; fp64 for the small eigenvalues)."""
    evals, evecs = torch.linalg.eigh(stat.matrix.double())  # ascending
    top = float(evals[-1])
    if rule == "relative":
        keep = evals < threshold * top
    elif rule == "absolute":
        keep = evals < threshold
    elif rule == "keep":
        k = int(threshold)
        if not 0 < k <= len(evals):
            raise ValueError(
                f"nullspace rule 'keep' needs 1 ≤ threshold ≤ {len(evals)}, got {threshold}"
            )
        keep = torch.arange(len(evals)) < k
    else:
        raise ValueError(f"unknown nullspace rule {rule!r}; use 'relative', 'absolute' or 'keep'")
    dim = int(keep.sum())
    if dim == 0:
        raise ValueError(
            f"layer {stat.layer}: the {rule} rule with threshold {threshold} keeps no direction "
            f"(eigenvalues {float(evals[0]):.2e} … {top:.2e})"
        )
    u0 = evecs[:, keep]
    return NullSpace(stat.layer, (u0 @ u0.T).float(), dim, top)


@dataclass
class AlphaEditState:
    """Σ K Kᵀ of all earlier batches, per layer (the K_p K_pᵀ term), and how many edits it holds."""

    kk: dict[int, torch.Tensor] = field(default_factory=dict)
    n_edits: int = 0

    def get(self, layer: int, d_k: int) -> torch.Tensor:
        return self.kk.get(layer, torch.zeros(d_k, d_k))

    def to_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"kk.{l}": t.contiguous() for l, t in self.kk.items()}
        out["n_edits"] = torch.tensor(self.n_edits)
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> AlphaEditState:
        kk = {int(k.split(".")[1]): v for k, v in t.items() if k.startswith("kk.")}
        return cls(kk, int(t["n_edits"]) if "n_edits" in t else 0)


def solve_alphaedit(
    K: torch.Tensor, R: torch.Tensor, P: torch.Tensor, kk_prev: torch.Tensor, l2: float
) -> torch.Tensor:
    """ΔW (d_v × d_k) = R Kᵀ P [(KKᵀ + K_pK_pᵀ) P + αI]⁻¹, computed as the transpose of
    [P (KKᵀ + K_pK_pᵀ) + αI]⁻¹ P K Rᵀ (P and the Gram matrices are symmetric)."""
    dev = K.device
    K64, R64, P64 = K.double(), R.to(dev, torch.float64), P.to(dev, torch.float64)
    A = P64 @ (K64 @ K64.T + kk_prev.to(dev, torch.float64)) + l2 * torch.eye(
        P.shape[0], dtype=torch.float64, device=dev
    )
    return torch.linalg.solve(A, P64 @ K64 @ R64.T).T


def alphaedit_edit(
    lm: LoadedModel,
    requests: Sequence[EditRequest],
    cfg: AlphaEditConfig,
    stats: dict[int, SecondMoment] | None = None,
    state: AlphaEditState | None = None,
    prepared: Prepared | None = None,
) -> EditDelta:
    """One AlphaEdit batch on top of `state` (earlier batches); the returned delta carries the new state.
    `prepared` (from `memit.prepare` with the same model, requests and config) skips the targets."""
    state = state or AlphaEditState()
    prep = prepared or prepare(lm, requests, cfg, stats)
    spaces = {
        l: nullspace(prep.stats[l], cfg.nullspace_rule, cfg.nullspace_threshold) for l in cfg.layers
    }
    for l, ns in spaces.items():
        log.info("layer %d: null space keeps %d of %d directions", l, ns.dim, ns.projector.shape[0])

    def solve(K: torch.Tensor, R: torch.Tensor, layer: int) -> torch.Tensor:
        return solve_alphaedit(K, R, spaces[layer].projector, state.get(layer, K.shape[0]), cfg.l2)

    weights = layer_updates(
        lm,
        requests,
        prep.templates,
        prep.targets.z,
        cfg.layers,
        prep.stats,
        0.0,
        prep.timings,
        solve=solve,
    )
    delta = EditDelta(
        weights=weights,
        method="alphaedit",
        config=cfg.to_dict(),
        request_ids=[r.case_id for r in requests],
        model_fingerprint=lm.fingerprint,
        statistic_keys={str(l): prep.stats[l].key for l in cfg.layers},
        seeds={"templates": cfg.templates.seed},
        info={**prep.info(cfg), "nullspace_dims": {str(l): s.dim for l, s in spaces.items()}},
    )
    delta.state = _next_state(lm, requests, prep.templates, cfg, delta, state).to_tensors()
    return delta


def _next_state(
    lm: LoadedModel,
    requests: Sequence[EditRequest],
    templates: Sequence[str],
    cfg: AlphaEditConfig,
    delta: EditDelta,
    state: AlphaEditState,
) -> AlphaEditState:
    """K_pK_pᵀ += K Kᵀ with this batch's keys recomputed on the model with the batch written."""
    new = {}
    with delta.apply(lm.model, force=True):
        for layer in cfg.layers:
            K = compute_keys(lm, requests, templates, layer).T
            new[layer] = state.get(layer, K.shape[0]) + (K @ K.T).cpu()
    return AlphaEditState(new, state.n_edits + len(requests))
