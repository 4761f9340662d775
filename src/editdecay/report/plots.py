"""The report's plots, drawn on an Agg canvas (no pyplot state)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..analysis.tables import fine_tuned_rows, sort_configurations
from ..schema import CONFIG_COLUMNS, column_names
from .format import NA, cell_text


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
    if column == "edit_layers":
        return f"edit layers {text}" if text != NA else "default edit layers"
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
    """ES of M_ed and M_ed_ft side by side for every fine-tuned configuration, one panel per model ×
    edit data (those that differ); within a panel each bar pair is labelled by what differs there."""
    rows = fine_tuned_rows(final)
    rows = rows[rows["es_ed"].notna() | rows["es_ed_ft"].notna()]
    if rows.empty:
        return None
    facets = [c for c in ("model", "edit_data") if rows[c].nunique() > 1]
    groups = list(rows.groupby(facets, sort=False)) if facets else [((), rows)]
    labelled = [(key, group, plot_labels(group)) for key, group in groups]
    longest = max(len(name) for _, _, labels in labelled for name in labels.values())
    columns = 2 if len(groups) > 1 else 1
    per_column = [labelled[i::columns] for i in range(columns)]
    height = max(sum(1.0 + 0.28 * len(g) for _, g, _ in column) for column in per_column)
    figure = new_figure((3.4 + 0.06 * longest) * columns, height + 0.6)
    grid = figure.add_gridspec(1, columns)
    for index, column in enumerate(per_column):
        cells = grid[0, index].subgridspec(
            len(column), 1, height_ratios=[len(g) + 2 for _, g, _ in column]
        )
        for position, (key, group, labels) in enumerate(column):
            axes = figure.add_subplot(cells[position, 0])
            _bars(axes, group, labels)
            values = key if isinstance(key, tuple) else (key,)
            axes.set_title(" · ".join(cell_text(v) for v in values) or "ES", fontsize=8)
    handles = [Patch(color="#4878a8"), Patch(color="#d9843b")]
    names = ["before: ES(M_ed)", "after: ES(M_ed_ft)"]
    figure.legend(handles, names, loc="outside upper center", ncols=2, fontsize=8, frameon=False)
    return figure


def _bars(axes, rows: pd.DataFrame, labels: Mapping[str, str]) -> None:
    y = np.arange(len(rows))
    axes.barh(y - 0.2, rows["es_ed"].to_numpy(float), height=0.4, color="#4878a8")
    axes.barh(y + 0.2, rows["es_ed_ft"].to_numpy(float), height=0.4, color="#d9843b")
    axes.set_yticks(y, [labels[str(c)] for c in rows["config_id"]], fontsize=7)
    axes.set_ylim(len(rows) - 0.5, -0.5)  # first configuration on top
    axes.set_xlim(0, 105)
    axes.tick_params(axis="x", labelsize=7)
    axes.grid(axis="x", alpha=0.3)


def multi_step_configs(decay: pd.DataFrame) -> list[str]:
    fine_tuned = fine_tuned_rows(decay)
    steps = fine_tuned.groupby("config_id", sort=False)["step"].nunique()
    return sort_configurations(
        decay[decay["config_id"].isin(steps[steps > 1].index)].drop_duplicates("config_id")
    )["config_id"].tolist()


MAX_PANELS = 48  # small multiples per figure; beyond, the figure shows the first ones
PANEL_COLUMNS = 4


def panel_grid(n: int, width: float = 3.0, height: float = 2.3) -> tuple[MplFigure, list]:
    """A figure of `n` small panels, PANEL_COLUMNS per row, sharing x and y."""
    columns = min(PANEL_COLUMNS, max(n, 1))
    rows = math.ceil(n / columns)
    figure = new_figure(width * columns + 0.6, height * rows + 0.9)
    grid = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    axes = [a for row in grid for a in row]
    for unused in axes[n:]:
        unused.set_visible(False)
    return figure, axes[:n]


def plot_decay_steps(decay: pd.DataFrame, config_ids: Sequence[str]) -> MplFigure:
    """ES(M_ed_ft) and EFR against the fine-tuning step, one small panel per configuration.

    Both on the same 0–100 % axis, so a flat series reads as flat; the dotted line is ES(M_ed), the
    no-change reference, and the ES line starts there at step 0.
    """
    shown = list(config_ids)[:MAX_PANELS]
    labels = plot_labels(decay[decay["config_id"].isin(shown)])
    figure, panels = panel_grid(len(shown))
    for axes, config_id in zip(panels, shown):
        rows = decay[decay["config_id"] == config_id].sort_values("step")
        steps = rows["step"].astype(float).tolist()
        es = rows["es_ed_ft"].astype(float).tolist()
        es_ed = rows["es_ed"].dropna()
        if not es_ed.empty:
            axes.axhline(float(es_ed.iloc[0]), color="#888", linestyle=":", linewidth=1)
            if 0 not in steps:
                steps, es = [0.0, *steps], [float(es_ed.iloc[0]), *es]
        axes.plot(steps, es, marker="o", markersize=3, color="#4878a8", label="ES(M_ed_ft)")
        axes.plot(
            rows["step"].astype(float),
            rows["efr"].astype(float),
            marker="s",
            markersize=3,
            color="#d9843b",
            label="EFR",
        )
        axes.set_title(labels[config_id], fontsize=7)
        axes.set_ylim(-3, 105)
        axes.grid(alpha=0.3)
    figure.supxlabel("fine-tuning step", fontsize=9)
    figure.supylabel("%", fontsize=9)
    handles, names = panels[0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="#888", linestyle=":"))
    names.append("ES(M_ed), before fine-tuning")
    figure.legend(handles, names, loc="outside upper center", ncols=3, fontsize=8, frameon=False)
    return figure


STYLES = ("-", "--", ":", "-.")


def plot_training(training: pd.DataFrame, final: pd.DataFrame | None = None) -> MplFigure:
    """Training loss against step: one panel per fine-tuning setting (model, method, data, layers
    that differ), M_ed_ft curves coloured by edit method and styled by edit data, M_ft in grey.

    Curves of configurations that differ only in edit count or seed share colour and style (their
    losses nearly coincide); the legend names the colours and styles only.
    """
    settings = ["model", "ft_method", "ft_data", "ft_layers", "edit_method", "edit_data"]
    known = final[["config_id", *settings]] if final is not None else None
    frame = training.merge(known, on="config_id", how="left") if known is not None else training
    for column in settings:
        if column not in frame.columns:
            frame[column] = ""
        frame[column] = frame[column].fillna("").astype(str)
    facets = [c for c in settings[:4] if frame[c].nunique() > 1] or ["ft_method"]
    every_group = list(frame.groupby(facets, sort=True))
    groups = every_group[:MAX_PANELS]
    palette = [entry["color"] for entry in matplotlib.rcParams["axes.prop_cycle"]]
    colours = {
        m: palette[i % len(palette)] for i, m in enumerate(sorted(frame["edit_method"].unique()))
    }
    styles = {d: STYLES[i % len(STYLES)] for i, d in enumerate(sorted(frame["edit_data"].unique()))}
    figure, panels = panel_grid(len(groups))
    for axes, (key, rows) in zip(panels, groups):
        for (_, state), curve in rows.groupby(["config_id", "state"], sort=True):
            curve = curve.sort_values("step")
            x, y = curve["step"].astype(float), curve["loss"].astype(float)
            if state == "M_ft":
                axes.plot(x, y, color="#999", linewidth=0.8, linestyle="--")
            else:
                style = styles[curve["edit_data"].iloc[0]]
                axes.plot(
                    x,
                    y,
                    color=colours[curve["edit_method"].iloc[0]],
                    linewidth=0.9,
                    linestyle=style,
                )
        values = key if isinstance(key, tuple) else (key,)
        axes.set_title(" · ".join(setting_label(c, v) for c, v in zip(facets, values)), fontsize=7)
        axes.grid(alpha=0.3)
    figure.supxlabel("fine-tuning step", fontsize=9)
    figure.supylabel("training loss", fontsize=9)
    if len(every_group) > len(groups):
        figure.suptitle(f"the first {len(groups)} of {len(every_group)} panels", fontsize=8)
    handles = [Line2D([], [], color=c) for c in colours.values()]
    names = [f"M_ed_ft, {m}" if m else "M_ed_ft" for m in colours]
    if len(styles) > 1:
        handles += [Line2D([], [], color="#444", linestyle=s) for s in styles.values()]
        names += [f"edit data {d}" for d in styles]
    handles.append(Line2D([], [], color="#999", linestyle="--"))
    names.append("M_ft (unedited, fine-tuned)")
    figure.legend(handles, names, loc="outside upper center", ncols=4, fontsize=8, frameon=False)
    return figure
