"""MEMIT (Meng et al. 2023): write many facts into the MLP out-projections of several layers at once.

    1. z_i    target residual at the last edit layer for request i            (targets.py, MEMIT §1.4)
    2. for each edit layer l, ascending:
         K    keys at l on the model edited so far                           (keys.py, MEMIT §1.3)
         R    (Z − h_cur) / (layers left), h_cur read at the last edit layer (the residual is spread)
         ΔW_l = R Kᵀ (λ C_l + K Kᵀ)⁻¹                                          (MEMIT eq. 14, fp64 solve)
         W_l ← W_l + ΔW_l immediately, so higher layers' keys see it
    3. restore the original weights and return the deltas as an EditDelta.

The model is left exactly as it was; apply the returned delta to get the edited model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data.requests import EditRequest
from ..data.tokenization import fill
from ..models.registry import LoadedModel
from .config import LocateEditConfig, MemitConfig
from .delta import EditDelta
from .keys import compute_keys, current_residual
from .statistics import SecondMoment, second_moments
from .targets import EditingError, TargetResult, optimise_targets
from .templates import context_templates

log = logging.getLogger(__name__)


def solve_memit(K: torch.Tensor, R: torch.Tensor, C: torch.Tensor, lam: float) -> torch.Tensor:
    """ΔW (d_v × d_k) minimising ‖ΔW K − R‖² + λ·tr(ΔW C ΔWᵀ), with K: (d_k, n), R: (d_v, n) (MEMIT eq. 14)."""
    K64, R64 = K.double(), R.double()
    A = torch.linalg.solve(
        lam * C.to(K.device, torch.float64) + K64 @ K64.T, K64
    )  # (d_k, n) = (λC + KKᵀ)⁻¹ K
    return R64 @ A.T


@dataclass
class Prepared:
    """What every locate-then-edit method computes before its solve."""

    stats: dict[int, SecondMoment]
    templates: list[str]
    targets: TargetResult
    timings: dict[str, float]

    def info(self, cfg: LocateEditConfig) -> dict:
        return {
            "context_templates": self.templates,
            "timings": self.timings,
            "targets": {
                "delta_norm": self.targets.delta_norm,
                "final_nll": self.targets.final_nll,
                "steps": self.targets.steps,
            },
            "statistic_tokens": {str(l): self.stats[l].n_tokens for l in cfg.layers},
        }


def prepare(
    lm: LoadedModel,
    requests: Sequence[EditRequest],
    cfg: LocateEditConfig,
    stats: dict[int, SecondMoment] | None = None,
) -> Prepared:
    """Statistic C per layer, context templates and target vectors z (steps 0–1)."""
    if not requests:
        raise ValueError("no edit requests given")
    for layer in cfg.layers:
        lm.adapter.check_layer(lm.model, layer)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    stats = stats or second_moments(lm, list(cfg.layers), cfg.statistic)
    timings["statistic_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    templates = context_templates(lm, cfg.templates)
    targets = optimise_targets(lm, requests, templates, cfg.z_layer, cfg.targets)
    timings["targets_s"] = time.perf_counter() - t0
    log.info(
        "targets: mean |delta| %.2f, mean final NLL %.3f, mean steps %.1f",
        sum(targets.delta_norm) / len(requests),
        sum(targets.final_nll) / len(requests),
        sum(targets.steps) / len(requests),
    )
    return Prepared(stats, templates, targets, timings)


@torch.no_grad()
def through_post_norm(
    lm: LoadedModel, requests: Sequence[EditRequest], layer: int, R: torch.Tensor
) -> torch.Tensor:
    """Where a norm sits between the MLP output and the residual (Gemma 2/3), turn the wanted residual
    change R (d × n) into the change of the MLP output that produces it (see `pre_norm_change`)."""
    from .keys import read_at_subject

    module = lm.adapter.mlp_out_name(layer)
    norm = lm.model.get_submodule(lm.adapter.mlp_post_norm.format(layer))
    v = read_at_subject(lm, [fill(r.prompt, r.subject) for r in requests], module, inputs=False)
    return pre_norm_change(norm, v, R.T).T


def pre_norm_change(norm: torch.nn.Module, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Δv (n × d) such that norm(v + Δv) is the output closest to norm(v) + r that the norm can produce,
    for an RMS norm y = s ⊙ x / rms(x).

    The norm's outputs are exactly s ⊙ u with rms(u) = 1, so with y = norm(v) + r we solve
        min ‖s ⊙ u − y‖²  subject to  ‖u‖² = d,
    whose solution is u_i = s_i y_i / (s_i² + μ) for the one scalar μ > −min s_i² that meets the
    constraint (found by bisection). Dividing y by s instead would blow up the coordinates where s is
    tiny but not zero (Gemma 3 has several), which points u almost entirely along them. Coordinates the
    norm erases (s = 0) keep v's value, since they cannot change the output. v + Δv keeps v's rms.
    """
    dtype = next(norm.parameters()).dtype
    d = v.shape[-1]
    s = norm(torch.ones(1, d, dtype=dtype, device=v.device)).double()[
        0
    ]  # the scale, since rms(1) = 1
    v64 = v.double()
    rms_v = v64.pow(2).mean(-1, keepdim=True).sqrt()
    y = norm(v.to(dtype)).double() + r.double()
    active = s.abs() > 1e-6 * s.abs().max()
    u = v64 / rms_v
    budget = (d - u[:, ~active].pow(2).sum(-1, keepdim=True)).clamp_min(1e-12)
    s_a = s[active]
    sy, s2 = s_a * y[:, active], s_a.pow(2)

    def squared_norm(mu: torch.Tensor) -> torch.Tensor:
        return (sy / (s2 + mu)).pow(2).sum(-1, keepdim=True)

    lo = torch.full_like(budget, -float(s2.min()) * (1 - 1e-9))
    hi = sy.norm(dim=-1, keepdim=True) / budget.sqrt() + 1e-12  # ‖u(hi)‖² ≤ ‖s ⊙ y‖² / hi² = budget
    for _ in range(200):
        mid = (lo + hi) / 2
        too_long = squared_norm(mid) > budget
        lo, hi = torch.where(too_long, mid, lo), torch.where(too_long, hi, mid)
    u[:, active] = sy / (s2 + hi)
    u = u / u.pow(2).mean(-1, keepdim=True).sqrt()
    return (u * rms_v - v64).float()


