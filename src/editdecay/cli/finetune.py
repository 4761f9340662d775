"""`editdecay finetune`: fine-tune any model outside a study, optionally keeping its edits."""

from __future__ import annotations

from pathlib import Path

import typer

from ..finetuning.config import FinetuneConfig
from .edit import VERBOSE_HELP, _overrides, _parse_layers
from .errors import _user_errors, console, setup_logging


def finetune(
    model: str = typer.Option(..., help="the model to fine-tune: registered name, HF directory"),
    data: str = typer.Option(
        "commonsense", help="commonsense, commonsense:<task>, hotpotqa or an instruction file"
    ),
    examples: int = typer.Option(1000, help="fine-tuning examples (0: all)"),
    method: str = typer.Option("lora", help="lora, dora or full"),
    out: Path = typer.Option(..., help="output directory (adapter/, model/, finetune.json)"),
    preserve_edits: Path | None = typer.Option(
        None, help="the edits to keep: an edit or attack output directory (delta/, requests.jsonl)"
    ),
    preserve: str = typer.Option(
        "none",
        help="none, subspace, activation, distill, freeze or paraphrase (needs --preserve-edits)",
    ),
    apply_edits: bool = typer.Option(
        False, "--apply-edits", help="add the --preserve-edits delta to the model first"
    ),
    merge: bool = typer.Option(False, "--merge", help="also write the merged HF model directory"),
    layers: str | None = typer.Option(
        None, help="all, edited, non-edited, or layer indices ('4,5' or '4-8')"
    ),
    steps: int | None = typer.Option(None, help="stop after this many optimiser steps"),
    lr: float | None = typer.Option(None, help="learning rate (default: the method's recipe)"),
    seed: int = typer.Option(0, help="data order, adapter initialisation and dropout"),
    data_seed: int | None = typer.Option(None, help="the data sample (default: --seed)"),
    set_: list[str] = typer.Option(
        [], "--set", help="a FinetuneConfig field, KEY=VALUE (e.g. preserve.weight=10); repeatable"
    ),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Fine-tune MODEL on instruction data (LoRA / DoRA adapter or full), optionally protecting the
    edits of --preserve-edits; writes an adapter, a merged HF directory with --merge, the losses
    and finetune.json. Rerun the same command to resume an interrupted run."""
    setup_logging(verbose)
    from ..finetuning.job import FinetuneJob, run_finetune_job

    with _user_errors():
        overrides = _overrides(FinetuneConfig, None, set_, None, None, None)
        nested: dict = {}
        for key, value in overrides.items():
            head, _, rest = key.partition(".")
            if rest:
                nested.setdefault(head, {})[rest] = value
            else:
                nested[key] = value
        if layers is not None:
            named = layers in ("all", "edited", "non-edited")
            nested["layers"] = layers if named else tuple(_parse_layers(layers))
        if steps is not None:
            nested["max_steps"] = steps
        if lr is not None:
            nested["lr"] = lr
        job = FinetuneJob(
            model=model,
            out=str(out),
            data=data,
            examples=examples or None,
            method=method,
            preserve_edits=str(preserve_edits) if preserve_edits else None,
            preserve=preserve,
            apply_edits=apply_edits,
            merge=merge,
            seed=seed,
            data_seed=data_seed,
            finetune=nested,
        )
        record = run_finetune_job(job)
    console.print(
        f"{record['steps']} steps on {record['n_examples']} examples in {record['seconds']:.0f} s "
        f"({record['tokens_per_second']:.0f} tokens/s); wrote {', '.join(record['written'])} "
        f"under {out}"
    )


def repair(
    model: str = typer.Option(..., help="the fine-tuned model (HF directory or name)"),
    edits: Path = typer.Option(
        ..., help="the edits it should carry: an edit output directory (delta/, requests.jsonl)"
    ),
    out: Path = typer.Option(..., help="output directory (repair/, repair.json, repair_edits.csv)"),
    stats_from: str | None = typer.Option(
        None, help="model whose statistic C the re-edit uses (default: the delta's base model)"
    ),
    scores: Path | None = typer.Option(
        None,
        help="per-edit scores of the edited model (CSV or Parquet with case_id, es / rewrite_acc): "
        "only edits that succeeded there count as flipped (default: EDITS/edits.csv if present)",
    ),
    full: bool = typer.Option(True, "--full/--no-full", help="also time a full re-edit"),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Score the edits on the fine-tuned MODEL, re-edit only those that flipped (failing now; with
    EDITS/edits.csv, also successful on M_ed), and compare with a full re-edit."""
    setup_logging(verbose)
    import json

    import pandas as pd

    from ..editing import get_editor
    from ..editing.repair import repair_edits
    from ..editing.statistics import second_moments
    from ..finetuning.job import load_edits
    from ..models.registry import load_model
    from ..report.defence_pages import write_defence_page

    with _user_errors():
        delta, requests = load_edits(edits)
        editor = get_editor(delta.method)
        cfg = editor.config_class.from_dict(delta.config)
        tuned = load_model(model)
        base_name = stats_from or delta.info.get("model")
        stats = None
        if base_name and hasattr(cfg, "statistic"):
            stats = second_moments(load_model(base_name), list(cfg.layers), cfg.statistic)
        source = scores or (edits / "edits.csv" if (edits / "edits.csv").is_file() else None)
        edited_scores = None
        if source is not None:
            table = pd.read_parquet(source) if source.suffix == ".parquet" else pd.read_csv(source)
            if "state" in table:
                table = table[table["state"].isin(["edited", "M_ed"])]
            edited_scores = table
        result = repair_edits(tuned, requests, delta.method, cfg, stats, edited_scores, full)
        out.mkdir(parents=True, exist_ok=True)
        if result.delta is not None:
            result.delta.save(out / "repair")
        result.table.to_csv(out / "repair_edits.csv", index=False)
        summary = {**result.summary, "model": model, "edits": str(edits), "stats_from": base_name}
        (out / "repair.json").write_text(json.dumps(summary, indent=1, default=float))
        write_defence_page(out)
    s = result.summary
    console.print(
        f"{s['n_repaired']} of {s['n_flipped']} flipped edits repaired in {s['repair_seconds']:.1f} s; "
        f"success {s['success_tuned']:.1f} → {s['success_repaired']:.1f} % "
        f"(full re-edit: {s['success_full'] if s['success_full'] is not None else float('nan'):.1f} % "
        f"in {s['full_seconds']:.1f} s)"
    )
