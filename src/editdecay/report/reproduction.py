"""REPRODUCTION.md: the paper's claims judged on a run, then the study report's paper-style sections."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from ..analysis.claims import (
    VERDICTS,
    ClaimResult,
    Z,
    check_claims,
    check_claims_per_model,
    claims_frame,
    seed_spreads,
    t_tests,
)
from ..analysis.tables import final_rows
from ..io import atomic_write
from .blocks import BulletList, Paragraph, ReportContext, Section, Table
from .inputs import StudyResults, load_results
from .render import render_markdown
from .run_sections import header_section
from .sections import SECTIONS
from .writer import build_section

TITLE_CLAIMS = "Paper claims (PAPER §4)"
REPRODUCTION_FILE = "REPRODUCTION.md"


def claim_tables(results: StudyResults) -> dict[str, pd.DataFrame]:
    """The tables the claim checks read: decay.csv, flips.csv for the per-edit bootstrap, the M_ed
    rows of edits.csv for the edit-only comparisons (claim 14), downstream.csv for the DS item
    counts, and activations.csv / target_frequency.csv of `editdecay analyse` for claims 12 and 13."""
    tables: dict[str, pd.DataFrame] = {"decay": results.decay}
    optional = {
        "downstream": results.downstream,
        "flips": results.flips,
        "edits": results.edited,
        "activations": results.activations,
        "target_frequency": results.target_frequency,
    }
    tables.update({name: table for name, table in optional.items() if table is not None})
    return tables


def claims_section(ctx: ReportContext) -> Section:
    """Report section: the claims table, the paired t-tests and the seed spreads (for REPRODUCTION.md)."""
    tables = claim_tables(ctx.results)
    results = check_claims(tables)
    per_model = check_claims_per_model(tables)
    frame = claims_frame(results)
    counts = ", ".join(f"{v}: {int((frame['verdict'] == v).sum())}" for v in VERDICTS)
    source = (
        "Source: `editdecay.analysis.claims.check_claims` on [results/decay.csv](results/decay.csv) "
        "(final rows), [results/flips.csv](results/flips.csv) and "
        "[results/downstream.csv](results/downstream.csv)"
    )

    def shown(claims) -> pd.DataFrame:
        return claims_frame(claims)[["id", "claim", "paper", "ours", "verdict"]].rename(
            columns={"ours": "this run"}
        )

    blocks = [
        Paragraph(
            f"Verdicts ({counts}). Claims compare directions and orderings, not absolute numbers. "
            "**holds** / **does not hold**: the difference points the paper's way / the other way "
            "beyond its 95% band; **inconclusive**: the band holds zero; **not testable here**: "
            "the configurations exist but their data cannot show the effect (the reason is given); "
            "**not tested**: the run lacks what the claim needs. The band is a bootstrap over "
            "edits and seeds from [results/flips.csv](results/flips.csv): configurations that share "
            "requests are resampled together, so arms are compared edit by edit; DS claims use the "
            f"binomial noise of the DS items (±{Z:g} SE); claim 15 compares the seed SD's "
            "chi-square interval with the paper's level. Each claim's detail names its test."
        ),
    ]
    if len(per_model) > 1:
        verdicts = frame[["id", "claim"]].copy()
        for model, claims in per_model.items():
            verdicts[model] = [c.verdict for c in claims]
        verdicts["all models"] = frame["verdict"]
        blocks.append(
            Table(
                verdicts, source=f"{source}: each model's configurations alone, then all together."
            )
        )
        for model, claims in per_model.items():
            blocks += [
                Paragraph(f"**{model}**"),
                Table(shown(claims), source=f"{source}, rows of `{model}` only."),
            ]
        blocks += [Paragraph("**All models together**"), Table(shown(results), source=f"{source}.")]
    else:
        blocks.append(Table(shown(results), source=f"{source}."))
    blocks += [
        Paragraph("**How each verdict was computed**"),
        BulletList([f"{r.id}. {r.detail}" for r in results]),
    ]
    if len(per_model) > 1:
        for model, claims in per_model.items():
            blocks += [
                Paragraph(f"*{model} only:*"),
                BulletList([f"{r.id}. {r.detail}" for r in claims]),
            ]
    tests = t_tests(tables["decay"])
    if tests.empty:
        blocks.append(
            Paragraph(
                "Paired t-tests of ES(M_ed) vs ES(M_ed_ft): no fine-tuned MEMIT/AlphaEdit "
                "configurations."
            )
        )
    else:
        blocks.append(
            Paragraph(
                "**Paired t-tests, ES(M_ed) vs ES(M_ed_ft), per fine-tuning method** (paper "
                "App. C: DoRA p = 3.29e-5, LoRA p = 4.46e-5, full FT p = 0.009)"
            )
        )
        blocks.append(
            Table(
                tests,
                floatfmt={
                    "ES M_ed": ".2f",
                    "ES M_ed_ft": ".2f",
                    "mean drop": ".2f",
                    "t": ".3f",
                    "p": ".3g",
                },
                source="Pairs: configurations (model × MEMIT/AlphaEdit × edit data × edit count; "
                "Commonsense, all layers), each averaged over its seeds; two-sided Student t, "
                "df = pairs − 1. `mean drop` = ES(M_ed) − ES(M_ed_ft) in points.",
            )
        )
    spreads = seed_spreads(tables["decay"])
    if spreads.empty:
        blocks.append(
            Paragraph("Seed spreads: no configuration was repeated with another fine-tuning seed.")
        )
    else:
        blocks.append(
            Paragraph(
                "**Seed-to-seed spread** (paper: DS differs by 3.7–5.4% across seeds; ES SD ≤ "
                "0.5 pp across sampled edit sets)"
            )
        )
        blocks.append(
            Table(
                spreads,
                source="Per group of configurations differing only in the fine-tuning seed: "
                "mean and sample SD over seeds of `es_ed_ft`, `delta_es`, `ds_M_ed_ft`, "
                "`ds_M_ft` (points); DS range = max − min over seeds.",
            )
        )
    return Section(TITLE_CLAIMS, blocks)


TITLE_DEPARTURES = "Departures from the paper's protocol"


def departures_section(ctx: ReportContext) -> Section:
    """What this run does differently from the paper: the departures of every scale, then the
    settings in which this run's scale differs from the paper scale."""
    from ..study.reproduce import PAPER, PAPER_DEPARTURES, SCALE_SETTINGS

    name = str((ctx.results.study or {}).get("name", ""))
    scale = name.removeprefix("reproduction-") if name.startswith("reproduction-") else None
    blocks: list = [
        Paragraph(
            "At every scale, including `--scale paper` (`study/reproduce.py: PAPER_DEPARTURES`):"
        ),
        BulletList(list(PAPER_DEPARTURES)),
    ]
    settings = SCALE_SETTINGS.get(scale or "")
    if settings is not None and settings is not PAPER:
        differing = [
            f"`{f.name}`: {getattr(settings, f.name)!r} (paper scale: {getattr(PAPER, f.name)!r})"
            for f in fields(settings)
            if getattr(settings, f.name) != getattr(PAPER, f.name)
        ]
        blocks += [
            Paragraph(
                f"This run is at scale `{scale}`, which also differs from the paper scale in:"
            ),
            BulletList(differing),
        ]
    elif settings is None:
        blocks.append(Paragraph("The run's scale is not recorded (study name `" + name + "`)."))
    return Section(TITLE_DEPARTURES, blocks)


