"""The `editdecay` command line: thin wrappers over the Python API that print small tables.

Option defaults and help come from the dataclass fields they fill (EditJob, MendConfig, the
registry's and the reproduction's defaults), so a default is written once. Errors the user can fix
(a wrong setting, a missing file) print one line and exit with code 2: see `_user_errors`.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import tomllib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from .config_types import field_default, field_help, parse_text
from .editing.config import MendConfig, config_class
from .models.registry import DEFAULT_DEVICE, DEFAULT_MODEL
from .study.edit import EditJob
from .study.reproduce import DEFAULT_MODELS, DEFAULT_OUT, DEFAULT_SCALE, SCALES

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Edit facts into causal LMs, fine-tune them, and measure which edits survive.",
)
console = Console(width=None if sys.stdout.isatty() else 140)


def _setup_logging(verbose: bool) -> None:
    # PEFT still calls a transformers method deprecated for v6; the warning says nothing to our users
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )
    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )
    logging.getLogger("editdecay").setLevel(logging.DEBUG if verbose else logging.INFO)


USER_ERRORS = (ValueError, KeyError, FileNotFoundError, RuntimeError)


@contextmanager
def _user_errors() -> Iterator[None]:
    """A wrong setting, a missing file, an unknown model: one red line and exit code 2, no traceback."""
    try:
        yield
    except typer.Exit:  # click's Exit is a RuntimeError: let a deliberate exit through
        raise
    except USER_ERRORS as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
        raise typer.Exit(2) from None


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
        text = config_file.read_text()
        try:
            raw = tomllib.loads(text) if config_file.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"config file {config_file}: {err}") from None
        out.update(_flatten(raw))
    for item in sets:
        if "=" not in item:
            raise typer.BadParameter(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_text(config_cls, k.strip(), v)
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


@app.callback()
def _global_options(
    device: str = typer.Option(
        DEFAULT_DEVICE,
        "--device",
        envvar="EDITDECAY_DEVICE",
        help="where models run: auto (a CUDA GPU if there is one, else the CPU), "
        "cpu, cuda or cuda:N",
    ),
):
    """Edit facts into causal LMs, fine-tune them, and measure which edits survive."""
    import os

    from .models.registry import DEVICE_ENV, resolve_device

    try:
        resolve_device(device)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--device") from None
    os.environ[DEVICE_ENV] = (
        device  # every model load in this process (and in local workers) reads it
    )


def _job(name: str, *flags: str, **kw):
    """The option that fills the EditJob field `name`, with the field's default and help."""
    return typer.Option(field_default(EditJob, name), *flags, help=field_help(EditJob, name), **kw)


@app.command()
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
    verbose: bool = typer.Option(False, "-v", "--verbose"),
):
    """Edit facts into a model, evaluate before and after, and save the delta and per-edit metrics."""
    _setup_logging(verbose)
    from .study.edit import run_edit

    with _user_errors():
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
        result = run_edit(job)
    _print_edit_summary(result.summary, out)


