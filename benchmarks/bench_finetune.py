"""Fine-tuning throughput: LoRA and full FT, fp32 against bf16 autocast, as a fraction of matmul peak.

One process measures, in turn: the machine's dense matmul peak in fp32 and bf16 (square matmuls of
the model's width class), then tokens/s of a few fine-tuning steps for every (method, precision)
pair on the same batches. Model FLOPs per trained token are estimated as 6·N for full fine-tuning
(forward 2N, backward 4N) and 4·N for adapters (no weight gradients of the frozen matrices), with N
the model's parameters outside the embedding lookup; the fraction of peak compares the achieved
FLOP rate with the matmul peak of the same precision.

Within a (method, precision) pair, the variants compared are every combination of `--batching`,
`--adamw` (AdamW's kernel) and `--compile` (`on`: the model's forward wrapped in
`torch.compile(dynamic=True)`, which the product does not do), run interleaved `--repeats` times;
ratios are against the first variant. `first_step_seconds` is the first optimiser step (where
compilation happens) and `steady_tokens_per_second` the rate of the steps after it. Usage:
    python benchmarks/bench_finetune.py [--model smollm2-135m] [--steps 6] [--batch 8] [--micro 4]
        [--methods lora,full] [--precisions fp32,bf16] [--batching padded,by-length]
        [--adamw torch-default,fused] [--compile off,on] [--repeats 1] [--profile] [--device auto]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import time

import torch


def matmul_peak(
    dtype: torch.dtype, device: torch.device, n: int = 1536, seconds: float = 3.0
) -> float:
    return matmul_rate(dtype, device, n, n, n, seconds)


def matmul_rate(
    dtype: torch.dtype, device: torch.device, m: int, k: int, n: int, seconds: float = 3.0
) -> float:
    """GFLOP/s of (m × k) @ (k × n) products."""
    a = torch.randn(m, k, dtype=dtype, device=device)
    b = torch.randn(k, n, dtype=dtype, device=device)
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
    return 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9


def model_shape_rates(config, rows: int, dtype, device) -> dict[str, float]:
    """The matmul rate at the model's own shapes: a micro-batch's `rows` token positions through
    the attention and MLP projections and the LM head (forward), and an MLP weight gradient
    (positions as the inner dimension), which the square-matmul peak overstates."""
    h, f, v = config.hidden_size, config.intermediate_size, config.vocab_size
    shapes = {
        f"{rows}x{h}x{h} (attention)": (rows, h, h),
        f"{rows}x{h}x{f} (MLP up)": (rows, h, f),
        f"{rows}x{f}x{h} (MLP down)": (rows, f, h),
        f"{rows}x{h}x{v} (LM head)": (rows, h, v),
        f"{h}x{rows}x{f} (MLP weight gradient)": (h, rows, f),
    }
    return {name: round(matmul_rate(dtype, device, *mkn, 1.5), 1) for name, mkn in shapes.items()}


def finetune_rate(
    model_name: str,
    method: str,
    precision: str,
    examples,
    steps: int,
    batch: int,
    micro: int,
    batching: str,
    adamw: str = "fused",
    compiled: bool = False,
    profile: bool = False,
) -> dict:
    from editdecay.finetuning import tuner
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
        adamw=adamw,
    )
    cfg = dataclasses.replace(cfg, checkpoint_steps=(1,))
    prepare = tuner._prepare
    if compiled:
        tuner._prepare = lambda *a: _compiled(prepare(*a))
    first_step: list[float] = []
    t0 = time.perf_counter()
    try:
        res = _run(
            finetune, lm, examples, cfg, profile, f"{method} {batching} {adamw}",
            lambda step, model: first_step.append(time.perf_counter() - t0),
        )  # fmt: skip
        elapsed = time.perf_counter() - t0
    finally:
        tuner._prepare = prepare
    first_tokens = first_step_tokens(lm.tokenizer, examples, cfg)
    # res.seconds times training only; the time before it (loading, adapters) is elapsed − seconds
    steady_s = res.seconds - (first_step[0] - (elapsed - res.seconds))
    rate = (
        res.tokens / res.seconds
    )  # tokens trained on (padding excluded), including the first step
    flops_per_token = (6 if method == "full" else 4) * n_params
    return {
        "method": method,
        "precision": precision,
        "batching": batching,
        "adamw": adamw,
        "compile": "on" if compiled else "off",
        "computed_tokens": computed_tokens(lm.tokenizer, examples[: steps * batch], cfg),
        "steps": res.steps,
        "tokens": res.tokens,
        "seconds": round(res.seconds, 2),
        "first_step_seconds": round(res.seconds - steady_s, 1),
        "tokens_per_second": round(rate, 1),
        "steady_tokens_per_second": round((res.tokens - first_tokens) / steady_s, 1),
        "model_gflop_per_second": round(rate * flops_per_token / 1e9, 1),
        "first_loss": round(res.losses[0], 4),
        "last_loss": round(res.losses[-1], 4),
    }


def adamw_step_seconds(model, kernel: str, reps: int = 5) -> float:
    """Seconds of one AdamW step over every weight of `model` (full fine-tuning's optimiser step)."""
    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    kw = {"fused": True} if kernel == "fused" else {}  # as the tuner: torch's own choice
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01, **kw)
    opt.step()  # allocates the moments
    t0 = time.perf_counter()
    for _ in range(reps):
        opt.step()
    return (time.perf_counter() - t0) / reps


