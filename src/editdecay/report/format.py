"""Turning values into the text of a table cell, and DataFrames into Markdown tables."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..schema import FT_LABELS

NA = "—"  # how a missing value reads in a report


def is_missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def cell_text(value: object) -> str:
    """A setting as the report shows it: its text, or "—" when blank."""
    if value is None or is_missing(value):
        return NA
    text = str(value).strip()
    return text if text else NA


def ft_label(method: str) -> str:
    return FT_LABELS.get(method, method)


def format_value(value: object, fmt: str, na: str) -> str:
    if value is None or is_missing(value) or (isinstance(value, str) and not value.strip()):
        return na
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return format(float(value), fmt)
    return str(value)


def cell_strings(df: pd.DataFrame, floatfmt: str | Mapping[str, str], na: str) -> list[list[str]]:
    formats = [
        floatfmt.get(str(c), ".2f") if isinstance(floatfmt, Mapping) else floatfmt
        for c in df.columns
    ]
    rows: list[list[str]] = []
    for values in df.itertuples(index=False, name=None):
        rows.append([format_value(v, fmt, na) for v, fmt in zip(values, formats)])
    return rows


_NUMBER_LIKE = re.compile(r"^[-+−]?(\d|inf)")


def right_aligned(df: pd.DataFrame, rows: list[list[str]], na: str) -> list[bool]:
    """Numeric columns, and text columns whose every filled cell starts with a number."""
    aligned = []
    for i in range(df.shape[1]):
        column = df.iloc[:, i]
        if pd.api.types.is_bool_dtype(column):
            aligned.append(False)
        elif pd.api.types.is_numeric_dtype(column):
            aligned.append(True)
        else:
            cells = [row[i] for row in rows if row[i] != na]
            aligned.append(bool(cells) and all(_NUMBER_LIKE.match(c) for c in cells))
    return aligned


def markdown_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def format_markdown_table(
    df: pd.DataFrame, floatfmt: str | Mapping[str, str] = ".2f", na: str = NA
) -> str:
    """A GitHub-flavoured Markdown table: a header line, an alignment line, one line per row.

    Floats use `floatfmt` (one format, or one per column name with ".2f" for the rest), missing values
    read `na`, numeric columns are right-aligned, and "|" inside a cell is escaped. The index is not shown.
    """
    if df.shape[1] == 0:
        return ""
    rows = cell_strings(df, floatfmt, na)
    right = right_aligned(df, rows, na)
    header = [markdown_cell(str(c)) for c in df.columns]
    body = [[markdown_cell(cell) for cell in row] for row in rows]
    widths = [max([3, len(header[i])] + [len(row[i]) for row in body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(cells, widths, right)]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "| "
        + " | ".join("-" * (w - 1) + ":" if r else "-" * w for w, r in zip(widths, right))
        + " |"
    )
    return "\n".join([line(header), rule, *(line(row) for row in body)])


def arrow(before: object, after: object, fmt: str = ".2f") -> str:
    if is_missing(before) and is_missing(after):
        return NA
    return f"{format_value(before, fmt, NA)} → {format_value(after, fmt, NA)}"


@dataclass(frozen=True)
class SeedSummary:
    """A value averaged over seeds: mean, sample SD (NaN with one seed) and the number of seeds."""

    mean: float
    sd: float
    n: int

    def format(self, fmt: str = ".2f") -> str:
        if self.n == 0:
            return NA
        if self.n == 1 or math.isnan(self.sd):
            return format(self.mean, fmt)
        return f"{self.mean:{fmt}} ± {self.sd:{fmt}}"


EMPTY_SUMMARY = SeedSummary(math.nan, math.nan, 0)


def over_seeds(rows: pd.DataFrame, column: str) -> SeedSummary:
    """Mean and spread of `column` over seeds; rows sharing a seed are averaged first."""
    if rows.empty or column not in rows.columns:
        return EMPTY_SUMMARY
    per_seed = rows.groupby("seed", dropna=False)[column].mean().dropna()
    if per_seed.empty:
        return EMPTY_SUMMARY
    sd = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else math.nan
    return SeedSummary(float(per_seed.mean()), sd, len(per_seed))


def mean_and_sd(values: pd.Series) -> str:
    present = values.dropna()
    if present.empty:
        return NA
    if len(present) == 1:
        return f"{present.iloc[0]:.2f} (n=1)"
    return f"{present.mean():.2f} ± {present.std(ddof=1):.2f} (n={len(present)})"


def all_missing(frame: pd.DataFrame, columns: Iterable[str]) -> bool:
    return bool(frame[list(columns)].isna().all().all()) if not frame.empty else True
