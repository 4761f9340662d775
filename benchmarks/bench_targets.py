"""Seconds per edit of the target (z) optimisation: batched vs one request at a time, same code.

Each mode runs in its own subprocess so its peak resident memory is its own. Prints one JSON line
per mode and the ratio. Usage:
    python benchmarks/bench_targets.py [--n 50] [--model smollm2-135m] [--batch 50] [--compare-prefix]
        [--compare-replay] [--skip-single]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time


def run_mode(model: str, n: int, batch: int, reuse_prefix: bool, replay: bool) -> dict:
    from editdecay.data.loaders import load_requests
    from editdecay.editing.config import MemitConfig, TargetConfig
    from editdecay.editing.targets import optimise_targets
    from editdecay.editing.templates import context_templates
    from editdecay.models.registry import load_model

    lm = load_model(model)
    requests = load_requests("counterfact", n=n).requests
    cfg = MemitConfig()
    templates = context_templates(lm, cfg.templates)
    tcfg = TargetConfig(
        **{**cfg.targets.__dict__, "batch_requests": batch, "reuse_prefix": reuse_prefix}
    )
    t0 = time.perf_counter()
    res = optimise_targets(lm, requests, templates, cfg.z_layer, tcfg, replay_lower_blocks=replay)
    dt = time.perf_counter() - t0
    return {
        "model": model,
        "n": n,
        "batch_requests": batch,
        "reuse_prefix": reuse_prefix,
        "replay_lower_blocks": replay,
        "seconds": round(dt, 2),
        "seconds_per_edit": round(dt / n, 3),
        "mean_steps": sum(res.steps) / n,
        "mean_final_nll": round(sum(res.final_nll) / n, 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument(
        "--compare-prefix", action="store_true", help="also time batched without prefix reuse"
    )
    ap.add_argument(
        "--compare-replay",
        action="store_true",
        help="also time batched with the blocks below z_layer recomputed at every step",
    )
    ap.add_argument("--skip-single", action="store_true", help="leave out the one-at-a-time mode")
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        batch, reuse, replay = args.mode.split(":")
        print(json.dumps(run_mode(args.model, args.n, int(batch), reuse == "1", replay == "1")))
        return
    logging.basicConfig(level=logging.WARNING)
    modes = [("batched", f"{args.batch}:1:1")] + (
        [] if args.skip_single else [("one-at-a-time", "1:1:1")]
    )
    if args.compare_prefix:
        modes.append(("batched, no prefix reuse", f"{args.batch}:0:1"))
    if args.compare_replay:
        modes.append(("batched, lower blocks recomputed", f"{args.batch}:1:0"))
    results = {}
    for label, mode in modes:
        out = subprocess.run(
            [sys.executable, __file__, "--n", str(args.n), "--model", args.model, "--mode", mode],
            capture_output=True,
            text=True,
            check=True,
        )
        results[label] = json.loads(out.stdout.strip().splitlines()[-1])
        print(label, json.dumps(results[label]), flush=True)
    if "one-at-a-time" in results:
        one = results["one-at-a-time"]["seconds"]
        print(f"speed-up of batched over one-at-a-time: {one / results['batched']['seconds']:.2f}x")
    if args.compare_prefix:
        print(
            f"speed-up of prefix reuse (batched): "
            f"{results['batched, no prefix reuse']['seconds'] / results['batched']['seconds']:.2f}x"
        )

    if args.compare_replay:
        print(
            f"speed-up of replaying the lower blocks (batched): "
            f"{results['batched, lower blocks recomputed']['seconds'] / results['batched']['seconds']:.2f}x"
        )


if __name__ == "__main__":
    main()
