"""The report section "Why edits decay": the activation analysis of `editdecay analyse` (PAPER §2.7,
claims 12 and 13): per-layer shift magnitudes (Eqn 2) and displacement cosines (Eqn 6), stable
against erased edits, and the target tokens' corpus frequencies. Absent without activations.csv.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ..analysis.rank_tests import mann_whitney_u
from ..analysis.retention import retention_table
from .blocks import Block, Details, Figure, Paragraph, ReportContext, Section, Table
from .plots import MAX_PANELS, panel_grid, plot_labels

log = logging.getLogger(__name__)

TITLE_WHY = "Why edits decay (activation analysis, paper §5)"
ACTIVATIONS_LINK = "[results/activations.csv](results/activations.csv)"
PER_EDIT_LINK = "[results/activations_per_edit.csv](results/activations_per_edit.csv)"
FREQUENCY_LINK = "[results/target_frequency.csv](results/target_frequency.csv)"
KNOWN_LINK = "[results/known_facts.csv](results/known_facts.csv)"

MAGNITUDES = {
    "norm_ed": "‖h_ed − h‖ (edit)",
    "norm_ft": "‖h_ft − h‖ (fine-tuning)",
    "norm_ed_ft": "‖h_ed_ft − h‖ (both)",
}
COSINES = {
    "cos_ed_ft": "cos(d_ed, d_ft)",
    "cos_edft_ed": "cos(d_ed_ft, d_ed)",
    "cos_edft_ft": "cos(d_ed_ft, d_ft)",
}
COLOURS = ("#4878a8", "#d9843b", "#5a9e5a")
EDITED_SHADE = "#eeeeee"
UMAP_LINK = "[results/umap.csv](results/umap.csv)"
UMAP_MISSING = "UMAP not installed: pip install -e '.[analysis]'"
STATE_COLOURS = {"M": "#888888", "M_ed": "#4878a8", "M_ft": "#d9843b", "M_ed_ft": "#5a9e5a"}
FREQUENCY_COLUMNS = ("wikitext_log10_per_million", "finetune_log10_per_million")


def why_edits_decay_section(ctx: ReportContext) -> Section | None:
    acts = ctx.results.activations
    if acts is None:
        return None
    if acts.empty:
        return Section(TITLE_WHY, [Paragraph("`results/activations.csv` holds no rows.")])
    labels = plot_labels(ctx.final) if not ctx.final.empty else {}
    blocks: list[Block] = [
        Paragraph(
            "Residual-stream shifts of the four model states on the same prompts, read by "
            "`editdecay analyse` at the subject's last token and the prompt's last token: "
            "magnitudes ‖h_x − h‖ (paper Eqn 2) and cosines between the displacements d_ed = h_ed − h, "
            "d_ft = h_ft − h and d_ed_ft = h_ed_ft − h_ed (Eqns 3–6), layer means over prompts. "
            "Grey bands mark the edited layers. Claim 12's verdict is in REPRODUCTION.md."
        ),
        *geometry_figures(ctx, acts, labels),
        Details(
            "Layer means from the first edited layer on, per configuration and prompt set",
            [Table(geometry_summary(acts, labels), source=f"Source: {ACTIVATIONS_LINK}.")],
        ),
    ]
    blocks += umap_blocks(ctx, ctx.results.umap, labels)
    blocks += stable_vs_erased_blocks(ctx.results.activations_per_edit, labels)
    blocks += frequency_blocks(ctx.results.target_frequency)
    blocks += own_knowledge_blocks(ctx.results.known_facts, ctx.final, labels)
    return Section(TITLE_WHY, blocks)


# --------------------------------------------------------------------------- per-layer figures


def panels_of(acts: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    groups = list(acts.groupby(["config_id", "prompts", "position"], sort=False))
    return groups[:MAX_PANELS]


def edit_layers(unit: pd.DataFrame) -> list[int]:
    text = str(unit["edit_layers"].iloc[0]) if "edit_layers" in unit.columns else ""
    return [int(x) for x in text.split() if x.strip().isdigit()]


def plot_layer_lines(
    acts: pd.DataFrame, columns: dict[str, str], labels: dict[str, str], ylabel: str
) -> MplFigure:
    """One small panel per configuration × prompt set × position: `columns` against the layer."""
    panels = panels_of(acts)
    figure, axes_list = panel_grid(len(panels))
    for axes, ((config_id, prompts, position), unit) in zip(axes_list, panels):
        unit = unit.sort_values("layer")
        for layer in edit_layers(unit):
            axes.axvspan(layer - 0.5, layer + 0.5, color=EDITED_SHADE, zorder=0)
        for colour, column in zip(COLOURS, columns):
            axes.plot(unit["layer"], unit[column], marker="o", markersize=2.5, color=colour)
        axes.set_title(f"{labels.get(config_id, config_id)}\n{prompts} · {position}", fontsize=7)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
    figure.supxlabel("layer (block output)", fontsize=9)
    figure.supylabel(ylabel, fontsize=9)
    handles = [Patch(color=c) for c in COLOURS[: len(columns)]] + [Patch(color=EDITED_SHADE)]
    names = [*columns.values(), "edited layers"]
    figure.legend(handles, names, loc="outside upper center", ncols=4, fontsize=8, frameon=False)
    return figure


def geometry_figures(ctx: ReportContext, acts: pd.DataFrame, labels: dict) -> list[Block]:
    magnitude = ctx.save_plot(
        "activation_norms.png", plot_layer_lines(acts, MAGNITUDES, labels, "shift magnitude")
    )
    direction = ctx.save_plot(
        "activation_cosines.png", plot_layer_lines(acts, COSINES, labels, "cosine")
    )
    blocks: list[Block] = [
        Figure(magnitude, f"Shift magnitudes per layer (Eqn 2), from {ACTIVATIONS_LINK}."),
        Figure(direction, f"Displacement cosines per layer (Eqn 6), from {ACTIVATIONS_LINK}."),
    ]
    n_units = acts.groupby(["config_id", "prompts", "position"]).ngroups
    if n_units > MAX_PANELS:
        blocks.insert(0, Paragraph(f"The figures show the first {MAX_PANELS} of {n_units} panels."))
    return blocks


def geometry_summary(acts: pd.DataFrame, labels: dict) -> pd.DataFrame:
    """Per configuration × prompt set × position: the means over layers from the first edited on."""
    rows = []
    for (config_id, prompts, position), unit in acts.groupby(
        ["config_id", "prompts", "position"], sort=False
    ):
        edited = edit_layers(unit)
        later = unit[unit["layer"] >= (min(edited) if edited else 0)]
        means = later[[*MAGNITUDES, *COSINES]].mean()
        rows.append(
            {
                "configuration": labels.get(config_id, config_id),
                "prompts": prompts,
                "position": position,
                "layers": f"{int(later['layer'].min())}–{int(later['layer'].max())}",
                **means.to_dict(),
                "ft / ed": means["norm_ft"] / means["norm_ed"] if means["norm_ed"] > 0 else np.nan,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- UMAP


def plot_umap(projected: pd.DataFrame, labels: dict) -> MplFigure:
    """The first two UMAP components per configuration, points coloured by model state."""
    groups = list(projected.groupby("config_id", sort=False))[:MAX_PANELS]
    figure, axes_list = panel_grid(len(groups), width=3.0, height=2.8)
    for axes, (config_id, points) in zip(axes_list, groups):
        for state, colour in STATE_COLOURS.items():
            at = points[points["state"] == state]
            axes.scatter(at["x"], at["y"], s=8, color=colour, alpha=0.7, linewidths=0)
        axes.set_title(
            f"{labels.get(config_id, config_id)} · layer {int(points['layer'].iloc[0])}", fontsize=7
        )
        axes.tick_params(labelsize=7)
    figure.supxlabel("UMAP 1", fontsize=9)
    figure.supylabel("UMAP 2", fontsize=9)
    handles = [Patch(color=c) for c in STATE_COLOURS.values()]
    figure.legend(
        handles, list(STATE_COLOURS), loc="outside upper center", ncols=4, fontsize=8, frameon=False
    )
    return figure


def umap_overlap(projected: pd.DataFrame, labels: dict) -> pd.DataFrame:
    first = projected.drop_duplicates("config_id")
    return pd.DataFrame(
        {
            "configuration": [labels.get(c, c) for c in first["config_id"]],
            "layer": first["layer"].astype(int).to_numpy(),
            "silhouette": first["silhouette"].to_numpy(),
            "M_ed_ft nearer M_ft than M_ed": first["ed_ft_nearer_ft"].to_numpy(),
        }
    )


def umap_blocks(ctx: ReportContext, projected: pd.DataFrame | None, labels: dict) -> list[Block]:
    if projected is None or projected.empty:
        return [
            Paragraph(
                f"No UMAP projection (results/umap.csv): {UMAP_MISSING}, then rerun "
                "`editdecay analyse`."
            )
        ]
    path = ctx.save_plot("activation_umap.png", plot_umap(projected, labels))
    return [
        Figure(
            path,
            "UMAP (3-D, n_neighbors 20, min_dist 0.1; first two components shown) of the four "
            f"states' activations at the subject's last token of one edited layer, from {UMAP_LINK}.",
        ),
        Paragraph(
            "The paper reads its UMAP as M_ed_ft clustering with M_ft. Overlap: the silhouette of "
            "the four states (near 0: they overlap) and the share of M_ed_ft points nearer M_ft's "
            "centroid than M_ed's (near 1: M_ed_ft sits with M_ft)."
        ),
        Table(umap_overlap(projected, labels), source=f"Source: {UMAP_LINK}."),
    ]


# --------------------------------------------------------------------------- stable vs erased


def stable_vs_erased(per_edit: pd.DataFrame, labels: dict) -> pd.DataFrame:
    """Per configuration and edited layer: ‖Δh_ed‖ of stable against erased edits, Mann–Whitney U."""
    rows = []
    for config_id, edits in per_edit.groupby("config_id", sort=False):
        for layer, at in edits.groupby("layer"):
            stable = at[at["category"] == "stable"]["norm_ed"]
            erased = at[at["category"] == "erased"]["norm_ed"]
            if stable.empty or erased.empty or not (at["norm_ed"] > 0).any():
                continue
            test = mann_whitney_u(stable, erased)
            rows.append(
                {
                    "configuration": labels.get(config_id, config_id),
                    "layer": int(layer),
                    "n stable": len(stable),
                    "n erased": len(erased),
                    "‖Δh_ed‖ stable": float(stable.mean()),
                    "‖Δh_ed‖ erased": float(erased.mean()),
                    "P(stable > erased)": test.effect,
                    "p": test.p,
                }
            )
    return pd.DataFrame(rows)


def stable_vs_erased_blocks(per_edit: pd.DataFrame | None, labels: dict) -> list[Block]:
    if per_edit is None or per_edit.empty:
        return []
    table = stable_vs_erased(per_edit, labels)
    if table.empty:
        return [
            Paragraph(
                f"Stable against erased edits: no configuration has both (see {PER_EDIT_LINK})."
            )
        ]
    significant = int((table["p"] < 0.05).sum())
    return [
        Paragraph(
            "**Stable against erased edits.** The paper reads erased edits as having smaller "
            "edit-induced shifts ‖Δh_ed‖ than stable ones. Per configuration and layer where the "
            "edit moves the subject's last token: the means, the Mann–Whitney effect P(stable > "
            f"erased) (½ = no shift) and its two-sided p; {significant} of {len(table)} rows have "
            "p < 0.05 (uncorrected for the number of rows)."
        ),
        Table(
            table,
            source=f"Source: {PER_EDIT_LINK}, column `norm_ed`, by `category`.",
            floatfmt={"p": ".3g", "P(stable > erased)": ".2f"},
        ),
    ]


# --------------------------------------------------------------------------- target frequency


def frequency_by_category_table(freq: pd.DataFrame) -> pd.DataFrame:
    """Per flip category: distinct targets, their mean log frequencies and mean token counts."""
    distinct = freq.drop_duplicates(["target_new", "category"])
    rows = []
    for category, group in distinct.groupby("category", sort=False):
        rows.append(
            {
                "category": category or "(none)",
                "distinct targets": len(group),
                "tokens per target": float(group["n_target_tokens"].mean()),
                **{
                    f"log10 per million, {c.split('_')[0]}": float(group[c].mean())
                    for c in FREQUENCY_COLUMNS
                },
            }
        )
    return pd.DataFrame(rows)


def frequency_tests(freq: pd.DataFrame) -> str:
    distinct = freq.drop_duplicates(["target_new", "category"])
    words = []
    for column in FREQUENCY_COLUMNS:
        stable = distinct[distinct["category"] == "stable"][column]
        erased = distinct[distinct["category"] == "erased"][column]
        test = mann_whitney_u(stable, erased)
        corpus = column.split("_")[0]
        words.append(
            f"{corpus}: P(stable > erased) = {test.effect:.2f}, p = {test.p:.3g} "
            f"({test.n_x} stable, {test.n_y} erased)"
        )
    return "; ".join(words)


def frequency_blocks(freq: pd.DataFrame | None) -> list[Block]:
    if freq is None or freq.empty:
        return []
    return [
        Paragraph(
            "**Target frequency (claim 13).** The paper reads its Table 6 examples as erased edits "
            "having rare target tokens. Each distinct target counts once per category; frequency "
            "is the mean count of its tokens per million corpus tokens (add-one smoothed, log10) in "
            "the bundled WikiText and in the fine-tuning data. Mann–Whitney U of stable against "
            f"erased targets: {frequency_tests(freq)}."
        ),
        Table(
            frequency_by_category_table(freq),
            source=f"Source: {FREQUENCY_LINK}.",
        ),
    ]


# --------------------------------------------------------------------------- own knowledge


def own_knowledge_blocks(
    known: pd.DataFrame | None, final: pd.DataFrame, labels: dict
) -> list[Block]:
    if known is None or known.empty or final.empty:
        return []
    table = retention_table(known, final)
    if table.empty:
        return []
    below = int((table["edits_minus_own"] < -table["band"]).sum())
    above = int((table["edits_minus_own"] > table["band"]).sum())
    shown = table.assign(config_id=table["config_id"].map(labels).fillna(table["config_id"]))
    shown = shown.rename(
        columns={
            "config_id": "configuration",
            "n_success_ed": "edits",
            "edit_kept": "edits kept %",
            "n_known": "own facts",
            "kept_M_ft": "own kept by M_ft %",
            "kept_M_ed": "own kept by M_ed %",
            "kept_M_ed_ft": "own kept by M_ed_ft %",
            "edits_minus_own": "edits − own",
            "band": "± band",
        }
    )
    return [
        Paragraph(
            "**Edits against the model's own knowledge.** Facts of the same edit set that no "
            "configuration edits and that M already ranks first, scored on every state: how much "
            "of what the model knew the same fine-tuning removes, beside how many of the "
            "successful edits it keeps (100 − EFR). Edits and own facts are different items; the "
            f"band is two binomial SEs of the difference. Edits are kept less than own facts beyond "
            f"the band in {below} of {len(table)} configurations, more in {above}."
        ),
        Table(shown, source=f"Source: {KNOWN_LINK} and results/decay.csv (`efr`).", floatfmt=".1f"),
    ]
