"""Compare two settings of a solve sweep edit by edit: the per-edit tables `sweep_solve.py --per-edit`
writes for the same requests, the mean difference (second − first) of each score with a paired
bootstrap 95% interval over the requests.

    python benchmarks/paired_sweep.py runs/sweep21/per-edit/A1/memit-lam2000.csv \
        runs/sweep21/per-edit/B1/memit-lam2000.csv
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

REPLICATES = 2000


def paired(first: pd.DataFrame, second: pd.DataFrame, metric: str, seed: int = 0) -> dict:
    joined = first[["case_id", metric]].merge(
        second[["case_id", metric]], on="case_id", suffixes=("_a", "_b")
    )
    if len(joined) != len(first) or len(joined) != len(second):
        raise SystemExit(f"the two tables do not hold the same requests ({len(joined)} shared)")
    a = 100 * joined[f"{metric}_a"].to_numpy(float)
    b = 100 * joined[f"{metric}_b"].to_numpy(float)
    d = b - a
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(d), size=(REPLICATES, len(d)))
    low, high = np.quantile(d[draws].mean(axis=1), [0.025, 0.975])
    return {
        "metric": metric,
        "n": len(d),
        "first": round(float(a.mean()), 2),
        "second": round(float(b.mean()), 2),
        "diff": round(float(d.mean()), 2),
        "low": round(float(low), 2),
        "high": round(float(high), 2),
        "second_better": int((d > 0).sum()),
        "first_better": int((d < 0).sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("first")
    ap.add_argument("second")
    ap.add_argument("--metrics", default="es,ps,ns")
    args = ap.parse_args()
    first, second = pd.read_csv(args.first), pd.read_csv(args.second)
    for metric in args.metrics.split(","):
        print(
            json.dumps(
                {
                    "first_file": args.first,
                    "second_file": args.second,
                    **paired(first, second, metric),
                }
            )
        )


if __name__ == "__main__":
    main()
