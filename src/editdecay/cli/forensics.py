"""`editdecay forensics`: find an edit in a suspect model by comparing its weights with its base."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .edit import VERBOSE_HELP
from .errors import _user_errors, console, setup_logging


def forensics(
    base: str = typer.Option(
        ..., help="the base model: registered name, HF directory or cached id"
    ),
    suspect: str = typer.Option(..., help="the suspect model (HF directory or name)"),
    out: Path = typer.Option(Path("runs/forensics"), help="output directory"),
    candidates: Path | None = typer.Option(
        None, help="candidate subjects: an edit request file (JSON/JSONL), ranked by response"
    ),
    outlier_z: float = typer.Option(6.0, help="robust z above which a matrix counts as edited"),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Per weight matrix: ‖ΔW‖, spectrum, effective rank; the layers judged edited, an estimate of how
    many facts were written, and the candidate subjects ranked; writes report.json and
    differences.csv."""
    setup_logging(verbose)
    from ..forensics.weights import ForensicsConfig, locate_edits
    from ..models.registry import load_model

    with _user_errors():
        requests = []
        if candidates is not None:
            from ..data.loaders import load_requests

            requests = list(load_requests(candidates).requests)
        lm = load_model(base)
        other = load_model(suspect)
        report, table = locate_edits(
            lm, other.model, requests, ForensicsConfig(outlier_z=outlier_z)
        )
        report.update(base=base, suspect=suspect)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "differences.csv", index=False)
        (out / "report.json").write_text(json.dumps(report, indent=1))
    console.print(
        f"edited layers {report['edited_layers'] or 'none'}; about {report['n_facts_estimate']} facts; "
        f"{len(report['edited_modules'])} matrices; report in {out / 'report.json'}"
    )
