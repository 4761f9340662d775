"""The machinery of the result-table schemas: a typed, documented column and a table of them that
normalises what it reads (blank cells interpreted in one place). The tables themselves are in
:mod:`editdecay.schema`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

_BLANK_TEXT = frozenset({"", "—", "nan", "NaN", "None", "<NA>"})

Kind = Literal["text", "int", "float", "bool"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    doc: str
    blank: Any = None  # what an empty cell stands for; None: it stays empty ("" / NaN / <NA>)
    lower: bool = False  # text compared case-insensitively (stored lower-case)

    def normalise(self, values: pd.Series) -> pd.Series:
        if self.kind == "text":
            return values.map(self._text)
        if self.kind == "bool":
            return values.map(self._bool).astype(bool)
        numeric = pd.to_numeric(values.map(_blank_to_nan), errors="coerce").astype(float)
        if self.blank is not None:
            numeric = numeric.fillna(float(self.blank))
        if self.kind == "int":
            present = numeric.dropna()
            if (present == np.floor(present)).all():
                return numeric.astype("Int64")
        return numeric

    def _text(self, value: object) -> str:
        text = "" if _is_blank(value) else str(value).strip()
        if text in _BLANK_TEXT:
            text = "" if self.blank is None else str(self.blank)
        return text.lower() if self.lower else text

    def _bool(self, value: object) -> bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if _is_blank(value):
            return bool(self.blank)
        if isinstance(value, (int, float, np.integer, np.floating)):
            return bool(value)
        return str(value).strip().lower() in {"true", "t", "yes", "y", "1"}

    @property
    def blank_rule(self) -> str:
        if self.blank is not None:
            return f"`{self.blank}`"
        return {"text": "empty", "bool": "false", "int": "missing", "float": "missing"}[self.kind]


def _is_blank(value: object) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _blank_to_nan(value: object) -> object:
    if isinstance(value, str) and value.strip() in _BLANK_TEXT:
        return math.nan
    return value


@dataclass(frozen=True)
class TableSchema:
    name: str
    grain: str  # what one row is
    columns: tuple[Column, ...]

    @property
    def file(self) -> str:
        return f"{self.name}.csv"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def __getitem__(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.file} has no column {name!r}")

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def normalise(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Every schema column present with its type and blank rule applied; other columns kept after them.

        Idempotent: normalising a normalised table changes nothing.
        """
        df = frame.copy()
        for column in self.columns:
            values = (
                df[column.name] if column.name in df.columns else pd.Series(np.nan, index=df.index)
            )
            df[column.name] = column.normalise(values)
        extra = [c for c in df.columns if c not in self.names]
        return df[[*self.names, *extra]]

    def row(self, **values: Any) -> dict[str, Any]:
        """One row with every column: the given values, blank (None) elsewhere; unknown names refused."""
        unknown = sorted(set(values) - set(self.names))
        if unknown:
            raise KeyError(f"{self.file} has no column(s) {unknown}")
        return {name: values.get(name) for name in self.names}

    def markdown(self) -> str:
        """The table's documentation: one line per column with its type, blank rule and meaning."""
        lines = [
            f"`{self.file}`: one row per {self.grain}.",
            "",
            "| column | type | blank | meaning |",
            "|---|---|---|---|",
        ]
        lines += [f"| `{c.name}` | {c.kind} | {c.blank_rule} | {c.doc} |" for c in self.columns]
        return "\n".join(lines)


def text_column(name: str, doc: str, **kw: Any) -> Column:
    return Column(name, "text", doc, **kw)


def int_column(name: str, doc: str, **kw: Any) -> Column:
    return Column(name, "int", doc, **kw)


def float_column(name: str, doc: str, **kw: Any) -> Column:
    return Column(name, "float", doc, **kw)
