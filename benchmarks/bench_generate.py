"""Generation batching: batches of a fixed count against batches cut by tokens, on the two places
evaluation generates (DS answers of the commonsense test sample, and the short continuation stored
with every edit's scores). Each repeat runs both in turn on the same prompts; the script prints the
median seconds, the ratio and whether the answers are identical.

    python benchmarks/bench_generate.py [--model smollm2-135m] [--ds-per-task 10] [--requests 200]
        [--batch 8] [--max-batch-tokens 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

import torch

from editdecay.data.instructions import alpaca_prompt, load_commonsense
from editdecay.data.loaders import load_requests
from editdecay.evaluation.downstream import greedy_continuations
from editdecay.models.registry import load_model


def timed(lm, prompts: list[str], new_tokens: int, **batching) -> tuple[float, list[str]]:
    t0 = time.perf_counter()
    out = greedy_continuations(lm, prompts, new_tokens, **batching)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--ds-per-task", type=int, default=10)
    ap.add_argument("--ds-new-tokens", type=int, default=16)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--answer-tokens", type=int, default=6)
    ap.add_argument(
        "--batch", type=int, default=8, help="the fixed-count batches (the old default)"
    )
    ap.add_argument("--max-batch-tokens", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    lm = load_model(args.model)
    cases = {
        "ds": (
            [alpaca_prompt(ex) for ex in load_commonsense("test", n_per_task=args.ds_per_task)],
            args.ds_new_tokens,
        ),
        "edit answers": (
            [r.text for r in load_requests("counterfact", n=args.requests).requests],
            args.answer_tokens,
        ),
    }
    for name, (prompts, new_tokens) in cases.items():
        fixed, tokens, same = [], [], True
        for _ in range(args.repeats):
            s, a = timed(lm, prompts, new_tokens, batch_size=args.batch)
            fixed.append(s)
            s, b = timed(lm, prompts, new_tokens, max_batch_tokens=args.max_batch_tokens)
            tokens.append(s)
            same &= a == b
        f, t = statistics.median(fixed), statistics.median(tokens)
        print(
            json.dumps(
                {
                    "case": name,
                    "prompts": len(prompts),
                    "new_tokens": new_tokens,
                    f"batch_{args.batch}_s": round(f, 2),
                    f"tokens_{args.max_batch_tokens}_s": round(t, 2),
                    "speedup": round(f / t, 2),
                    "identical_answers": same,
                    "threads": torch.get_num_threads(),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
