"""The sections about the run itself: the title summary, the configurations, how and where it ran,
and the data files every number comes from."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping

import pandas as pd

from ..analysis.tables import final_rows, fine_tuned_rows, in_order
from ..schema import FT_METHODS
from .blocks import Block, BulletList, CodeBlock, Details, Paragraph, ReportContext, Section, Table
from .format import NA, cell_text, ft_label
from .plots import plot_labels

TITLE_CONFIGS = "Configurations"
TITLE_RUN = "How this run was made"
TITLE_DATA_FILES = "Data files"
UNRECORDED_DEVICE = "device not recorded"


def partial_notice(study: Mapping | None) -> Paragraph | None:
    """A warning when `study.json` says the tables were gathered before every stage had finished."""
    stages = (study or {}).get("stages")
    if not isinstance(stages, Mapping) or stages.get("finished", 0) >= stages.get("total", 0):
        return None
    return Paragraph(
        f"**Partial results:** {stages['finished']} of {stages['total']} stages had finished when "
        "these tables were gathered; configurations with unfinished stages are missing or "
        "incomplete. Rerun the command to finish the study."
    )


def header_section(ctx: ReportContext) -> Section:
    """The title, what the run covers in a few lines, and a warning when it is partial."""
    final = ctx.final
    study = ctx.results.study or {}
    blocks: list[Block] = []
    notice = partial_notice(study)
    if notice is not None:
        blocks.append(notice)
    every = (
        final_rows(ctx.results.decay, preserved=True) if ctx.results.decay is not None else final
    )
    n_ft = len(fine_tuned_rows(every))
    n_preserving = int((every["ft_preserve"] != "none").sum()) if len(every) else 0
    preserving = f"; {n_preserving} with an edit-preserving option" if n_preserving else ""

    def listing(column: str) -> str:
        values = [v for v in dict.fromkeys(final[column].map(cell_text)) if v != NA]
        return ", ".join(values) if values else NA

    methods = ", ".join(ft_label(m) for m in in_order(final["ft_method"], FT_METHODS)) or NA
    name = f"**{cell_text(study['name'])}**, " if "name" in study else ""
    blocks.append(
        Paragraph(
            f"Study {name}run directory `{ctx.results.run_dir}`: {len(every)} configurations "
            f"({n_ft} fine-tuned, {len(every) - n_ft} edited only{preserving})."
        )
    )
    blocks.append(
        BulletList(
            [
                f"models: {listing('model')}",
                f"edit methods: {listing('edit_method')}; edit data: {listing('edit_data')}; "
                f"edits per configuration: {listing('n_edits')}",
                f"fine-tuning methods: {methods}; fine-tuning data: {listing('ft_data')}; "
                f"layers: {listing('ft_layers')}",
                f"seeds: {listing('seed')}",
            ]
        )
    )
    return Section(ctx.title, blocks, level=1)


def configurations_section(ctx: ReportContext) -> Section | None:
    """Each configuration's short label (as the tables and plots show it) beside its config_id."""
    final = ctx.final
    if final.empty:
        return None
    labels = plot_labels(final)
    settings = ["model", "edit_method", "edit_data", "n_edits", "ft_method", "ft_data"]
    frame = final[["config_id", *settings, "ft_layers", "seed"]].copy()
    frame.insert(0, "configuration", frame["config_id"].map(lambda c: labels.get(str(c), c)))
    blocks: list[Block] = [
        Details(
            f"Every configuration ({len(frame)}): its label in the tables and plots, its id",
            [Table(frame, floatfmt="g", source="From [results/decay.csv](results/decay.csv).")],
        )
    ]
    configs = ctx.results.configs
    if configs is not None and not configs.empty:
        blocks.append(
            Details(
                "Every setting of every configuration",
                [
                    Table(
                        configs,
                        floatfmt="g",
                        source="From [results/configs.csv](results/configs.csv).",
                    )
                ],
            )
        )
    return Section(TITLE_CONFIGS, blocks)


def run_section(ctx: ReportContext) -> Section | None:
    """The command, seeds, versions and devices from study.json, collapsed."""
    study = ctx.results.study
    if study is None:
        return Section(
            TITLE_RUN,
            [Paragraph("No `results/study.json`: the command and versions were not recorded.")],
        )
    blocks: list[Block] = []
    command = study.get("command")
    if command:
        text = shlex.join(str(c) for c in command) if isinstance(command, list) else str(command)
        blocks.extend([Paragraph("Command:"), CodeBlock(text)])
    if "seeds" in study:
        seeds = study["seeds"]
        shown = ", ".join(str(s) for s in seeds) if isinstance(seeds, list) else cell_text(seeds)
        blocks.append(Paragraph(f"Seeds: {shown}"))
    details: list[Block] = []
    versions = study.get("versions")
    if isinstance(versions, Mapping) and versions:
        values = [
            json.dumps(v) if isinstance(v, (dict, list)) else cell_text(v)
            for v in versions.values()
        ]
        frame = pd.DataFrame({"package": [str(k) for k in versions], "version": values})
        details.append(Table(frame, source="Versions from `results/study.json`."))
    environments = study.get("stage_environments")
    if isinstance(environments, Mapping) and environments:
        details.append(_devices_table(environments))
    if details:
        blocks.append(Details("Versions and devices", details))
    return Section(TITLE_RUN, blocks) if blocks else None


def _devices_table(environments: Mapping) -> Table:
    frame = pd.DataFrame(
        {
            "device, versions": [str(k) for k in environments],
            "stages": [cell_text(v) for v in environments.values()],
        }
    )
    source = "Where the finished stages ran, from each stage's record in the store."
    if frame["device, versions"].str.startswith(UNRECORDED_DEVICE).any():
        source += (
            f" “{UNRECORDED_DEVICE}”: the stage finished before editdecay recorded the device "
            "(those stages ran on the CPU build of torch named beside it)."
        )
    return Table(frame, source=source)


DATA_FILES = (
    (
        "decay.csv",
        "one row per configuration × fine-tuning step; the tables above use its final rows",
    ),
    ("configs.csv", "one row per configuration, with every setting"),
    ("flips.csv", "per-edit flip category (stable / erased / emergent / impossible)"),
    ("edits.csv", "the long per-edit table: ES, PS, NS per edit, model state and step"),
    ("edits.parquet", "the same per-edit table in Parquet"),
    ("downstream.csv", "downstream accuracy per task, state, step and protocol"),
    ("training.csv", "fine-tuning loss per step"),
    ("perplexity.csv", "held-out perplexity per state and step"),
    ("study.json", "study name, command, versions and seeds"),
)


def data_files_section(ctx: ReportContext) -> Section:
    results_dir = ctx.results.results_dir
    items = []
    for name, description in DATA_FILES:
        if (results_dir / name).is_file():
            items.append(f"[results/{name}](results/{name}): {description}")
        else:
            items.append(f"`results/{name}`: not present")
    note = Paragraph("Columns of every table: docs/study.md, “Columns” (`editdecay/schema.py`).")
    return Section(TITLE_DATA_FILES, [BulletList(items), note])
