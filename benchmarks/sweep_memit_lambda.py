"""Sweep MEMIT's λ (mom2_update_weight) on one set of requests; the target vectors z do not depend on
λ, so they are optimised once and only the layer updates are recomputed per value.

    python benchmarks/sweep_memit_lambda.py --n 100 --offset 0 --lams 200,500,1000,2000,5000,15000
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from editdecay.data.loaders import load_requests
from editdecay.editing import default_config
from editdecay.editing.delta import EditDelta
from editdecay.editing.memit import layer_updates
from editdecay.editing.statistics import second_moments
from editdecay.editing.targets import optimise_targets
from editdecay.editing.templates import context_templates
from editdecay.evaluation.edit_metrics import evaluate_requests, summarise
from editdecay.evaluation.scorer import Scorer
from editdecay.models.registry import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", default="counterfact")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--lams", default="200,500,1000,2000,5000,15000")
    ap.add_argument("--layers", default=None, help="e.g. 3,4,5,6,7")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    lm = load_model(args.model)
    requests = load_requests(args.data, n=args.n, offset=args.offset).requests
    overrides = {"layers": [int(x) for x in args.layers.split(",")]} if args.layers else {}
    cfg = default_config("memit", lm, overrides)
    stats = second_moments(lm, list(cfg.layers), cfg.statistic)
    scorer = Scorer(lm.model, lm.tokenizer, lm.adapter)
    before = evaluate_requests(scorer, requests)
    print(json.dumps({"state": "unedited", **{k: round(v, 1) for k, v in summarise(before).items()}}), flush=True)
    templates = context_templates(lm, cfg.templates)
    t0 = time.perf_counter()
    targets = optimise_targets(lm, requests, templates, cfg.z_layer, cfg.targets)
    print(json.dumps({"targets_s": round(time.perf_counter() - t0, 1)}), flush=True)
    for lam in [float(x) for x in args.lams.split(",")]:
        weights = layer_updates(lm, requests, templates, targets.z, cfg.layers, stats, lam)
        delta = EditDelta(weights, "memit", cfg.to_dict(), [r.case_id for r in requests], lm.fingerprint)
        with delta.apply(lm.model):
            after = evaluate_requests(scorer, requests, reference=before)
        s = summarise(after)
        print(json.dumps({"lambda": lam, "layers": list(cfg.layers), "n": len(requests), "offset": args.offset,
                          **{k: round(v, 1) for k, v in s.items()}}), flush=True)


if __name__ == "__main__":
    main()
