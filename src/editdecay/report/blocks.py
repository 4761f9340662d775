"""The pieces a report is made of: text blocks, tables, figures, sections, and the context builders share."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure as MplFigure

from ..io import atomic_write
from .inputs import StudyResults

log = logging.getLogger(__name__)


@dataclass
class Paragraph:
    """Text with inline `code`, **bold** and [links](target)."""

    text: str


@dataclass
class BulletList:
    items: list[str]


@dataclass
class CodeBlock:
    text: str


@dataclass
class Table:
    """A DataFrame shown as a table, with the sentence that says where its numbers come from."""

    frame: pd.DataFrame
    source: str = ""
    floatfmt: str | Mapping[str, str] = ".2f"


@dataclass
class Figure:
    """A PNG written under the run directory."""

    path: Path
    caption: str


@dataclass
class Details:
    """Blocks shown collapsed under a one-line summary (a long table a reader may open)."""

    summary: str
    blocks: list[Block]


Block = Paragraph | BulletList | CodeBlock | Table | Figure | Details


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


@dataclass
class ReportContext:
    results: StudyResults
    title: str
    final: pd.DataFrame
    plots_dir: Path
    plot_paths: list[Path] = field(default_factory=list)

    def save_plot(self, name: str, figure: MplFigure) -> Path:
        path = self.plots_dir / name
        atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
        self.plot_paths.append(path)
        log.debug("wrote plot %s", path)
        return path


@dataclass
class Report:
    markdown_path: Path
    html_path: Path
    plot_paths: list[Path]
    key_table: pd.DataFrame
    sections: list[str] = field(default_factory=list)


SectionBuilder = Callable[[ReportContext], Section | None]
