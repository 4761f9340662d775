"""`editdecay edit` and `editdecay mend-train`: option parsing, the job, the summary table."""

from __future__ import annotations

import json
import tomllib
from functools import partial
from pathlib import Path

import typer
from rich.table import Table

from ..config_types import field_default, field_help, parse_text
from ..editing.config import MendConfig, config_class
from ..models.registry import DEFAULT_MODEL
from ..study.edit import EditJob, record_error
from .errors import _user_errors, console, setup_logging

VERBOSE_HELP = "log every step (debug level)"


def _overrides(
    config_cls: type,
    config_file: Path | None,
    sets: list[str],
    layers: str | None,
    lam: float | None,
    stat_tokens: int | None,
) -> dict:
    """Overrides of `config_cls` (dotted keys): the file's values as written, each `--set KEY=VALUE`
    converted by its field's type (`targets.steps=abc` is refused here), then the shortcuts."""
    out: dict = {}
    if config_file is not None:
        out.update(_flatten(_read_config_file(config_file)))
    for item in sets:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_text(config_cls, k.strip(), v)
    if layers:
        out["layers"] = _parse_layers(layers)
    if lam is not None:
        out["mom2_update_weight"] = lam
    if stat_tokens is not None:
        out["statistic.max_tokens"] = stat_tokens
    return out