def _print_edit_summary(s: dict, out: Path) -> None:
    t = Table(title=f"{s['method']} · {s['model']} · {s['n_edits']} edits from {s['data']}")
    t.add_column("metric")
    t.add_column("unedited", justify="right")
    t.add_column("edited", justify="right")
    for key, label in [
        ("es", "ES"),
        ("ps", "PS"),
        ("ns", "NS"),
        ("rewrite_acc", "rewrite acc"),
        ("paraphrase_acc", "paraphrase acc"),
        ("neighbour_acc", "neighbour acc"),
        ("locality", "locality (vs unedited)"),
        ("heldout_ppl", "held-out perplexity"),
    ]:
        a, b = s["unedited"].get(key), s["edited"].get(key)
        if a is None and b is None:
            continue
        t.add_row(label, "" if a is None else f"{a:.1f}", "" if b is None else f"{b:.1f}")
    console.print(t)
    tm = s["timings"]
    phases = [
        ("load", "load_s"),
        ("evaluate (unedited)", "eval_unedited_s"),
        ("perplexity", "ppl_s"),
        ("statistic", "edit.statistic_s"),
        ("targets z", "edit.targets_s"),
        ("keys", "edit.keys_s"),
        ("solve", "edit.solve_s"),
        ("evaluate (edited)", "eval_edited_s"),
    ]
    console.print("time: " + ", ".join(f"{name} {tm[k]:.1f}s" for name, k in phases if k in tm))
    if s.get("n_skipped"):
        console.print(
            f"[yellow]{s['n_skipped']} malformed record(s) skipped[/yellow] (see summary.json)"
        )
    console.print(
        f"wrote {out}/ (delta/, edits.csv, edits.parquet, summary.json, requests.jsonl, edit.log)"
    )


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
    console.print(
        "Any local Hugging Face model directory (or an id in the local HF cache) works as --model too."
    )


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
    console.print(
        "Your own file: --data-file PATH (JSON/JSONL; CounterFact, zsRE, MEMIT or plain format)."
    )


DEFAULT_STUDY = Path(__file__).resolve().parent / "study" / "studies" / "default.toml"


def _load_study(study_file: Path | None, out: Path | None):
    from .study.config import Study

    path = study_file or DEFAULT_STUDY
    bundled = DEFAULT_STUDY.parent / f"{path}.toml"
    if (
        not path.exists() and bundled.exists()
    ):  # a bundled study by name: `editdecay run ft-methods`
        path = bundled
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in DEFAULT_STUDY.parent.glob("*.toml")))
        raise FileNotFoundError(f"study file {path} not found (bundled studies: {names})")
    return Study.load(path, out=out)


GATHER_ONLY_HELP = "run nothing: gather the stages finished so far into tables and a report"
GPUS_PER_STAGE_HELP = (
    "Ray: GPUs reserved by each stage (0.25 packs four stages onto a GPU); Ray hides the GPUs "
    "from stages that reserve none, so they then run on the CPU"
)


def _command_line() -> str:
    """The command as typed, recorded with the results; --gather-only reads the same results, so it is left out."""
    return shlex.join(["editdecay", *(a for a in sys.argv[1:] if a != "--gather-only")])


def _run_study(
    study_file,
    out,
    store,
    executor,
    address,
    no_report,
    verbose,
    cpus_per_stage: float = 1.0,
    gather_only: bool = False,
    gpus_per_stage: float = 0.0,
) -> None:
    _setup_logging(verbose)
    from .study.pipeline import run_study

    with _user_errors():
        study = _load_study(study_file, out)
        result = run_study(
            study,
            executor=executor,
            address=address,
            store=store,
            report=not no_report,
            command=_command_line(),
            cpus_per_stage=cpus_per_stage,
            execute=not gather_only,
            gpus_per_stage=gpus_per_stage,
        )
    console.print(
        f"study {study.name}: {len(result.plan.configs)} configurations, "
        f"{len(result.plan.stages)} stages, {result.seconds / 60:.1f} min"
    )
    if result.report is not None:
        _print_frame(result.report.key_table, "key results (final fine-tuning step)")
        console.print(f"report: {result.report.markdown_path} and {result.report.html_path}")
    console.print(
        f"tables: {result.run_dir / 'results'}/ (decay.csv, edits.csv/.parquet, flips.csv, downstream.csv)"
    )