def _compiled(model):
    """`model` with its forward compiled in place (the module and its parameters stay the same)."""
    model.forward = torch.compile(model.forward, dynamic=True)
    return model


def _run(finetune, lm, examples, cfg, profile: bool, label: str, on_checkpoint):
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            res = finetune(lm, examples, cfg, on_checkpoint=on_checkpoint)
        logging.getLogger("bench").warning(
            "%s:\n%s",
            label,
            prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18),
        )
        return res
    return finetune(lm, examples, cfg, on_checkpoint=on_checkpoint)


def first_step_tokens(tok, examples, cfg) -> int:
    """Non-pad input tokens of the first step's examples (what `FinetuneResult.tokens` counts)."""
    from editdecay.finetuning.tuner import _encode

    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(cfg.seed))
    return sum(len(_encode(tok, examples[i], cfg)[0]) for i in order[: cfg.batch_size].tolist())


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
    ap.add_argument("--batching", default="by-length", help="padded and/or by-length")
    ap.add_argument("--adamw", default="fused", help="AdamW's kernel: torch-default and/or fused")
    ap.add_argument("--compile", default="off", help="off and/or on (torch.compile the forward)")
    ap.add_argument("--profile", action="store_true", help="log the top operators of each run")
    ap.add_argument(
        "--repeats", type=int, default=1, help="runs per setting, interleaved; the median is kept"
    )
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from editdecay.data.instructions import load_finetune_data, training_text
    from editdecay.models.registry import DEVICE_ENV, load_model, resolve_device

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
    lm = load_model(args.model)
    mean_len = sum(len(lm.tokenizer(training_text(ex))["input_ids"]) for ex in examples) / len(
        examples
    )
    rates = model_shape_rates(lm.model.config, args.micro * round(mean_len), torch.float32, device)
    print(json.dumps({"model_shape_gflops_fp32": rates}))
    if "full" in args.methods.split(","):
        steps = {k: round(adamw_step_seconds(lm.model, k), 3) for k in args.adamw.split(",")}
        print(json.dumps({"full_adamw_step_seconds": steps}))
    del lm
    rows = []
    variants = list(
        itertools.product(args.batching.split(","), args.adamw.split(","), args.compile.split(","))
    )
    name = "/".join
    for method in args.methods.split(","):
        for precision in precisions:
            runs: dict[tuple, list[dict]] = {v: [] for v in variants}
            for repeat in range(args.repeats):  # interleaved, so a slow spell hits every variant
                for v in variants:
                    batching, adamw, compiled = v
                    r = finetune_rate(
                        args.model, method, precision, examples, args.steps, args.batch,
                        args.micro, batching, adamw, compiled == "on", args.profile,
                    )  # fmt: skip
                    r["fraction_of_matmul_peak"] = round(
                        r["model_gflop_per_second"] / peaks[precision], 3
                    )
                    runs[v].append(r)
                    print(json.dumps({**r, "repeat": repeat}))
            mine = []
            for v in variants:
                ranked = sorted(runs[v], key=lambda r: r["steady_tokens_per_second"])
                mine.append(ranked[len(ranked) // 2])
                if args.repeats > 1:
                    print(json.dumps({**mine[-1], "median_of": args.repeats}))
            rows += mine
            ratios = {
                f"{name(v)}_over_{name(variants[0])}": round(
                    r["steady_tokens_per_second"] / mine[0]["steady_tokens_per_second"], 3
                )
                for v, r in zip(variants[1:], mine[1:])
            }
            if ratios:
                print(json.dumps({"method": method, "precision": precision, **ratios}))
    for method in args.methods.split(","):
        if not {"fp32", "bf16"} <= set(precisions):
            break
        fp32, bf16 = (
            next(
                r for r in rows
                if (r["method"], r["precision"]) == (method, p)
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