def _read_config_file(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file")
    text = path.read_text()
    try:
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--config {path}: {err}") from None


def _parse_layers(text: str) -> list[int]:
    try:
        if "-" in text:
            lo, hi = text.split("-", 1)
            return list(range(int(lo), int(hi) + 1))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--layers expects '4,5,6' or '4-8', got {text!r}") from None


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _job(name: str, *flags: str, **kw):
    """The option that fills the EditJob field `name`, with the field's default and help."""
    return typer.Option(field_default(EditJob, name), *flags, help=field_help(EditJob, name), **kw)


def edit(
    model: str = _job("model"),
    method: str = _job("method"),
    data: str = _job("data"),
    data_file: Path | None = typer.Option(
        None, "--data-file", help="your own JSON/JSONL edit requests"
    ),
    n: int = _job("n", "--n"),
    offset: int = _job("offset"),
    batch_size: int | None = _job("batch_size"),
    ppl_tokens: int = _job("ppl_tokens"),
    out: Path = _job("out"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="replace an --out that holds a different finished run"
    ),
    strict: bool = _job("strict"),
    seed: int = _job("seed"),
    layers: str | None = typer.Option(None, help="edit layers, '4,5,6,7,8' or '4-8'"),
    lam: float | None = typer.Option(None, help="MEMIT λ (mom2_update_weight)"),
    stat_tokens: int | None = typer.Option(
        None, help="tokens for the statistic C (default: whole corpus)"
    ),
    config: Path | None = typer.Option(None, help="JSON/TOML file of config overrides"),
    set_: list[str] = typer.Option(
        [], "--set", help="override any config field: --set targets.lr=0.1"
    ),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Edit facts into a model, evaluate before and after, and save the delta and per-edit metrics.

    Resumable: the same command run again continues after the last finished phase."""
    setup_logging(verbose)
    from ..study.edit import run_edit

    with _user_errors(on_error=partial(record_error, out)):
        overrides = _overrides(config_class(method), config, set_, layers, lam, stat_tokens)
        job = EditJob(  # checks every setting, before the model loads
            model=model,
            method=method,
            data=str(data_file) if data_file else data,
            n=n,
            offset=offset,
            strict=strict,
            seed=seed,
            batch_size=batch_size,
            ppl_tokens=ppl_tokens,
            overrides=overrides,
            out=out,
        )
        result = run_edit(job, overwrite=overwrite)
    if result.already_done:
        console.print(
            f"{out}/ already holds this finished run: nothing to do "
            "(pass --overwrite to compute it again)"
        )
    _print_edit_summary(result.summary, out, written=not result.already_done)


METRICS = [
    ("es", "ES"),
    ("ps", "PS"),
    ("ns", "NS"),
    ("rewrite_acc", "rewrite acc"),
    ("paraphrase_acc", "paraphrase acc"),
    ("neighbour_acc", "neighbour acc"),
    ("locality", "locality (vs unedited)"),
    ("heldout_ppl", "held-out perplexity"),
]
PHASE_TIMINGS = [
    ("load", "load_s"),
    ("evaluate (unedited)", "eval_unedited_s"),
    ("perplexity", "ppl_s"),
    ("statistic", "edit.statistic_s"),
    ("targets z", "edit.targets_s"),
    ("keys", "edit.keys_s"),
    ("solve", "edit.solve_s"),
    ("evaluate (edited)", "eval_edited_s"),
]


def _print_edit_summary(s: dict, out: Path, written: bool = True) -> None:
    t = Table(title=f"{s['method']} · {s['model']} · {s['n_edits']} edits from {s['data']}")
    t.add_column("metric")
    t.add_column("unedited", justify="right")
    t.add_column("edited", justify="right")
    for key, label in METRICS:
        a, b = s["unedited"].get(key), s["edited"].get(key)
        if a is None and b is None:
            continue
        t.add_row(label, "" if a is None else f"{a:.1f}", "" if b is None else f"{b:.1f}")
    console.print(t)
    tm = s["timings"]
    times = ", ".join(f"{name} {tm[k]:.1f}s" for name, k in PHASE_TIMINGS if k in tm)
    console.print("time: " + times)
    if s.get("n_skipped"):
        console.print(
            f"[yellow]{s['n_skipped']} malformed record(s) skipped[/yellow] (see summary.json)"
        )
    if written:
        console.print(
            f"wrote {out}/ (delta/, edits.csv, edits.parquet, summary.json, requests.jsonl, edit.log)"
        )


def mend_train(
    model: str = typer.Option(DEFAULT_MODEL, help=field_help(EditJob, "model")),
    data: str = typer.Option(
        ",".join(field_default(MendConfig, "data")),
        help="bundled training sets, comma-separated (counterfact-train,zsre)",
    ),
    steps: int | None = typer.Option(
        None,
        help=f"training steps (default: {field_default(MendConfig, 'steps')}, "
        f"{MendConfig.quick().steps} with --quick)",
    ),
    batch_size: int | None = typer.Option(None, help=field_help(MendConfig, "batch_size")),
    out: Path | None = typer.Option(
        None,
        help="editor directory (default: <cache>/mend/<model>, where `edit --method mend` looks)",
    ),
    quick: bool = typer.Option(False, help="a few dozen steps at rank 8 (tests, smoke runs)"),
    max_minutes: float | None = typer.Option(None, help="stop training after this many minutes"),
    set_: list[str] = typer.Option(
        [], "--set", help="override any MendConfig field: --set rank=64"
    ),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Train a MEND hypernetwork for a model and save it where `editdecay edit --method mend` finds it."""
    setup_logging(verbose)
    from ..editing import default_config
    from ..editing.mend import train_mend
    from ..models.registry import load_model

    with _user_errors():
        overrides = _overrides(MendConfig, None, set_, None, None, None)
        overrides["data"] = [d.strip() for d in data.split(",") if d.strip()]
        if steps is not None:
            overrides["steps"] = steps
        if batch_size is not None:
            overrides["batch_size"] = batch_size
        base = MendConfig.quick() if quick else MendConfig()
        base.with_overrides(**overrides)  # every setting checked before the model loads
        lm = load_model(model)
        layers = default_config("mend", lm).layers
        cfg = base.with_overrides(**{"layers": list(layers), **overrides})
        editor = train_mend(lm, cfg, time_limit_s=max_minutes * 60 if max_minutes else None)
        where = editor.save(out)
    tr = editor.training
    final = tr["heldout_final"]
    console.print(
        f"MEND for {model}: {tr['steps']} steps in {tr['train_loop_s']:.0f} s "
        f"({tr['seconds_per_step']:.2f} s/step); held-out ES {tr['heldout_unedited_es']:.2f} unedited → "
        f"{final.get('es', float('nan')):.2f}, PS {final.get('ps', float('nan')):.2f}"
    )
    console.print(f"wrote {where}/ (mend.safetensors, mend.json, curve.csv)")
