"""The report's figure sections: ES bars, decay over fine-tuning steps, training loss."""

from __future__ import annotations

from ..analysis.tables import sort_configurations
from .blocks import Block, Figure, Paragraph, ReportContext, Section, Table
from .plots import (
    MAX_LINES_PER_PLOT,
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
        Table(
            table,
            source=f"Source: every row of {DECAY_LINK} for configurations with several steps.",
        ),
    ]
    if len(config_ids) > MAX_LINES_PER_PLOT:
        blocks.insert(
            1,
            Paragraph(
                f"The plot shows the first {MAX_LINES_PER_PLOT} of {len(config_ids)} "
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
    decay = ctx.results.decay
    same_configs = decay is not None and set(training["config_id"]) <= set(decay["config_id"])
    labels = (
        plot_labels(decay[decay["config_id"].isin(training["config_id"])]) if same_configs else None
    )
    path = ctx.save_plot("training_loss.png", plot_training(training, labels))
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
    blocks: list[Block] = [
        Figure(
            path, "Fine-tuning loss per step from [results/training.csv](results/training.csv)."
        ),
        Table(
            summary,
            floatfmt=".4f",
            source="Source: [results/training.csv](results/training.csv), columns `step`, `loss`.",
        ),
    ]
    if summary.shape[0] > MAX_LINES_PER_PLOT:
        blocks.insert(
            1,
            Paragraph(
                f"The plot shows the first {MAX_LINES_PER_PLOT} of {summary.shape[0]} curves."
            ),
        )
    return Section(TITLE_TRAINING, blocks)