def memit_edit(
    lm: LoadedModel,
    requests: Sequence[EditRequest],
    cfg: MemitConfig,
    stats: dict[int, SecondMoment] | None = None,
    prepared: Prepared | None = None,
) -> EditDelta:
    """`prepared` (from `prepare` with the same model, requests and config) skips steps 0–1."""
    prep = prepared or prepare(lm, requests, cfg, stats)
    delta = layer_updates(
        lm,
        requests,
        prep.templates,
        prep.targets.z,
        cfg.layers,
        prep.stats,
        cfg.mom2_update_weight,
        prep.timings,
    )
    return EditDelta(
        weights=delta,
        method="memit",
        config=cfg.to_dict(),
        request_ids=[r.case_id for r in requests],
        model_fingerprint=lm.fingerprint,
        statistic_keys={str(l): prep.stats[l].key for l in cfg.layers},
        seeds={"templates": cfg.templates.seed},
        info=prep.info(cfg),
    )


def layer_updates(
    lm: LoadedModel,
    requests: Sequence[EditRequest],
    templates: Sequence[str],
    z: torch.Tensor,
    layers: Sequence[int],
    stats: dict[int, SecondMoment],
    lam: float,
    timings: dict[str, float] | None = None,
    solve=None,
) -> dict[str, torch.Tensor]:
    """Steps 2–3 above; `solve(K, R, layer)` may replace the MEMIT solve (AlphaEdit and friends)."""
    timings = timings if timings is not None else {}
    adapter, model = lm.adapter, lm.model
    z_layer = max(layers)
    params = dict(model.named_parameters())
    originals = {
        adapter.mlp_out_weight_name(l): params[adapter.mlp_out_weight_name(l)].detach().clone()
        for l in layers
    }
    deltas: dict[str, torch.Tensor] = {}
    timings.setdefault("keys_s", 0.0)
    timings.setdefault("solve_s", 0.0)
    try:
        for i, layer in enumerate(sorted(layers)):
            t0 = time.perf_counter()
            K = compute_keys(lm, requests, templates, layer).T  # (d_k, n)
            h_cur = current_residual(lm, requests, z_layer)  # (n, d)
            timings["keys_s"] += time.perf_counter() - t0
            R = (z.to(h_cur.device) - h_cur).T / (len(layers) - i)
            if adapter.mlp_post_norm:
                R = through_post_norm(lm, requests, layer, R)
            t0 = time.perf_counter()
            try:
                dw = solve(K, R, layer) if solve else solve_memit(K, R, stats[layer].matrix, lam)
            except (
                torch.linalg.LinAlgError
            ) as err:  # CUDA's solver refuses a NaN/singular system outright
                raise EditingError(
                    f"non-finite update at layer {layer}: the solve failed ({err}); "
                    "check the statistic and λ"
                ) from None
            dw = dw.float()
            timings["solve_s"] += time.perf_counter() - t0
            if not torch.isfinite(dw).all():
                raise EditingError(f"non-finite update at layer {layer}; check the statistic and λ")
            name = adapter.mlp_out_weight_name(layer)
            w = params[name]
            dw = adapter.delta_to_param_shape(dw).to(w.device)
            with torch.no_grad():
                w.add_(dw)
            deltas[name] = dw.cpu()
            log.info(
                "layer %d: |ΔW| %.3f (%.2f%% of |W|), mean residual norm %.2f",
                layer,
                float(dw.norm()),
                100 * float(dw.norm() / originals[name].norm()),
                float(R.norm(dim=0).mean()),
            )
    finally:
        with torch.no_grad():
            for name, w in originals.items():
                params[name].copy_(w)
    return deltas
