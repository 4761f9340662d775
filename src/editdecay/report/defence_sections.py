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

from ..analysis.preservation import (
    ALPHA,
    GOAL_DS_COST,
    GOAL_KEPT,
    attack_preservation,
    preservation_table,
)
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
    attacked = attack_preservation(table, results.attack_probes)
    if len(attacked):
        blocks.extend(_attack_blocks(attacked))
    return Section(TITLE_PRESERVATION, blocks)


def _attack_blocks(attacked: pd.DataFrame) -> list[Block]:
    """The options applied to planted edits: how much more of the attack they keep."""
    attacked = attacked.copy()
    more = attacked.loc[attacked["verdict"] == "keeps more of it", "ft_preserve"].tolist()
    less = attacked.loc[attacked["verdict"] == "keeps less of it", "ft_preserve"].tolist()
    tested = attacked[~attacked["verdict"].str.startswith("not testable")]
    said = []
    if more:
        said.append(
            f"{_names(more)} kept more of the attack than plain fine-tuning: a defence that "
            "preserves beneficial edits preserves planted ones by the same mechanism."
        )
    if less:
        said.append(f"{_names(less)} kept less of the attack than plain fine-tuning.")
    if len(tested) and not said:
        said.append(
            "No option kept a measurably different share of the attack than plain fine-tuning "
            f"here (McNemar, α = {ALPHA})."
        )
    if not len(tested):
        said.append("Not testable here: no attack probe fired on M_ed, or no probe scores.")
    reading = " ".join(said)
    for column in (
        "n_fired",
        "kept_option",
        "kept_plain",
        "only_option",
        "only_plain",
        "mcnemar_p",
    ):
        if column not in attacked:  # every row untestable: no counts
            attacked[column] = math.nan
    shown = pd.DataFrame(
        {
            "option": attacked["ft_preserve"],
            "attack": attacked["edit_data"],
            "FT": attacked["ft_method"],
            "ASR M_ed": attacked["asr_M_ed"].map(_fmt),
            "ASR M_ed_ft (plain)": [
                f"{_fmt(a)} ({_fmt(b)})"
                for a, b in zip(attacked["asr_option"], attacked["asr_plain"])
            ],
            "fired probes kept (plain)": [
                f"{_count(k)} ({_count(p)}) of {_count(n)}"
                for k, p, n in zip(
                    attacked["kept_option"], attacked["kept_plain"], attacked["n_fired"]
                )
            ],
            "only option / only plain": [
                f"{_count(a)} / {_count(b)}"
                for a, b in zip(attacked["only_option"], attacked["only_plain"])
            ],
            "McNemar p": [_fmt(p, 3) for p in attacked["mcnemar_p"]],
            "verdict": attacked["verdict"],
        }
    )
    return [
        Paragraph(
            "The same options applied to planted edits (the attack's edit requests are the "
            "protected edits): the attack probes that fired on M_ed, paired across the option and "
            "plain fine-tuning of the same M_ed; *kept* = still fires at the final step. " + reading
        ),
        Table(shown, source="From results/attack_probes.csv (attack probes, final steps)."),
    ]


def _names(options: list[str]) -> str:
    quoted = [f"`{o}`" for o in options]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _count(value) -> str:
    return "—" if value is None or pd.isna(value) else str(int(value))
