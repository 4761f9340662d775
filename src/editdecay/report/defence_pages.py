"""Report pages for the standalone defence commands: forensics (and its undo), repair, detect.

Each command writes its JSON and CSV files into its output directory; `write_defence_page(DIR)`
reads whichever of them are there and writes DIR/report.md, a self-contained DIR/report.html and
DIR/plots/*.png, so a page can be rebuilt from the committed files alone (`editdecay report DIR`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from ..io import atomic_write
from .blocks import BulletList, Figure, Paragraph, Section, Table
from .plots import new_figure
from .render import render_html, render_markdown

log = logging.getLogger(__name__)

FORENSICS, UNDO, REPAIR, DETECT = "report.json", "undo.json", "repair.json", "detect.json"


def is_defence_output(out_dir: Path) -> bool:
    return any((Path(out_dir) / name).is_file() for name in (FORENSICS, REPAIR, DETECT))


def write_defence_page(out_dir: Path) -> tuple[Path, Path]:
    """Write OUT/report.md and OUT/report.html from the defence outputs in OUT."""
    out_dir = Path(out_dir)
    sections: list[Section] = []
    if (out_dir / FORENSICS).is_file():
        sections += forensics_sections(out_dir)
    if (out_dir / REPAIR).is_file():
        sections += repair_sections(out_dir)
    if (out_dir / DETECT).is_file():
        sections += detect_sections(out_dir)
    if not sections:
        raise FileNotFoundError(
            f"{out_dir} holds none of {FORENSICS}, {REPAIR}, {DETECT}: nothing to report"
        )
    title = sections[0].title
    markdown = render_markdown(sections, out_dir)
    page = render_html(sections, title)
    md = atomic_write(out_dir / "report.md", lambda t: t.write_text(markdown, encoding="utf-8"))
    html = atomic_write(out_dir / "report.html", lambda t: t.write_text(page, encoding="utf-8"))
    log.info("wrote %s and %s", md, html)
    return md, html


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _num(value, digits: int = 1) -> str:
    return "—" if value is None or value != value else f"{value:.{digits}f}"


# --------------------------------------------------------------------------------------------------
# forensics


def forensics_sections(out_dir: Path) -> list[Section]:
    report = _read(out_dir / FORENSICS)
    layers = report["edited_layers"]
    rule = report.get("rule", {})
    found = (
        f"judged edited: **{len(report['edited_modules'])}** matrices at layers **{layers}**"
        if layers
        else "judged edited: **none**"
    )
    head = Section(
        f"Forensics: {report.get('suspect', 'the suspect')} against {report.get('base', 'its base')}",
        [
            Paragraph(
                f"{report['changed_matrices']} of {report['matrices']} weight matrices differ; "
                f"{found}; about **{report['n_facts_estimate']}** facts written (per matrix "
                "judged edited, the singular values of ΔW above the fine-tuning level; the median "
                "over those matrices)."
            ),
            Paragraph(
                f"Rule: {rule.get('text', '')}; a robust outlier has z above "
                f"{rule.get('outlier_z', '?')}; a matrix whose relative ‖ΔW‖ is below "
                f"{rule.get('floor', '?')} counts as unchanged. The fine-tuning level is the "
                "largest σ₁ among the module's layers not judged edited, or "
                f"{rule.get('rank_tol', '?')} of the matrix's own σ₁ where nothing else changed."
            ),
        ],
        level=1,
    )
    sections = [head, _difference_section(out_dir)]
    if report.get("subjects"):
        sections.append(_subjects_section(report))
    if (out_dir / UNDO).is_file():
        sections.append(_undo_section(out_dir))
    return sections


def _difference_section(out_dir: Path) -> Section:
    table = pd.read_csv(out_dir / "differences.csv")
    per_layer = table.dropna(subset=["layer"])
    figure = new_figure(7.5, 3.4)
    ax = figure.add_subplot()
    for family, rows in per_layer.groupby("family", sort=True):
        rows = rows.sort_values("layer")
        name = family.replace("model.layers.{}.", "").removesuffix(".weight")
        ax.plot(rows["layer"], rows["relative_norm"], marker=".", linewidth=1, label=name)
        edited = rows[rows["edited"].astype(bool)]
        ax.scatter(edited["layer"], edited["relative_norm"], s=60, facecolors="none", color="k")
    ax.set_xlabel("layer")
    ax.set_ylabel("‖ΔW‖ / ‖W‖")
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.legend(fontsize=7, ncol=2)
    path = _save(out_dir, "differences.png", figure)
    flagged = table[table["edited"].astype(bool)]
    columns = ["parameter", "relative_norm", "effective_rank", "stable_rank", "robust_z"]
    top = table.sort_values("robust_z", ascending=False).head(10)[columns]
    blocks = [
        Figure(path, "Relative difference per layer and module; circled: judged edited."),
        Table(
            (flagged if not flagged.empty else top)[columns].reset_index(drop=True),
            "The matrices judged edited"
            if not flagged.empty
            else "No matrix was judged edited; the ten with the largest robust z",
            {
                "relative_norm": ".4f",
                "effective_rank": ".1f",
                "stable_rank": ".2f",
                "robust_z": ".1f",
            },
        ),
    ]
    return Section("Where the suspect differs from its base", blocks)


def _subjects_section(report: dict) -> Section:
    ranked = pd.DataFrame(report["subjects"][:10])
    ranked.insert(0, "rank", range(1, len(ranked) + 1))
    blocks = [
        Table(
            ranked,
            f"The ten of {len(report['subjects'])} candidate subjects whose keys (the subject's "
            "last token at the edited layers) align most with the difference's right singular "
            "vectors",
            {"score": ".3f"},
        )
    ]
    recovery = report.get("recovery")
    if recovery:
        blocks.append(
            BulletList(
                [
                    f"known edited among the candidates: {recovery['n_edited_candidates']} of "
                    f"{recovery['n_candidates']}",
                    f"top-1 is an edited subject: {'yes' if recovery['top1_edited'] else 'no'}",
                    f"precision @ 10: {_num(recovery['precision_at_10'], 2)}",
                    f"edited subjects within the top {recovery['n_edited_candidates']}: "
                    f"{_num(100 * recovery['recall_at_n'])} %",
                ]
            )
        )
    return Section("Which subjects the difference responds to", blocks)


def _undo_section(out_dir: Path) -> Section:
    undo = _read(out_dir / UNDO)
    locality = "ns" if undo.get("ns_before") is not None else "neighbour_acc"
    kept = undo["n_successful_before"] - undo["n_reverted"]
    rows = pd.DataFrame(
        {
            "measure": [
                "edits successful (of those successful on the suspect)",
                "ES (scorer summary)",
                locality.replace("_", " "),
                "held-out perplexity",
            ],
            "before undo": [
                str(undo["n_successful_before"]), _num(undo["es_before"]),
                _num(undo[f"{locality}_before"]), _num(undo["perplexity_before"], 2),
            ],
            "after undo": [
                str(kept), _num(undo["es_after"]), _num(undo[f"{locality}_after"]),
                _num(undo["perplexity_after"], 2),
            ],
        }
    )  # fmt: skip
    ds = undo.get("ds", {})
    for mode in ("rank", "generate"):
        if mode in ds:
            d = ds[mode]
            rows.loc[len(rows)] = [
                f"DS, {mode} ({ds['n_items']} items; right only before / only after: "
                f"{d['only_right_before']} / {d['only_right_after']}, McNemar p "
                f"{d['mcnemar_p']:.2f})",
                _num(d["before"]),
                _num(d["after"]),
            ]
    text = (
        f"`{undo['mode']}`: {undo['n_reverted']} of the {undo['n_successful_before']} edits that "
        f"succeed on the suspect fail after the undo (**{_num(undo['reverted'])} %**), measured "
        f"on {undo['n_requests']} requests (success: every target token the argmax for zsRE-style "
        "requests, p(new) > p(true) otherwise)."
    )
    return Section("Undo", [Paragraph(text), Table(rows)])


# --------------------------------------------------------------------------------------------------
# repair and detect


def repair_sections(out_dir: Path) -> list[Section]:
    s = _read(out_dir / REPAIR)
    rows = pd.DataFrame(
        {
            "": ["left as fine-tuned", "flipped edits re-edited", "full re-edit"],
            "edit success %": [s["success_tuned"], s["success_repaired"], s["success_full"]],
            "seconds": [0.0, s["repair_seconds"], s["full_seconds"]],
        }
    )
    text = (
        f"{s['n_flipped']} of {s['n_requests']} {s['method']} edits flipped in {s['model']}; "
        f"{s['n_repaired']} restored by re-editing only them ({_num(s['repaired'])} %), "
        f"{_num(s['seconds_per_repaired_edit'], 2)} s per repaired edit; {s['n_broken_by_repair']} "
        "edit(s) that held before the repair fail after it."
    )
    return [Section(f"Repair of {s['edits']}", [Paragraph(text), Table(rows, "", ".1f")], level=1)]


def detect_sections(out_dir: Path) -> list[Section]:
    d = _read(out_dir / DETECT)
    scores = pd.read_csv(out_dir / "scores.csv") if (out_dir / "scores.csv").is_file() else None
    blocks = [
        Paragraph(
            f"Detector `{d['detector']}` on `{d['model']}`: the {d['n_facts']} facts of "
            f"`{d['requests']}` against {d['n_unedited']} unedited ones; AUROC "
            f"**{_num(d['auroc'], 3)}** (Mann–Whitney)."
        )
    ]
    if scores is not None and "edited" in scores:
        figure = new_figure(6, 3)
        ax = figure.add_subplot()
        for edited, rows in scores.groupby("edited"):
            label = "edited" if edited else "unedited"
            ax.hist(rows["score"], bins=20, range=(0, 1), alpha=0.6, label=label)
        ax.set_xlabel("detector score")
        ax.set_ylabel("facts")
        ax.legend()
        blocks.append(Figure(_save(out_dir, "detector-scores.png", figure), "Score per fact."))
    return [Section("Hidden-state edit detector", blocks, level=1)]


def _save(out_dir: Path, name: str, figure) -> Path:
    path = out_dir / "plots" / name
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    return path
