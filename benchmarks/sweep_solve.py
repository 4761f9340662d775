"""Sweep the solve's hyper-parameters on one set of requests: MEMIT's λ, or AlphaEdit's null-space
threshold and L2. The target vectors z do not depend on them (AlphaEdit reuses MEMIT's z), so z is
optimised once (optionally cached to a file) and only the layer updates are recomputed per setting.

    python benchmarks/sweep_solve.py --n 100 --lams 200,500,1000,2000,5000,15000
    python benchmarks/sweep_solve.py --n 100 --method alphaedit --rule relative --thresholds 1e-3,1e-2 --l2s 1,10
    python benchmarks/sweep_solve.py --n 100 --method memit,alphaedit --lams 2000 \
        --set targets.clamp_norm_factor=0.75 --set targets.weight_decay=0.5

`--set` changes the editor config (the target settings among them) before z is optimised; with
several methods, each solves from the same z. `--per-edit DIR` writes each setting's per-edit scores
(DIR/<setting>.csv, and DIR/unedited.csv) for paired comparisons (benchmarks/paired_sweep.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from editdecay.data.loaders import load_requests
from editdecay.editing import default_config
from editdecay.editing.alphaedit import nullspace, solve_alphaedit
from editdecay.editing.delta import EditDelta
from editdecay.editing.memit import layer_updates
from editdecay.editing.statistics import second_moments
from editdecay.editing.targets import optimise_targets
from editdecay.editing.templates import context_templates
from editdecay.evaluation.edit_metrics import evaluate_requests, summarise
from editdecay.evaluation.perplexity import heldout_perplexity
from editdecay.evaluation.scorer import Scorer
from editdecay.models.registry import load_model


def setting_name(setting: dict) -> str:
    if setting["method"] == "memit":
        return f"memit-lam{setting['lambda']:g}"
    return f"alphaedit-{setting['rule']}{setting['threshold']:g}-l2{setting['l2']:g}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", default="counterfact")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--method", default="memit", help="memit, alphaedit or both: memit,alphaedit")
    ap.add_argument("--lams", default="200,500,1000,2000,5000,15000")
    ap.add_argument("--rule", default="relative")
    ap.add_argument("--thresholds", default="1e-2")
    ap.add_argument("--l2s", default="10")
    ap.add_argument("--layers", default=None, help="e.g. 3,4,5,6,7")
    ap.add_argument(
        "--z-cache", default=None, help="save/load the optimised targets here (a .pt file)"
    )
    ap.add_argument(
        "--set", action="append", default=[], help="config override, e.g. targets.lr=0.2"
    )
    ap.add_argument("--per-edit", default=None, help="write per-edit scores to this directory")
    args = ap.parse_args()
    methods = args.method.split(",")
    if not set(methods) <= {"memit", "alphaedit"}:
        ap.error(f"--method: unknown {sorted(set(methods) - {'memit', 'alphaedit'})}")
    logging.basicConfig(level=logging.WARNING)

    lm = load_model(args.model)
    requests = load_requests(args.data, n=args.n, offset=args.offset).requests
    overrides = {"layers": [int(x) for x in args.layers.split(",")]} if args.layers else {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    cfg = default_config(methods[0], lm, overrides)
    stats = second_moments(lm, list(cfg.layers), cfg.statistic)
    scorer = Scorer(lm.model, lm.tokenizer, lm.adapter)
    before = evaluate_requests(scorer, requests)
    per_edit = Path(args.per_edit) if args.per_edit else None
    if per_edit is not None:
        per_edit.mkdir(parents=True, exist_ok=True)
        before.to_csv(per_edit / "unedited.csv", index=False)
    print(
        json.dumps({"state": "unedited", **{k: round(v, 1) for k, v in summarise(before).items()}}),
        flush=True,
    )
    templates = context_templates(lm, cfg.templates)
    if args.z_cache and Path(args.z_cache).exists():
        z = torch.load(args.z_cache)
    else:
        t0 = time.perf_counter()
        res = optimise_targets(lm, requests, templates, cfg.z_layer, cfg.targets)
        z = res.z
        rel = [d / float(h.norm()) for d, h in zip(res.delta_norm, res.h_init)]
        print(
            json.dumps(
                {
                    "targets_s": round(time.perf_counter() - t0, 1),
                    "mean_steps": round(sum(res.steps) / len(res.steps), 2),
                    "mean_final_nll": round(sum(res.final_nll) / len(res.final_nll), 4),
                    "mean_delta_over_h": round(sum(rel) / len(rel), 3),
                }
            ),
            flush=True,
        )
        if args.z_cache:
            torch.save(z, args.z_cache)
    print(
        json.dumps({"state": "unedited", "heldout_ppl": round(heldout_perplexity(lm), 3)}),
        flush=True,
    )
    settings = []
    if "memit" in methods:
        settings += [{"method": "memit", "lambda": float(x)} for x in args.lams.split(",")]
    if "alphaedit" in methods:
        settings += [
            {"method": "alphaedit", "rule": args.rule, "threshold": float(t), "l2": float(a)}
            for t in args.thresholds.split(",")
            for a in args.l2s.split(",")
        ]
    for setting in settings:
        if setting["method"] == "memit":
            solve = None
        else:
            spaces = {
                l: nullspace(stats[l], setting["rule"], setting["threshold"]) for l in cfg.layers
            }
            setting["nullspace_dims"] = {str(l): s.dim for l, s in spaces.items()}
            solve = lambda K, R, layer, spaces=spaces, l2=setting["l2"]: solve_alphaedit(  # noqa: E731
                K, R, spaces[layer].projector, torch.zeros(K.shape[0], K.shape[0]), l2
            )
        weights = layer_updates(
            lm, requests, templates, z, cfg.layers, stats, setting.get("lambda", 0.0), solve=solve
        )
        delta = EditDelta(
            weights, setting["method"], cfg.to_dict(), [r.case_id for r in requests], lm.fingerprint
        )
        with delta.apply(lm.model):
            after = evaluate_requests(scorer, requests, reference=before)
            ppl = heldout_perplexity(lm)
        s = summarise(after)
        if per_edit is not None:
            after.to_csv(per_edit / f"{setting_name(setting)}.csv", index=False)
        print(
            json.dumps(
                {
                    **setting,
                    "targets": {k: v for k, v in overrides.items() if k.startswith("targets.")},
                    "layers": list(cfg.layers),
                    "n": len(requests),
                    "offset": args.offset,
                    **{k: round(v, 1) for k, v in s.items()},
                    "heldout_ppl": round(ppl, 3),
                    "rel_norm_dW": {
                        k.split(".")[2]: round(v, 4) for k, v in delta.norms(lm.model).items()
                    },
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
