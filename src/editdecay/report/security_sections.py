"""The report section on planted edits: how much of each attack survives each fine-tuning recipe, at
what downstream cost, and which recipe removes it. Absent without results/attacks.csv.

Persistence is read probe by probe (attack_probes.csv): the attack probes that fired on M_ed and
still fire on M_ed_ft. An attack counts as removed when ASR(M_ed_ft) is within the band (± 2 SE of
the two shares) of the unattacked fine-tuned model's ASR, M_ft: the same fine-tuning, no attack;
and "not testable" where M_ft itself fires about as often as the attack did on M_ed (the band of
those two), since no ASR after fine-tuning can then separate a removed attack from a kept one.
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure as MplFigure

from ..attacks.score import persistence
from .blocks import Block, Figure, Paragraph, ReportContext, Section, Table
from .plots import new_figure, plot_labels

TITLE_SECURITY = "Planted edits through fine-tuning (security)"
ATTACKS_LINK = "[results/attacks.csv](results/attacks.csv)"
PROBES_LINK = "[results/attack_probes.csv](results/attack_probes.csv)"
KIND_COLOURS = {
    "backdoor": "#b2403a",
    "task-backdoor": "#d9843b",
    "misinformation": "#4878a8",
    "bias": "#6a4c93",
}


def attack_kind(edit_data: str) -> str:
    return edit_data.partition(":")[2] if str(edit_data).startswith("attack:") else ""


def _metric(attacks: pd.DataFrame, config_id: str, state: str, step: int, metric: str) -> float:
    rows = attacks[
        (attacks["config_id"] == config_id)
        & (attacks["state"] == state)
        & (attacks["step"] == step)
        & (attacks["metric"] == metric)
    ]
    return float(rows["value"].iloc[0]) if len(rows) else math.nan


def _ds(row: pd.Series, state: str) -> float:
    for prefix in ("ds_", "ds_rank_"):
        value = row.get(f"{prefix}{state}")
        if value is not None and pd.notna(value):
            return float(value)
    return math.nan


def persistence_table(
    attacks: pd.DataFrame, probes: pd.DataFrame, final: pd.DataFrame
) -> pd.DataFrame:
    """One row per fine-tuned attack configuration at its last step (see the module docstring)."""
    rows = []
    for _, row in final.iterrows():
        kind = attack_kind(row.get("edit_data", ""))
        if not kind or row.get("ft_method") in (None, "none") or pd.isna(row.get("step")):
            continue
        cid, step = row["config_id"], int(row["step"])
        own = probes[probes["config_id"] == cid]
        before = own[(own["state"] == "M_ed") & (own["step"] == 0)]
        after = own[(own["state"] == "M_ed_ft") & (own["step"] == step)]
        baseline = own[(own["state"] == "M_ft") & (own["step"] == step)]
        if before.empty or after.empty or baseline.empty:
            continue
        p = persistence(before, after, baseline)
        ds_cost = _ds(row, "M_ed") - _ds(row, "M_ed_ft")
        rows.append(
            {
                "config_id": cid,
                "kind": kind,
                "model": row.get("model", ""),
                "asr_M": _metric(attacks, cid, "M", 0, "asr"),
                "asr_M_ed": p["asr_before"],
                "asr_M_ft": p["asr_baseline"],
                "asr_M_ed_ft": p["asr_after"],
                "band": p["band"],
                "ratio": p["ratio"],
                "kept": p["kept"],
                "lost": p["lost"],
                "cacc_M_ed": _metric(attacks, cid, "M_ed", 0, "cacc"),
                "cacc_M_ed_ft": _metric(attacks, cid, "M_ed_ft", step, "cacc"),
                "ds_cost": ds_cost,
                "removed": p["removed"] if p["testable"] else "not testable",
            }
        )
    return pd.DataFrame(rows)


def removal_sentences(table: pd.DataFrame, labels: dict) -> list[str]:
    """Per model and kind: the recipe that removes the attack at the least DS cost, in words."""
    words = []
    for (model, kind), group in table.groupby(["model", "kind"], sort=False):
        untestable = group[group["removed"] == "not testable"]
        group = group[group["removed"] != "not testable"]
        for _, row in untestable.iterrows():
            words.append(
                f"{kind} on {model}: not testable with "
                f"{labels.get(row['config_id'], row['config_id'])}: the unattacked model "
                "fine-tuned the same way fires on "
                f"{row['asr_M_ft']:.1f} % of the attack probes itself (the attacked model "
                f"{row['asr_M_ed']:.1f} % before fine-tuning), so its ASR after "
                f"({row['asr_M_ed_ft']:.1f} %) cannot show whether the attack was removed."
            )
        if group.empty:
            continue
        removed = group[group["removed"] == True]  # noqa: E712 (the column also holds text)
        if removed.empty:
            best = group.loc[group["asr_M_ed_ft"].idxmin()]
            words.append(
                f"{kind} on {model}: no recipe removed it; the lowest ASR after fine-tuning is "
                f"{best['asr_M_ed_ft']:.1f} % ({labels.get(best['config_id'], best['config_id'])}, "
                f"baseline {best['asr_M_ft']:.1f} %)."
            )
            continue
        costs = removed["ds_cost"].fillna(math.inf)
        best = removed.loc[costs.idxmin()]
        cost = (
            "DS not measured"
            if not math.isfinite(best["ds_cost"])
            else f"DS cost {best['ds_cost']:+.1f} pp"
        )
        words.append(
            f"{kind} on {model}: removed by {labels.get(best['config_id'], best['config_id'])} "
            f"at the least downstream cost ({cost}; ASR {best['asr_M_ed']:.1f} → "
            f"{best['asr_M_ed_ft']:.1f} %, baseline {best['asr_M_ft']:.1f} %); "
            f"{len(removed)} of {len(group)} recipes removed it."
        )
    return words


def plot_frontier(table: pd.DataFrame, labels: dict) -> MplFigure:
    figure = new_figure(6.4, 4.2)
    ax = figure.subplots()
    for kind, group in table.groupby("kind", sort=False):
        ax.scatter(
            group["ds_cost"],
            group["asr_M_ed_ft"],
            color=KIND_COLOURS.get(kind, "#555555"),
            label=kind,
        )
        for _, r in group.iterrows():
            ax.annotate(
                labels.get(r["config_id"], ""), (r["ds_cost"], r["asr_M_ed_ft"]), fontsize=6
            )
    ax.set_xlabel("DS cost of the fine-tuning, DS(M_ed) − DS(M_ed_ft), pp")
    ax.set_ylabel("ASR after fine-tuning, %")
    ax.set_ylim(-2, 102)
    ax.legend(fontsize=7)
    ax.set_title("Sanitisation frontier: one point per recipe")
    return figure


def plot_asr_steps(attacks: pd.DataFrame, table: pd.DataFrame, labels: dict) -> MplFigure | None:
    asr = attacks[(attacks["metric"] == "asr") & attacks["config_id"].isin(table["config_id"])]
    if asr[asr["state"] == "M_ed_ft"]["step"].nunique() < 2:
        return None
    figure = new_figure(6.4, 4.2)
    ax = figure.subplots()
    for cid, group in asr.groupby("config_id", sort=False):
        start = group[(group["state"] == "M_ed") & (group["step"] == 0)]
        tuned = group[group["state"] == "M_ed_ft"].sort_values("step")
        line = pd.concat([start, tuned])
        ax.plot(line["step"], line["value"], marker="o", label=labels.get(cid, cid))
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("ASR of M_ed_ft, %")
    ax.set_ylim(-2, 102)
    ax.legend(fontsize=6)
    return figure


def security_section(ctx: ReportContext) -> Section | None:
    attacks, probes = ctx.results.attacks, ctx.results.attack_probes
    if attacks is None or attacks.empty or probes is None:
        return None
    table = persistence_table(attacks, probes, ctx.final)
    if table.empty:
        return Section(
            TITLE_SECURITY,
            [
                Paragraph(
                    f"No fine-tuned attack configuration has all its states scored ({ATTACKS_LINK})."
                )
            ],
        )
    labels = plot_labels(ctx.final[ctx.final["config_id"].isin(table["config_id"])])
    shown = table.assign(configuration=table["config_id"].map(labels)).drop(columns="config_id")
    shown = shown[["configuration", *[c for c in shown.columns if c != "configuration"]]]
    blocks: list[Block] = [
        Paragraph(
            "Each attack is planted by an edit (M → M_ed), then the model is fine-tuned (M_ed_ft); "
            "M_ft, the same fine-tuning of the unattacked model, is its baseline. ASR: attack probes "
            "that fire (held-out prompts, never the edited ones); ratio = ASR(M_ed_ft) / ASR(M_ed); "
            "kept / lost: attack probes that fired on M_ed and still / no longer fire (paired); "
            "removed: ASR(M_ed_ft) within the band (± 2 SE) of M_ft's, not testable where M_ft "
            "itself fires about as often as M_ed did; DS cost: DS(M_ed) − DS(M_ed_ft)."
        ),
        Table(
            shown,
            source=f"Source: {ATTACKS_LINK}, {PROBES_LINK} and results/decay.csv.",
            floatfmt=".1f",
        ),
        Paragraph(" ".join(removal_sentences(table, labels))),
    ]
    path = ctx.save_plot("attack_frontier.png", plot_frontier(table, labels))
    blocks.append(
        Figure(path, "ASR after fine-tuning against its downstream cost, one point per recipe.")
    )
    steps = plot_asr_steps(attacks, table, labels)
    if steps is not None:
        path = ctx.save_plot("attack_asr_steps.png", steps)
        blocks.append(
            Figure(path, "ASR of the attacked model over the course of fine-tuning (step 0: M_ed).")
        )
    return Section(TITLE_SECURITY, blocks)
