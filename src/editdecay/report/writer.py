"""Writing a report: the sections built from RUN_DIR/results/, rendered to Markdown and HTML."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ..analysis.tables import final_rows
from ..io import atomic_write
from .blocks import Paragraph, Report, ReportContext, Section, SectionBuilder
from .format import NA, cell_text
from .inputs import StudyResults, load_results
from .render import render_html, render_markdown
from .sections import SECTIONS
from .tables import key_table

log = logging.getLogger(__name__)


def default_title(results: StudyResults) -> str:
    if results.study and cell_text(results.study.get("name")) != NA:
        return f"Study report: {cell_text(results.study.get('name'))}"
    return f"Study report: {results.run_dir.resolve().name}"


def build_section(builder: SectionBuilder, ctx: ReportContext) -> Section | None:
    name = getattr(builder, "__name__", repr(builder))
    try:
        return builder(ctx)
    except Exception as error:  # one broken section must not cost the rest of the report
        log.exception("report section %s failed", name)
        return Section(
            name.removesuffix("_section").replace("_", " ").capitalize(),
            [Paragraph(f"This section could not be built: {type(error).__name__}: {error}")],
        )


def write_report(
    run_dir: Path, title: str | None = None, *, builders: Sequence[SectionBuilder] | None = None
) -> Report:
    """Write RUN_DIR/report.md, RUN_DIR/report.html and RUN_DIR/plots/*.png from RUN_DIR/results/.

    Raises FileNotFoundError when RUN_DIR/results/decay.csv is missing; every other input is optional.
    """
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    ctx = ReportContext(
        results=results,
        title=title or default_title(results),
        final=final_rows(results.decay),
        plots_dir=run_dir / "plots",
    )
    sections = [s for s in (build_section(b, ctx) for b in (builders or SECTIONS)) if s is not None]

    markdown = render_markdown(sections, run_dir)
    page = render_html(sections, ctx.title)
    markdown_path = atomic_write(
        run_dir / "report.md", lambda tmp: tmp.write_text(markdown, encoding="utf-8")
    )
    html_path = atomic_write(
        run_dir / "report.html", lambda tmp: tmp.write_text(page, encoding="utf-8")
    )
    log.info(
        "wrote %s and %s (%d sections, %d plots)",
        markdown_path,
        html_path,
        len(sections),
        len(ctx.plot_paths),
    )
    return Report(
        markdown_path=markdown_path,
        html_path=html_path,
        plot_paths=list(ctx.plot_paths),
        key_table=key_table(results.decay),
        sections=[s.title for s in sections],
    )
