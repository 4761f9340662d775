"""The report's plots, drawn on an Agg canvas (no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure

from ..analysis.tables import fine_tuned_rows, sort_configurations
from ..schema import CONFIG_COLUMNS, column_names
from .format import cell_text

MAX_LINES_PER_PLOT = 20


def new_figure(width: float, height: float) -> MplFigure:
    figure = MplFigure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def setting_label(column: str, value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = cell_text(value)
    if column == "n_edits":
        return f"{text} edits"
    if column == "seed":
        return f"seed {text}"
    if column == "ft_layers":
        return f"{text} layers"
    return text


def plot_labels(frame: pd.DataFrame) -> dict[str, str]:
    """A short label per configuration: its values of the settings that differ between the configurations.

    Config ids name every setting and are too long for tick labels and legends; where the short labels
    would not tell two configurations apart, the config id is used.
    """
    configs = frame.drop_duplicates("config_id").set_index("config_id")
    settings = [c for c in column_names(CONFIG_COLUMNS)[1:] if c in configs.columns]
    varying = [c for c in settings if configs[c].astype(str).nunique() > 1] or [
        c for c in ("ft_method", "ft_layers") if c in configs.columns
    ]
    labels = {
        str(cid): " · ".join(setting_label(c, row[c]) for c in varying)
        for cid, row in configs.iterrows()
    }
    if len(set(labels.values())) < len(labels) or not all(labels.values()):
        return {cid: cid for cid in labels}
    return labels


def plot_decay_bars(final: pd.DataFrame) -> MplFigure | None:
    """ES of M_ed and M_ed_ft side by side for every fine-tuned configuration."""
    rows = fine_tuned_rows(final)
    rows = rows[rows["es_ed"].notna() | rows["es_ed_ft"].notna()]
    if rows.empty:
        return None
    labels = plot_labels(rows)
    names = [labels[str(c)] for c in rows["config_id"]]
    y = np.arange(len(rows))
    # horizontal bars: one row per configuration, however long its label
    figure = new_figure(5.0 + 0.065 * max(len(n) for n in names), 1.6 + 0.3 * len(rows))
    axes = figure.add_subplot()
    axes.barh(
        y - 0.2,
        rows["es_ed"].to_numpy(float),
        height=0.4,
        label="before: ES(M_ed)",
        color="#4878a8",
    )
    axes.barh(
        y + 0.2,
        rows["es_ed_ft"].to_numpy(float),
        height=0.4,
        label="after: ES(M_ed_ft)",
        color="#d9843b",
    )
    axes.set_yticks(y, names, fontsize=8)
    axes.set_ylim(len(rows) - 0.5, -0.5)  # first configuration on top
    top = float(np.nanmax(rows[["es_ed", "es_ed_ft"]].to_numpy(float)))
    axes.set_xlim(0, max(105.0, top * 1.05))
    axes.set_xlabel("edit success ES (%)")
    axes.set_title("ES before → after fine-tuning")
    figure.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    axes.grid(axis="x", alpha=0.3)
    return figure


def multi_step_configs(decay: pd.DataFrame) -> list[str]:
    fine_tuned = fine_tuned_rows(decay)
    steps = fine_tuned.groupby("config_id", sort=False)["step"].nunique()
    return sort_configurations(
        decay[decay["config_id"].isin(steps[steps > 1].index)].drop_duplicates("config_id")
    )["config_id"].tolist()


def plot_decay_steps(decay: pd.DataFrame, config_ids: Sequence[str]) -> MplFigure:
    """ES(M_ed_ft) and EFR against the fine-tuning step, one line per configuration.

    The ES line starts at step 0 with ES(M_ed) when the configuration has no step-0 row.
    """
    figure = new_figure(11.0, 4.2)
    es_axes, efr_axes = figure.subplots(1, 2)
    labels = plot_labels(decay[decay["config_id"].isin(config_ids)])
    for config_id in config_ids[:MAX_LINES_PER_PLOT]:
        rows = decay[decay["config_id"] == config_id].sort_values("step")
        steps = rows["step"].astype(float).tolist()
        es = rows["es_ed_ft"].tolist()
        es_ed = rows["es_ed"].dropna()
        if 0 not in steps and not es_ed.empty:
            steps, es = [0.0, *steps], [float(es_ed.iloc[0]), *es]
        es_axes.plot(steps, es, marker="o", label=labels[config_id])
        efr_axes.plot(rows["step"].astype(float), rows["efr"], marker="o", label=labels[config_id])
    es_axes.set(xlabel="fine-tuning step", ylabel="ES(M_ed_ft) (%)", title="edit success")
    efr_axes.set(xlabel="fine-tuning step", ylabel="EFR (%)", title="edit flip ratio")
    for axes in (es_axes, efr_axes):
        axes.grid(alpha=0.3)
    efr_axes.legend(fontsize=7, loc="best")
    return figure


def plot_training(training: pd.DataFrame, labels: Mapping[str, str] | None = None) -> MplFigure:
    """Loss against step per configuration; `labels` maps config ids to legend labels."""
    labels = labels or {}
    figure = new_figure(8.0, 4.5)
    axes = figure.add_subplot()
    groups = list(training.groupby(["config_id", "state"], sort=True))[:MAX_LINES_PER_PLOT]
    palette = [entry["color"] for entry in matplotlib.rcParams["axes.prop_cycle"]]
    colours = {
        cid: palette[i % len(palette)]
        for i, cid in enumerate(dict.fromkeys(c for (c, _), _ in groups))
    }
    for (config_id, state), rows in groups:
        rows = rows.sort_values("step")
        style = "--" if state == "M_ft" else "-"
        axes.plot(
            rows["step"],
            rows["loss"],
            style,
            color=colours[config_id],
            label=f"{labels.get(config_id, config_id)} ({state})",
        )
    axes.set(
        xlabel="fine-tuning step",
        ylabel="training loss",
        title="fine-tuning loss (solid M_ed_ft, dashed M_ft)",
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="best")
    return figure
