"""The report's figure sections: ES bars, decay over fine-tuning steps, training loss."""

from __future__ import annotations

from ..analysis.tables import sort_configurations
from .blocks import Block, Details, Figure, Paragraph, ReportContext, Section, Table
from .plots import (
    MAX_PANELS,
    multi_step_configs,
    plot_decay_bars,
    plot_decay_steps,
    plot_labels,
    plot_training,
)

DECAY_LINK = "[results/decay.csv](results/decay.csv)"
TITLE_DECAY_PLOT = "ES before and after fine-tuning, per configuration"
TITLE_STEPS = "Decay over fine-tuning steps"
TITLE_TRAINING = "Training loss"
TITLE_KEY = "Key results"


def decay_plot_section(ctx: ReportContext) -> Section | None:
    figure = plot_decay_bars(ctx.final)
    if figure is None:
        return None
    path = ctx.save_plot("decay_bars.png", figure)
    return Section(
        TITLE_DECAY_PLOT,
        [
            Figure(
                path,
                (
                    "ES(M_ed) (`es_ed`) and ES(M_ed_ft) (`es_ed_ft`) of each fine-tuned "
                    "configuration at its final step, "
                    f"from {DECAY_LINK}; numbers in “{TITLE_KEY}”."
                ),
            )
        ],
    )


def steps_section(ctx: ReportContext) -> Section | None:
    decay = ctx.results.decay
    config_ids = multi_step_configs(decay)
    if not config_ids:
        return None
    path = ctx.save_plot("decay_steps.png", plot_decay_steps(decay, config_ids))
    rows = decay[decay["config_id"].isin(config_ids)]
    table = sort_configurations(
        rows[
            [
                "config_id",
                "step",
                "final",
                "es_ed",
                "es_ed_ft",
                "delta_es",
                "relative_decay",
                "efr",
                "emergent_ratio",
            ]
        ],
        ("config_id", "step"),
    )
    blocks: list[Block] = [
        Figure(
            path,
            f"ES(M_ed_ft) and EFR against the fine-tuning step (step 0 of the ES line = ES(M_ed)), "
            f"from {DECAY_LINK}.",
        ),
        Details(
            f"Every step of these configurations ({len(table)} rows)",
            [
                Table(
                    table,
                    source=f"Source: every row of {DECAY_LINK} for configurations with several steps.",
                )
            ],
        ),
    ]
    if len(config_ids) > MAX_PANELS:
        blocks.insert(
            1,
            Paragraph(
                f"The plot shows the first {MAX_PANELS} of {len(config_ids)} "
                "configurations; the table lists all."
            ),
        )
    return Section(TITLE_STEPS, blocks)


def training_section(ctx: ReportContext) -> Section | None:
    training = ctx.results.training
    if training is None:
        return None
    if training.empty:
        return Section(TITLE_TRAINING, [Paragraph("`results/training.csv` holds no loss values.")])
    path = ctx.save_plot("training_loss.png", plot_training(training, ctx.final))
    summary = (
        training.sort_values("step")
        .groupby(["config_id", "state"])
        .agg(
            points=("loss", "size"),
            last_step=("step", "last"),
            first_loss=("loss", "first"),
            last_loss=("loss", "last"),
            min_loss=("loss", "min"),
        )
        .reset_index()
    )
    labels = plot_labels(ctx.final)
    summary.insert(0, "configuration", summary["config_id"].map(lambda c: labels.get(str(c), c)))
    blocks: list[Block] = [
        Figure(
            path,
            "Fine-tuning loss per step from [results/training.csv](results/training.csv), one panel "
            "per fine-tuning setting.",
        ),
        Details(
            f"Loss per curve ({len(summary)})",
            [
                Table(
                    summary,
                    floatfmt=".4f",
                    source="Source: [results/training.csv](results/training.csv), columns `step`, "
                    "`loss`.",
                )
            ],
        ),
    ]
    return Section(TITLE_TRAINING, blocks)
