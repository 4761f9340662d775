"""`editdecay analyse`: why edits decay, from a finished run's store (activations, target frequency)."""

from __future__ import annotations

from pathlib import Path

import typer

from .edit import VERBOSE_HELP
from .errors import _user_errors, console, setup_logging


def analyse(
    run_dir: Path = typer.Argument(..., help="a finished study run directory (with plan.json)"),
    configs: list[str] | None = typer.Option(
        None,
        "--configs",
        help="config_ids to analyse (repeat the option; default: every fine-tuned one)",
    ),
    max_edits: int = typer.Option(
        100, min=1, help="the first that many edit requests per configuration"
    ),
    ft_prompts: int = typer.Option(50, min=1, help="fine-tuning prompts sampled per configuration"),
    store: Path | None = typer.Option(
        None, help="the artifact store (default: the one plan.json names)"
    ),
    no_umap: bool = typer.Option(False, "--no-umap", help="skip the UMAP projection"),
    known_facts: int = typer.Option(
        200,
        min=0,
        help="unedited records of the edit set scored on every state: the own-knowledge baseline (0: none)",
    ),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Hidden-state displacements of M_ed, M_ft and M_ed_ft against M (PAPER §2.7), split by flip
    category, the edit targets' token frequencies, and how much of what M already knew each state
    keeps; writes RUN_DIR/results/activations*.csv, target_frequency.csv, known_facts.csv (and
    umap.csv), then rebuild the report with `editdecay report RUN_DIR`."""
    setup_logging(verbose)
    from ..study.analyse import analyse_run

    with _user_errors():
        tables = analyse_run(
            run_dir,
            configs=configs or None,
            max_edits=max_edits,
            ft_prompts=ft_prompts,
            store=store,
            umap=not no_umap,
            known_facts=known_facts,
        )
    for name, table in tables.items():
        console.print(f"{name}: {len(table)} rows")
    console.print(f"tables in {Path(run_dir) / 'results'}; now run: editdecay report {run_dir}")