def _print_frame(df, title: str) -> None:
    """A rich table of `df`; columns with one value throughout go into the title (config_id is dropped)."""
    df = df.drop(columns=[c for c in ("config_id",) if c in df.columns])
    constant = [
        c
        for c in df.columns
        if len(df) > 1
        and df[c].astype(str).nunique() == 1
        and c in ("model", "edit_data", "n_edits", "ft_data", "ft_layers", "seed")
    ]
    if constant:
        title += " · " + ", ".join(f"{c}={df[c].iloc[0]}" for c in constant)
        df = df.drop(columns=constant)
    short = {
        "edit_method": "edit",
        "n_edits": "n",
        "ft_method": "FT",
        "ft_data": "FT data",
        "ft_layers": "layers",
        "ES before": "ES M_ed",
        "ES after": "ES M_ed_ft",
        "rel. decay %": "rel.decay%",
    }
    t = Table(title=title)
    for col in df.columns:
        t.add_column(
            short.get(str(col), str(col)), justify="left" if df[col].dtype == object else "right"
        )
    for _, row in df.iterrows():
        t.add_row(
            *[("—" if v != v else f"{v:.1f}") if isinstance(v, float) else str(v) for v in row]
        )
    console.print(t)


@app.command()
def run(
    study_file: Path | None = typer.Argument(
        None, help="study TOML, or a bundled study's name (default: default)"
    ),
    out: Path | None = typer.Option(None, help="run directory (default: the study's `out`)"),
    store: Path | None = typer.Option(
        None, help="artifact store to share between runs (default: OUT/store)"
    ),
    no_report: bool = typer.Option(False, "--no-report", help="only compute and gather the tables"),
    gather_only: bool = typer.Option(False, "--gather-only", help=GATHER_ONLY_HELP),
    verbose: bool = typer.Option(False, "-v", "--verbose"),
):
    """Run a study: statistic → edit → fine-tune → evaluate, resumable; then tables and report."""
    _run_study(study_file, out, store, "local", None, no_report, verbose, gather_only=gather_only)


@app.command()
def grid(
    study_file: Path = typer.Argument(..., help="study TOML with a [grid] of axes"),
    executor: str = typer.Option("local", help="local (this process) or ray"),
    address: str | None = typer.Option(None, help="Ray cluster address, e.g. 127.0.0.1:6379"),
    out: Path | None = typer.Option(None, help="run directory (default: the study's `out`)"),
    store: Path | None = typer.Option(
        None, help="artifact store (must be shared by all Ray nodes)"
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="list configurations and stages, run nothing"
    ),
    cpus_per_stage: float = typer.Option(
        1.0, help="Ray: CPUs reserved by (and threads of) each stage"
    ),
    gpus_per_stage: float = typer.Option(0.0, help=GPUS_PER_STAGE_HELP),
    no_report: bool = typer.Option(False, "--no-report"),
    gather_only: bool = typer.Option(False, "--gather-only", help=GATHER_ONLY_HELP),
    verbose: bool = typer.Option(False, "-v", "--verbose"),
):
    """Expand a study's grid, run every distinct stage once (locally or on Ray) and gather one table."""
    if not dry_run:
        _run_study(
            study_file,
            out,
            store,
            executor,
            address,
            no_report,
            verbose,
            cpus_per_stage,
            gather_only,
            gpus_per_stage,
        )
        return
    _setup_logging(verbose)
    from .study.pipeline import make_plan

    with _user_errors():
        plan_ = make_plan(_load_study(study_file, out), store)
    t = Table(title=f"{len(plan_.configs)} configurations")
    t.add_column("config_id")
    for pc in plan_.configs:
        t.add_row(pc.config.config_id)
    console.print(t)
    stages = plan_.stages
    kinds: dict[str, list[int]] = {}
    for s in stages:
        kinds.setdefault(s.kind, [0, 0])
        kinds[s.kind][0] += 1
        kinds[s.kind][1] += plan_.store.done(s)
    console.print("stages: " + ", ".join(f"{k} {n} ({d} done)" for k, (n, d) in kinds.items()))


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="a study run directory (with results/decay.csv)"),
    title: str | None = typer.Option(None),
    verbose: bool = typer.Option(False, "-v", "--verbose"),
):
    """Write report.md and a self-contained report.html with tables and plots for a finished run."""
    _setup_logging(verbose)
    from .report import write_report

    with _user_errors():
        rep = write_report(run_dir, title=title)
    _print_frame(rep.key_table, "key results")
    console.print(f"report: {rep.markdown_path} and {rep.html_path}")


