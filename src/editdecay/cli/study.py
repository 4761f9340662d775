"""`editdecay run`, `grid`, `report`, `reproduce` and `pack-store`: studies, their reports, the paper
grid, and stores small enough to carry."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from rich.table import Table

from ..study.reproduce import BLOCK_NAMES, DEFAULT_MODELS, DEFAULT_OUT, DEFAULT_SCALE, SCALES
from .edit import VERBOSE_HELP
from .errors import _user_errors, console, setup_logging

DEFAULT_STUDY = Path(__file__).resolve().parents[1] / "study" / "studies" / "default.toml"


def _load_study(study_file: Path | None, out: Path | None):
    from ..study.config import Study

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


REPOSITORY_RESULTS = Path(__file__).resolve().parents[3] / "results"


def _refuse_committed_results(out: Path, overwrite: bool) -> None:
    """An --out inside the repository's results/ would overwrite the committed reproduction."""
    if not (REPOSITORY_RESULTS.parent / "pyproject.toml").is_file() or overwrite:
        return
    if out.resolve().is_relative_to(REPOSITORY_RESULTS.resolve()):
        raise ValueError(
            f"--out {out} is inside the repository's committed {REPOSITORY_RESULTS}/; choose "
            f"another --out (default {DEFAULT_OUT}) or pass --overwrite to replace those results"
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
    setup_logging(verbose)
    from ..study.pipeline import run_study

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
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Run a study: statistic → edit → fine-tune → evaluate, resumable; then tables and report."""
    _run_study(study_file, out, store, "local", None, no_report, verbose, gather_only=gather_only)


def grid(
    study_file: Path = typer.Argument(..., help="study TOML with a \\[grid] of axes"),
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
    no_report: bool = typer.Option(False, "--no-report", help="only compute and gather the tables"),
    gather_only: bool = typer.Option(False, "--gather-only", help=GATHER_ONLY_HELP),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
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
    setup_logging(verbose)
    from ..study.pipeline import make_plan

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


def report(
    run_dir: Path = typer.Argument(
        ...,
        help="a study run directory (with results/decay.csv), or the output directory of "
        "forensics, repair or detect",
    ),
    title: str | None = typer.Option(None, help="the report's title (default: the study's name)"),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Write report.md and a self-contained report.html with tables and plots for a finished run
    (or the page of a forensics, repair or detect output)."""
    setup_logging(verbose)
    from ..report import write_report
    from ..report.defence_pages import is_defence_output, write_defence_page

    with _user_errors():
        if is_defence_output(run_dir) and not (run_dir / "results" / "decay.csv").is_file():
            markdown, page = write_defence_page(run_dir)
            console.print(f"report: {markdown} and {page}")
            return
        rep = write_report(run_dir, title=title)
    _print_frame(rep.key_table, "key results")
    console.print(f"report: {rep.markdown_path} and {rep.html_path}")


def pack_store(
    source: Path = typer.Argument(..., help="the artifact store to pack (e.g. runs/repro-store)"),
    dest: Path = typer.Argument(..., help="where the packed store goes (created, or added to)"),
    max_file_mb: float = typer.Option(
        4.0, help="files larger than this (deltas, adapters, fine-tuned weights) are left out"
    ),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Copy a store's finished stages without their large files: enough to gather tables and
    reports (`--gather-only`), and to resume a study elsewhere with `--store DEST`, where a stage
    that needs a packed stage's outputs computes them again. Stages DEST already holds are kept."""
    setup_logging(verbose)
    from ..study.store import pack

    with _user_errors():
        if max_file_mb <= 0:
            raise ValueError(f"--max-file-mb must be positive, got {max_file_mb}")
        totals = pack(source, dest, int(max_file_mb * (1 << 20)))
    console.print(
        f"packed {totals['stages']} stages into {dest}; left out {totals['omitted_files']} files "
        f"({totals['omitted_bytes'] / (1 << 20):.1f} MiB)"
    )


def reproduce(
    scale: str = typer.Option(
        DEFAULT_SCALE,
        help=f"{', '.join(SCALES)}: small (2-core CPU, a few hours per model), medium, or paper (GPUs)",
    ),
    models: str = typer.Option(",".join(DEFAULT_MODELS), help="comma-separated model names"),
    out: Path = typer.Option(DEFAULT_OUT, help="run directory"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="allow an --out inside the repository's committed results/"
    ),
    store: Path | None = typer.Option(
        None, help="artifact store to share between runs (default: OUT/store)"
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="print the grid and its estimated time, run nothing; with an existing store, also "
        "the stages done and the hours left (loads the models to key the stages)",
    ),
    blocks: str | None = typer.Option(
        None,
        help="comma-separated blocks to run instead of the whole grid: " + ", ".join(BLOCK_NAMES),
    ),
    executor: str = typer.Option("local", help="local (this process) or ray"),
    address: str | None = typer.Option(None, help="Ray cluster address, e.g. 127.0.0.1:6379"),
    gpus_per_stage: float = typer.Option(0.0, help=GPUS_PER_STAGE_HELP),
    gather_only: bool = typer.Option(False, "--gather-only", help=GATHER_ONLY_HELP),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Run the grid that tests the paper's claims, then write REPRODUCTION.md and print the claims table."""
    setup_logging(verbose)
    from ..report import write_reproduction
    from ..study.reproduce import describe, estimate_table, reproduction_study

    with _user_errors():
        _refuse_committed_results(out, overwrite)
        only = [b for b in blocks.split(",") if b.strip()] if blocks is not None else None
        study = reproduction_study(
            scale, [m for m in models.split(",") if m.strip()], out, only=only
        )
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
            root = store if store is not None else out / "store"
            if root.is_dir():
                from ..study.estimate import hours_left
                from ..study.pipeline import make_plan

                left = hours_left(study, make_plan(study, root))
                _print_frame(left, f"stages done and to run with {root} (hours pro rata by kind)")
            else:
                console.print(f"no store at {root} yet: every stage is to run")
            return
        from ..study.pipeline import run_study

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
