"""Teacher-forced scoring with shared rows against one row per (prompt, target) pair.

Times DS rank classification (seconds per test item) and the CounterFact / zsRE edit metrics (seconds
per edit) both ways in one process and checks that the two give the same predictions and scores.

    python benchmarks/bench_scoring.py --model smollm2-135m --ds-per-task 5 --edits 20
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from editdecay.data.loaders import load_requests
from editdecay.evaluation.downstream import downstream_accuracy
from editdecay.evaluation.edit_metrics import evaluate_requests
from editdecay.evaluation.scorer import Scorer
from editdecay.models.registry import load_model

log = logging.getLogger("bench_scoring")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--ds-per-task", type=int, default=5)
    ap.add_argument("--edits", type=int, default=20)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    lm = load_model(args.model)
    log.info("model %s, torch threads %d", args.model, torch.get_num_threads())

    def scorer(share: bool) -> Scorer:
        return Scorer(lm.model, lm.tokenizer, lm.adapter, share_rows=share)

    rank = {}
    for share in (False, True):
        t0 = time.perf_counter()
        _, per_item = downstream_accuracy(
            lm, n_per_task=args.ds_per_task, modes=("rank",), details=True, scorer=scorer(share)
        )
        rank[share] = (time.perf_counter() - t0) / len(per_item), per_item["prediction"].tolist()
    log.info(
        "DS rank classification: %.3f s/item one row per pair, %.3f shared (%.2fx); same predictions: %s",
        rank[False][0],
        rank[True][0],
        rank[False][0] / rank[True][0],
        rank[False][1] == rank[True][1],
    )

    for data in ("counterfact", "zsre"):
        requests = load_requests(data, n=args.edits).requests
        out = {}
        for share in (False, True):
            t0 = time.perf_counter()
            table = evaluate_requests(scorer(share), requests)
            out[share] = (time.perf_counter() - t0) / len(requests), table
        numbers = out[False][1].select_dtypes("number").columns
        diff = float((out[False][1][numbers] - out[True][1][numbers]).abs().max().max())
        log.info(
            "%s edit metrics: %.3f s/edit one row per pair, %.3f shared (%.2fx); max |difference| %.2g",
            data,
            out[False][0],
            out[True][0],
            out[False][0] / out[True][0],
            diff,
        )


if __name__ == "__main__":
    main()
