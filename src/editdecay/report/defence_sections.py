"""The report section on edit-preserving fine-tuning: each `ft_preserve` option beside plain
fine-tuning of the same edited model, edit by edit (analysis/preservation.py). Absent when no
configuration used an option.

For planted edits (attack configurations) the same table reads the other way: an option that
keeps beneficial edits keeps a backdoor too, so their ASR after fine-tuning is shown beside the
plain run's when results/attacks.csv has it.
"""

from __future__ import annotations

import math

import pandas as pd

from ..analysis.preservation import ALPHA, GOAL_DS_COST, GOAL_KEPT, preservation_table
from ..analysis.tables import final_rows
from .blocks import Block, Paragraph, ReportContext, Section, Table

TITLE_PRESERVATION = "Edit-preserving fine-tuning"
OPTION_TEXT = {
    "subspace": "updates of the edited modules kept off the edit keys' span",
    "activation": "edited modules' outputs on the edit prompts held by a regulariser",
    "distill": "the model's answers on the edit prompts held near the edited model's (KL)",
    "freeze": "edited layers left out of fine-tuning",
    "paraphrase": "edits restated in the fine-tuning data",
}


def _fmt(value, digits: int = 1, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "—"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _asr(attacks: pd.DataFrame | None, config_id: str, step) -> float:
    if attacks is None or attacks.empty:
        return math.nan
    rows = attacks[
        (attacks["config_id"] == config_id)
        & (attacks["state"] == "M_ed_ft")
        & (attacks["step"] == step)
        & (attacks["metric"] == "asr")
    ]
    return float(rows["value"].iloc[0]) if len(rows) else math.nan


def preservation_section(ctx: ReportContext) -> Section | None:
    results = ctx.results
    final = final_rows(results.decay, preserved=True)
    if final.empty or not (final["ft_preserve"] != "none").any():
        return None
    table = preservation_table(final, results.flips, results.downstream)
    if table.empty:
        return Section(
            TITLE_PRESERVATION,
            [Paragraph("No preserving configuration has a plain counterpart to compare with.")],
        )
    steps = final.set_index("config_id")["step"]
    shown = pd.DataFrame(
        {
            "option": table["ft_preserve"],
            "model": table["model"],
            "edits": table["edit_method"] + " / " + table["edit_data"].astype(str),
            "FT": table["ft_method"] + " " + table["ft_layers"].astype(str),
            "seed": table["seed"],
            "kept % (plain)": [
                f"{_fmt(k)} ({_fmt(p)})" for k, p in zip(table["kept"], table["kept_plain"])
            ],
            "only option / only plain": [
                f"{a} / {b}" if a is not pd.NA else "—"
                for a, b in zip(table["only_option"], table["only_plain"])
            ],
            "McNemar p": [_fmt(p, 3) for p in table["mcnemar_p"]],
            "verdict": table["verdict"],
            "DS M_ed_ft (plain)": [
                f"{_fmt(a)} ({_fmt(b)})"
                for a, b in zip(table["ds_M_ed_ft"], table["ds_M_ed_ft_plain"])
            ],
            "ΔDS ± band": [
                f"{_fmt(d, sign=True)} ± {_fmt(b)}"
                for d, b in zip(table["ds_delta"], table["ds_band"])
            ],
            "goal": table["goal"],
        }
    )
    blocks: list[Block] = [
        Paragraph(
            "Each option fine-tunes the edited model M_ed like its plain counterpart (same "
            "method, data, layers and seed) and protects the edits as listed below; the base "
            "model's fine-tuning M_ft is the plain one for both. *Kept* = edits successful on "
            "M_ed that still succeed on M_ed_ft at the final step. The option and the plain run "
            "share their edits, so they are compared edit by edit: the exact McNemar test on the "
            f"edits kept by one arm only decides (α = {ALPHA}). ΔDS = DS(option) − DS(plain) of "
            "M_ed_ft, band = 2 binomial SEs of the difference. Goal: at least "
            f"{GOAL_KEPT:.0f} % kept at no more than {GOAL_DS_COST:g} point of DS. It is *met* "
            f"only when the whole band lies within that cost (ΔDS − band ≥ −{GOAL_DS_COST:g}), "
            f"*not met* when too few edits are kept or the whole band lies beyond it (ΔDS + band "
            f"< −{GOAL_DS_COST:g}), and *not testable here* when the edits are kept but the band "
            "is too wide to tell (more DS items narrow it), when no edit succeeded on M_ed, or "
            "when an arm has no DS."
        ),
        Paragraph(
            "; ".join(
                f"`{o}`: {OPTION_TEXT.get(o, o)}" for o in dict.fromkeys(table["ft_preserve"])
            )
            + "."
        ),
        Table(
            shown,
            source="From results/decay.csv and results/flips.csv (final steps) and "
            "results/downstream.csv (DS items).",
        ),
    ]
    attack_rows = table[table["edit_data"].astype(str).str.startswith("attack:")]
    if len(attack_rows) and results.attacks is not None:
        words = []
        for _, row in attack_rows.iterrows():
            option = _asr(results.attacks, row["config_id"], steps.get(row["config_id"]))
            plain = _asr(results.attacks, row["plain_config_id"], steps.get(row["plain_config_id"]))
            words.append(
                f"{row['edit_data']} under {row['ft_method']} with `{row['ft_preserve']}`: ASR "
                f"after fine-tuning {_fmt(option)} % against {_fmt(plain)} % without it"
            )
        blocks.append(
            Paragraph(
                "The same options keep planted edits: " + "; ".join(words) + ". A defence that "
                "preserves beneficial edits preserves malicious ones by the same mechanism."
            )
        )
    return Section(TITLE_PRESERVATION, blocks)
