"""Fine-tuning throughput: LoRA and full FT, fp32 against bf16 autocast, as a fraction of matmul peak.

One process measures, in turn: the machine's dense matmul peak in fp32 and bf16 (square matmuls of
the model's width class), then tokens/s of a few fine-tuning steps for every (method, precision)
pair on the same batches. Model FLOPs per trained token are estimated as 6·N for full fine-tuning
(forward 2N, backward 4N) and 4·N for adapters (no weight gradients of the frozen matrices), with N
the model's parameters outside the embedding lookup; the fraction of peak compares the achieved
FLOP rate with the matmul peak of the same precision. Usage:
    python benchmarks/bench_finetune.py [--model smollm2-135m] [--steps 6] [--batch 8] [--micro 4]
        [--methods lora,full] [--precisions fp32,bf16] [--batching packed,padded] [--profile] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

import torch


def matmul_peak(
    dtype: torch.dtype, device: torch.device, n: int = 1536, seconds: float = 3.0
) -> float:
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            a @ b
        reps += 10
        sync()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def finetune_rate(
    model_name: str,
    method: str,
    precision: str,
    examples,
    steps: int,
    batch: int,
    micro: int,
    batching: str,
    profile: bool = False,
) -> dict:
    from editdecay.finetuning.tuner import FinetuneConfig, finetune
    from editdecay.models.registry import load_model

    lm = load_model(model_name)
    n_params = sum(p.numel() for n, p in lm.model.named_parameters() if "embed_tokens" not in n)
    if getattr(lm.model.config, "tie_word_embeddings", False):
        n_params += lm.model.get_input_embeddings().weight.numel()  # the tied LM head is a matmul
    cfg = FinetuneConfig(
        method=method,
        precision=precision,
        max_steps=steps,
        batch_size=batch,
        micro_batch_size=micro,
        warmup_steps=1,
        epochs=100,
        batching=batching,
    )
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            res = finetune(lm, examples, cfg)
        logging.getLogger("bench").warning(
            "%s %s:\n%s",
            method,
            batching,
            prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18),
        )
    else:
        res = finetune(lm, examples, cfg)
    rate = (
        res.tokens / res.seconds
    )  # tokens trained on (padding excluded), including the first step
    flops_per_token = (6 if method == "full" else 4) * n_params
    return {
        "method": method,
        "precision": precision,
        "batching": batching,
        "computed_tokens": computed_tokens(lm.tokenizer, examples[: steps * batch], cfg),
        "steps": res.steps,
        "tokens": res.tokens,
        "seconds": round(res.seconds, 2),
        "tokens_per_second": round(rate, 1),
        "model_gflop_per_second": round(rate * flops_per_token / 1e9, 1),
        "first_loss": round(res.losses[0], 4),
        "last_loss": round(res.losses[-1], 4),
    }


def computed_tokens(tok, examples, cfg) -> int:
    """Token positions the forward passes compute, padding included (the first epoch's order)."""
    from editdecay.finetuning.batches import micro_batches
    from editdecay.finetuning.tuner import _encode

    rows = [_encode(tok, ex, cfg) for ex in examples]
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    total = 0
    for k in range(0, len(rows), cfg.batch_size):
        step = [rows[i] for i in order[k : k + cfg.batch_size]]
        for micro in micro_batches(step, cfg):
            total += len(micro) * max(len(r[0]) for r in micro)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--methods", default="lora,full")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--batching", default="padded,by-length", help="padded and/or by-length")
    ap.add_argument("--profile", action="store_true", help="log the top operators of each run")
    ap.add_argument(
        "--repeats", type=int, default=1, help="runs per setting, interleaved; the median is kept"
    )
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from editdecay.data.instructions import load_finetune_data
    from editdecay.models.registry import DEVICE_ENV, resolve_device

    device = resolve_device(args.device)
    os.environ[DEVICE_ENV] = str(device)

    examples = load_finetune_data("commonsense", n=args.steps * args.batch, seed=0)
    n = 8192 if device.type == "cuda" else 1536  # a GPU needs large products to reach its peak
    precisions = args.precisions.split(",")
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {p: matmul_peak(dtypes[p], device, n) for p in precisions}
    print(
        json.dumps(
            {
                "device": str(device),
                "matmul_peak_gflops": {k: round(v, 1) for k, v in peaks.items()},
                "matmul_size": n,
                "threads": torch.get_num_threads(),
            }
        )
    )
    rows = []
    batchings = args.batching.split(",")
    for method in args.methods.split(","):
        for precision in precisions:
            runs: dict[str, list[dict]] = {b: [] for b in batchings}
            for repeat in range(args.repeats):  # interleaved, so a slow spell hits every setting
                for batching in batchings:
                    r = finetune_rate(
                        args.model, method, precision, examples, args.steps, args.batch,
                        args.micro, batching, args.profile,
                    )  # fmt: skip
                    r["fraction_of_matmul_peak"] = round(
                        r["model_gflop_per_second"] / peaks[precision], 3
                    )
                    runs[batching].append(r)
                    print(json.dumps({**r, "repeat": repeat}))
            for batching in batchings:
                ranked = sorted(runs[batching], key=lambda r: r["tokens_per_second"])
                rows.append(ranked[len(ranked) // 2])
                if args.repeats > 1:
                    print(json.dumps({**rows[-1], "median_of": args.repeats}))
            if "padded" in batchings:
                mine = [r for r in rows if (r["method"], r["precision"]) == (method, precision)]
                base = next(r for r in mine if r["batching"] == "padded")
                ratios = {
                    f"{r['batching']}_over_padded": round(
                        r["tokens_per_second"] / base["tokens_per_second"], 3
                    )
                    for r in mine
                    if r["batching"] != "padded"
                }
                print(json.dumps({"method": method, "precision": precision, **ratios}))
    for method in args.methods.split(","):
        if not {"fp32", "bf16"} <= set(precisions):
            break
        fp32, bf16 = (
            next(
                r for r in rows
                if (r["method"], r["precision"], r["batching"]) == (method, p, batchings[0])
            )
            for p in ("fp32", "bf16")
        )  # fmt: skip
        print(
            json.dumps(
                {
                    "method": method,
                    "bf16_over_fp32_tokens_per_second": round(
                        bf16["tokens_per_second"] / fp32["tokens_per_second"], 3
                    ),
                }
            )
        )


if __name__ == "__main__":
    main()
