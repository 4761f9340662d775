"""ROME (Meng et al. 2022): one rank-one update of one MLP out-projection per fact.

For each request, on the model that already holds the previous ones:
    k*  = mean key at the subject's last token over the context templates           (ROME eq. 3)
    u   = C⁻¹k* / ‖C⁻¹k*‖  (or k*/‖k*‖ without the second-moment adjustment)
    v*  = the out-projection's output at the plain prompt, shifted by an optimised δ (targets.py)
    ΔW  = (v* − W k_cur) uᵀ / (u·k_cur), so that (W + ΔW) k_cur = v*                   (ROME eq. 2)
Context templates are the MEMIT ones (plain prompt weighted ½), not ROME's 21 short samples.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch

from ..data.requests import EditRequest
from ..data.tokenization import fill
from ..models.registry import LoadedModel
from ..progress import progress
from .config import RomeConfig
from .delta import EditDelta
from .keys import compute_keys, read_at_subject
from .statistics import SecondMoment, second_moments
from .targets import EditingError, optimise_targets
from .templates import context_templates

log = logging.getLogger(__name__)


def rank_one_update(
    k_star: torch.Tensor,
    k_cur: torch.Tensor,
    v_star: torch.Tensor,
    w_k_cur: torch.Tensor,
    C: torch.Tensor | None,
) -> torch.Tensor:
    """ΔW (d_v × d_k) of rank one with (W + ΔW) k_cur = v*, along u ∝ C⁻¹k* (or k*)."""
    dev = k_star.device
    u = (
        torch.linalg.solve(C.to(dev, torch.float64), k_star.double())
        if C is not None
        else k_star.double()
    )
    u = u / u.norm()
    right = (v_star.to(dev, torch.float64) - w_k_cur.double()) / (u @ k_cur.double())
    return torch.outer(right, u)


def rome_edit(
    lm: LoadedModel,
    requests: Sequence[EditRequest],
    cfg: RomeConfig,
    stats: dict[int, SecondMoment] | None = None,
) -> EditDelta:
    if len(cfg.layers) != 1:
        raise ValueError(f"ROME edits exactly one layer; got layers {list(cfg.layers)}")
    if not requests:
        raise ValueError("no edit requests given")
    layer = cfg.layers[0]
    adapter, model = lm.adapter, lm.model
    adapter.check_layer(model, layer)
    timings = {"statistic_s": 0.0, "targets_s": 0.0, "keys_s": 0.0}
    t0 = time.perf_counter()
    C = None
    if cfg.mom2_adjustment:
        stats = stats or second_moments(lm, [layer], cfg.statistic)
        C = stats[layer].matrix
    timings["statistic_s"] = time.perf_counter() - t0
    templates = context_templates(lm, cfg.templates)
    module = adapter.mlp_out_name(layer)
    name = adapter.mlp_out_weight_name(layer)
    param = dict(model.named_parameters())[name]
    original = param.detach().clone()
    nll, norms = [], []
    try:
        for req in progress(requests, desc="ROME edits"):
            t0 = time.perf_counter()
            target = optimise_targets(lm, [req], templates, module, cfg.targets)
            timings["targets_s"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            k_star = compute_keys(lm, [req], templates, layer)[0]
            plain = [fill(req.prompt, req.subject)]
            k_cur = read_at_subject(lm, plain, module, inputs=True)[0]
            w_k_cur = read_at_subject(lm, plain, module, inputs=False)[0]
            timings["keys_s"] += time.perf_counter() - t0
            try:
                dw = rank_one_update(k_star, k_cur, target.z[0], w_k_cur, C).float()
            except torch.linalg.LinAlgError as err:  # CUDA refuses a singular C; the CPU gives NaN
                raise EditingError(
                    f"non-finite ROME update for request {req.case_id}: the solve failed ({err}); "
                    "check the statistic"
                ) from None
            if not torch.isfinite(dw).all():
                raise EditingError(f"non-finite ROME update for request {req.case_id}")
            with torch.no_grad():
                param.add_(adapter.delta_to_param_shape(dw).to(param.device))
            nll.append(target.final_nll[0])
            norms.append(float(dw.norm()))
        total = (param.detach() - original).cpu()
    finally:
        with torch.no_grad():
            param.copy_(original)
    log.info(
        "ROME: %d rank-one updates at layer %d, |ΔW| %.3f",
        len(requests),
        layer,
        float(total.norm()),
    )
    return EditDelta(
        weights={name: total},
        method="rome",
        config=cfg.to_dict(),
        request_ids=[r.case_id for r in requests],
        model_fingerprint=lm.fingerprint,
        statistic_keys={str(layer): stats[layer].key} if C is not None else {},
        seeds={"templates": cfg.templates.seed},
        info={
            "context_templates": templates,
            "timings": timings,
            "targets": {"final_nll": nll, "update_norm": norms},
        },
    )