@dataclass
class Reproduction:
    markdown_path: Path
    claims: list[ClaimResult]
    claims_per_model: dict[str, list[ClaimResult]]
    plot_paths: list[Path]
    sections: list[str]


def write_reproduction(run_dir: Path | str, title: str | None = None) -> Reproduction:
    """Write RUN_DIR/REPRODUCTION.md: the claims first, then the study report's sections.

    The report's section builders (`report.sections.SECTIONS`) follow :func:`claims_section`.
    """
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    name = (results.study or {}).get("name") or run_dir.resolve().name
    ctx = ReportContext(
        results=results,
        title=title or f"Reproduction of the paper's claims: {name}",
        final=final_rows(results.decay),
        plots_dir=run_dir / "plots",
    )

    def title_section(c: ReportContext) -> Section:
        header = header_section(c)
        intro = Paragraph(
            'Tests the claims of "Can Fine-Tuning Erase Your Edits?" (PAPER §4) on this run; the '
            "paper-style tables and plots of the study report follow."
        )
        return Section(c.title, [intro, *header.blocks], level=1)

    builders = [
        title_section,
        claims_section,
        departures_section,
        *[b for b in SECTIONS if b is not header_section],
    ]
    sections = [s for s in (build_section(b, ctx) for b in builders) if s is not None]
    markdown = render_markdown(sections, run_dir)
    path = atomic_write(
        run_dir / REPRODUCTION_FILE, lambda tmp: tmp.write_text(markdown, encoding="utf-8")
    )
    tables = claim_tables(results)
    return Reproduction(
        path,
        check_claims(tables),
        check_claims_per_model(tables),
        list(ctx.plot_paths),
        [s.title for s in sections],
    )
