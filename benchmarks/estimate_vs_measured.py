"""The cost model's estimate of a study against the seconds its finished stages took.

Plans the study (loading each model once, for the stage keys), then, per model and stage kind,
prints the stages finished in the store, their estimated seconds (study/estimate.py) and the
seconds recorded in their stage.json, with the ratio measured / estimated. Usage:
    python benchmarks/estimate_vs_measured.py --store runs/repro-store [--scale small]
        [--models smollm2-135m,gemma3-270m] [--blocks edit-layers] [--study FILE.toml]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd


def load(args) -> object:
    from editdecay.cli.study import _load_study
    from editdecay.study.reproduce import reproduction_study

    if args.study:
        return _load_study(Path(args.study), None)
    only = args.blocks.split(",") if args.blocks else None
    return reproduction_study(args.scale, args.models.split(","), Path("unused"), only=only)


def measured_stages(study, store: Path) -> pd.DataFrame:
    """Model, kind and recorded seconds of every stage of `study` finished in `store`."""
    from editdecay.study.pipeline import make_plan

    plan = make_plan(study, store=store)
    rows = []
    for stage in plan.stages:
        if plan.store.done(stage):
            record = plan.store.record(stage)
            rows.append(
                {
                    "model": stage.settings.get("model"),
                    "kind": stage.kind,
                    "seconds": record["seconds"],
                }
            )
    return pd.DataFrame(rows, columns=["model", "kind", "seconds"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--scale", default="small")
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--blocks", default="")
    ap.add_argument("--study", help="a study file instead of the reproduction grid")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from editdecay.study.estimate import planned_stages

    study = load(args)
    estimated = planned_stages(study.configs)
    measured = measured_stages(study, Path(args.store))
    est = estimated.groupby(["model", "kind"])["seconds"].agg(["count", "sum"])
    got = measured.groupby(["model", "kind"])["seconds"].agg(["count", "sum"])
    est.columns, got.columns = ["stages", "estimated_s"], ["done", "measured_s"]
    table = est.join(got, how="outer").fillna(0)
    table["ratio"] = (table["measured_s"] / table["estimated_s"]).round(2)
    print(table.round(1).to_string())
    complete = table[table["stages"] == table["done"]]
    print(
        json.dumps(
            {
                "estimated_hours_all": round(float(table["estimated_s"].sum()) / 3600, 2),
                "finished_kinds_estimated_hours": round(
                    float(complete["estimated_s"].sum()) / 3600, 2
                ),
                "finished_kinds_measured_hours": round(
                    float(complete["measured_s"].sum()) / 3600, 2
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
