"""Reports of a study run: RUN_DIR/results/ in, report.md, report.html and plots/ out.

inputs    reading and normalising the result tables
blocks    paragraphs, tables, figures, sections and the context section builders receive
format    cell text and Markdown tables
tables    the tables computed from decay.csv and flips.csv
plots     the figures
sections  one function per section, in report order (SECTIONS)
render    Markdown and HTML
writer    write_report: build every section, render, write
reproduction  REPRODUCTION.md: the paper's claims first, then the report's sections
"""

from .blocks import Report, ReportContext, Section
from .format import format_markdown_table
from .inputs import StudyResults, load_results
from .reproduction import Reproduction, write_reproduction
from .sections import SECTIONS
from .tables import key_table
from .writer import write_report

__all__ = [
    "SECTIONS",
    "Report",
    "ReportContext",
    "Reproduction",
    "Section",
    "StudyResults",
    "format_markdown_table",
    "key_table",
    "load_results",
    "write_reproduction",
    "write_report",
]
