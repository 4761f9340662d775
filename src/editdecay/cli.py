"""The `editdecay` command line: thin wrappers over the Python API that print small tables."""

from __future__ import annotations

import json
import logging
import sys
import tomllib
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Edit facts into causal LMs, fine-tune them, and measure which edits survive.")
console = Console()


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False)])
    logging.getLogger("editdecay").setLevel(logging.DEBUG if verbose else logging.INFO)


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _overrides(config_file: Optional[Path], sets: list[str], layers: Optional[str], lam: Optional[float],
               stat_tokens: Optional[int]) -> dict:
    out: dict = {}
    if config_file is not None:
        text = config_file.read_text()
        raw = tomllib.loads(text) if config_file.suffix == ".toml" else json.loads(text)
        out.update(_flatten(raw))
    for item in sets:
        if "=" not in item:
            raise typer.BadParameter(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = _parse_value(v.strip())
    if layers:
        out["layers"] = _parse_layers(layers)
    if lam is not None:
        out["mom2_update_weight"] = lam
    if stat_tokens is not None:
        out["statistic.max_tokens"] = stat_tokens
    return out


def _parse_layers(text: str) -> list[int]:
    try:
        if "-" in text:
            lo, hi = text.split("-", 1)
            return list(range(int(lo), int(hi) + 1))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"--layers expects '4,5,6' or '4-8', got {text!r}") from None


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


@app.command()
def edit(
    model: str = typer.Option("smollm2-135m", help="registered model name, HF model directory or cached HF id"),
    method: str = typer.Option("memit", help="edit method: memit, alphaedit, rome"),
    data: str = typer.Option("counterfact", help="bundled dataset name (see `editdecay data`)"),
    data_file: Optional[Path] = typer.Option(None, "--data-file", help="your own JSON/JSONL edit requests"),
    n: int = typer.Option(100, "--n", help="number of edits (the first N valid records after --offset)"),
    offset: int = typer.Option(0, help="skip this many valid records first"),
    batch_size: Optional[int] = typer.Option(None, help="edit sequentially in batches of this size"),
    ppl_tokens: int = typer.Option(8192, help="held-out WikiText tokens for perplexity before/after (0: skip)"),
    out: Path = typer.Option(Path("runs/edit"), help="output directory"),
    strict: bool = typer.Option(False, help="fail on the first malformed record instead of skipping it"),
    seed: int = typer.Option(0, help="seed for context templates and everything random"),
    layers: Optional[str] = typer.Option(None, help="edit layers, '4,5,6,7,8' or '4-8'"),
    lam: Optional[float] = typer.Option(None, help="MEMIT λ (mom2_update_weight)"),
    stat_tokens: Optional[int] = typer.Option(None, help="tokens for the statistic C (default: whole corpus)"),
    config: Optional[Path] = typer.Option(None, help="JSON/TOML file of config overrides"),
    set_: list[str] = typer.Option([], "--set", help="override any config field: --set targets.lr=0.1"),
    verbose: bool = typer.Option(False, "-v", "--verbose"),
):
    """Edit facts into a model, evaluate before and after, and save the delta and per-edit metrics."""
    _setup_logging(verbose)
    from .study.edit import EditJob, run_edit

    try:
        overrides = _overrides(config, set_, layers, lam, stat_tokens)
        job = EditJob(model=model, method=method, data=str(data_file) if data_file else data, n=n, offset=offset,
                      strict=strict, seed=seed, batch_size=batch_size, ppl_tokens=ppl_tokens,
                      overrides=overrides, out=out)
        result = run_edit(job)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    _print_edit_summary(result.summary, out)


def _print_edit_summary(s: dict, out: Path) -> None:
    t = Table(title=f"{s['method']} · {s['model']} · {s['n_edits']} edits from {s['data']}")
    t.add_column("metric")
    t.add_column("unedited", justify="right")
    t.add_column("edited", justify="right")
    for key, label in [("es", "ES"), ("ps", "PS"), ("ns", "NS"), ("rewrite_acc", "rewrite acc"),
                       ("paraphrase_acc", "paraphrase acc"), ("neighbour_acc", "neighbour acc"),
                       ("locality", "locality (vs unedited)"), ("heldout_ppl", "held-out perplexity")]:
        a, b = s["unedited"].get(key), s["edited"].get(key)
        if a is None and b is None:
            continue
        t.add_row(label, "" if a is None else f"{a:.1f}", "" if b is None else f"{b:.1f}")
    console.print(t)
    tm = s["timings"]
    phases = [("load", "load_s"), ("evaluate (unedited)", "eval_unedited_s"), ("perplexity", "ppl_s"),
              ("statistic", "edit.statistic_s"),
              ("targets z", "edit.targets_s"), ("keys", "edit.keys_s"), ("solve", "edit.solve_s"),
              ("evaluate (edited)", "eval_edited_s")]
    console.print("time: " + ", ".join(f"{name} {tm[k]:.1f}s" for name, k in phases if k in tm))
    if s.get("n_skipped"):
        console.print(f"[yellow]{s['n_skipped']} malformed record(s) skipped[/yellow] (see summary.json)")
    console.print(f"wrote {out}/ (delta/, edits.csv, edits.parquet, summary.json, requests.jsonl, edit.log)")


@app.command()
def models():
    """List the models editdecay can load."""
    from .models.registry import list_models

    t = Table(title="models")
    t.add_column("name")
    t.add_column("installed")
    t.add_column("description")
    for name, desc, ok in list_models():
        t.add_row(name, "yes" if ok else "no", desc)
    console.print(t)
    console.print("Any local Hugging Face model directory (or an id in the local HF cache) works as --model too.")


@app.command()
def data():
    """List the bundled edit datasets."""
    from .data.loaders import list_datasets

    t = Table(title="edit datasets")
    t.add_column("name")
    t.add_column("description")
    for info in list_datasets():
        t.add_row(info.name, info.description)
    console.print(t)
    console.print("Your own file: --data-file PATH (JSON/JSONL; CounterFact, zsRE, MEMIT or plain format).")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