@app.command("mend-train")
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
    verbose: bool = typer.Option(False, "-v", "--verbose"),
):
    """Train a MEND hypernetwork for a model and save it where `editdecay edit --method mend` finds it."""
    _setup_logging(verbose)
    from .editing import default_config
    from .editing.mend import train_mend
    from .models.registry import load_model

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


@app.command()
def reproduce(
    scale: str = typer.Option(
        DEFAULT_SCALE,
        help=f"{', '.join(SCALES)}: small (2-core CPU, a few hours per model), medium, or paper (GPUs)",
    ),
    models: str = typer.Option(",".join(DEFAULT_MODELS), help="comma-separated model names"),
    out: Path = typer.Option(DEFAULT_OUT, help="run directory"),
    store: Path | None = typer.Option(
        None, help="artifact store to share between runs (default: OUT/store)"
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="print the grid and its estimated time, run nothing"
    ),
    executor: str = typer.Option("local", help="local (this process) or ray"),
    address: str | None = typer.Option(None, help="Ray cluster address, e.g. 127.0.0.1:6379"),
    gpus_per_stage: float = typer.Option(0.0, help=GPUS_PER_STAGE_HELP),
    gather_only: bool = typer.Option(False, "--gather-only", help=GATHER_ONLY_HELP),
    verbose: bool = typer.Option(False, "-v", "--verbose"),
):
    """Run the grid that tests the paper's claims, then write REPRODUCTION.md and print the claims table."""
    _setup_logging(verbose)
    from .study.reproduce import describe, estimate_table, reproduction_study, write_reproduction

    with _user_errors():
        study = reproduction_study(scale, [m for m in models.split(",") if m.strip()], out)
        if dry_run:
            _print_frame(
                describe(study),
                f"reproduction grid, scale {scale}: {len(study.configs)} configurations",
            )
            estimate = estimate_table(study)
            _print_frame(
                estimate, "distinct stages and estimated hours per model (2-core CPU cost model)"
            )
            console.print(
                f"estimated total: {estimate['hours'].sum():.1f} h on the 2-core CPU the cost model was "
                "measured on (SmolLM2-135M timings; model loading not counted)"
            )
            return
        from .study.pipeline import run_study

        result = run_study(
            study,
            executor=executor,
            address=address,
            store=store,
            command=_command_line(),
            execute=not gather_only,
            gpus_per_stage=gpus_per_stage,
        )
        rep = write_reproduction(result.run_dir)
    colours = {
        "holds": "green",
        "does not hold": "red",
        "inconclusive": "yellow",
        "not testable here": "dim",
        "not tested": "dim",
    }
    t = Table(title=f"paper claims, scale {scale} ({len(study.configs)} configurations)")
    for column in ("id", "claim", "paper", "this run", "verdict"):
        t.add_column(column, justify="right" if column == "id" else "left")
    for c in rep.claims:
        t.add_row(
            str(c.id),
            c.claim,
            c.paper,
            c.ours,
            f"[{colours[c.verdict]}]{c.verdict}[/{colours[c.verdict]}]",
        )
    console.print(t)
    if len(rep.claims_per_model) > 1:
        t = Table(title="verdict per model")
        for column in ("id", "claim", *rep.claims_per_model, "all models"):
            t.add_column(column, justify="right" if column == "id" else "left")
        for i, c in enumerate(rep.claims):
            cells = [m[i].verdict for m in rep.claims_per_model.values()] + [c.verdict]
            t.add_row(str(c.id), c.claim, *(f"[{colours[v]}]{v}[/{colours[v]}]" for v in cells))
        console.print(t)
    console.print(f"wrote {rep.markdown_path}; tables in {result.run_dir / 'results'}/")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
