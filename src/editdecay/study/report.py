"""Turn a finished study run directory into a readable report.

Inputs, all under RUN_DIR/results/:
    decay.csv             one row per (configuration, fine-tuning step): required
    configs.csv           one row per configuration, with any extra columns (optional)
    flips.csv             per-edit flip categories (optional)
    training.csv          fine-tuning loss curves (optional)
    study.json            study name, command, versions, seeds (optional)
    edits.csv / .parquet  the long per-edit table: linked from the report, not read
Outputs:
    RUN_DIR/report.md     Markdown, plots linked from plots/
    RUN_DIR/report.html   one self-contained file: inline CSS, plots embedded as base64 PNG
    RUN_DIR/plots/*.png

The report is a list of sections. Each section is built by one function that takes a
:class:`ReportContext` and returns a :class:`Section`, or None to leave the section out;
:data:`SECTION_BUILDERS` lists them in report order, so a new section is one more function.
A builder that fails is logged and replaced by a short note, so one broken section never costs
the rest of the report.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure

from ..io import atomic_write

log = logging.getLogger(__name__)

NA = "—"
FT_NONE = "none"
FT_ORDER = ("none", "lora", "dora", "full")
FT_LABELS = {"none": "No FT", "lora": "LoRA", "dora": "DoRA", "full": "Full FT"}
LAYER_ORDER = ("all", "edited", "non-edited")
CATEGORY_ORDER = ("stable", "erased", "emergent", "impossible")

CONFIG_COLUMNS = (
    "config_id",
    "model",
    "edit_method",
    "edit_data",
    "n_edits",
    "ft_method",
    "ft_data",
    "ft_layers",
    "seed",
)
TEXT_CONFIG_COLUMNS = ("model", "edit_method", "edit_data", "ft_method", "ft_data", "ft_layers")
INTEGER_COLUMNS = ("n_edits", "seed", "step")
TEXT_COLUMNS = ("indicator", "efficacy_kind")
DS_COLUMNS = (
    "ds_M",
    "ds_M_ed",
    "ds_M_ft",
    "ds_M_ed_ft",
    "ds_degradation_noft",
    "ds_degradation_ft",
)
DS_RANK_COLUMNS = (
    "ds_rank_M",
    "ds_rank_M_ed",
    "ds_rank_M_ft",
    "ds_rank_M_ed_ft",
    "ds_rank_degradation_noft",
    "ds_rank_degradation_ft",
)
METRIC_COLUMNS = (
    "es_ed",
    "es_ed_ft",
    "ps_ed",
    "ps_ed_ft",
    "ns_ed",
    "ns_ed_ft",
    "delta_es",
    "relative_decay",
    "efr",
    "emergent_ratio",
    "n_success_ed",
    "n_stable",
    "n_erased",
    "n_emergent",
    "n_impossible",
    "es_M",
    "es_M_ft",
    *DS_COLUMNS,
    *DS_RANK_COLUMNS,
)
# The settings that define one edit (everything before fine-tuning).
EDIT_KEYS = ("model", "edit_method", "edit_data", "n_edits")
SORT_KEYS = (
    "model",
    "edit_method",
    "edit_data",
    "n_edits",
    "ft_method",
    "ft_data",
    "ft_layers",
    "seed",
    "config_id",
)

DECAY_LINK = "[results/decay.csv](results/decay.csv)"
FLIPS_LINK = "[results/flips.csv](results/flips.csv)"
SPREAD_NOTE = (
    "Configurations that differ only in their seed are averaged; with several seeds a cell reads "
    "`mean ± SD` (sample standard deviation over the seeds) and `seeds` counts them."
)

TITLE_DATA_FILES = "Data files"
TITLE_KEY = "Key results"
TITLE_ES = "ES before → after fine-tuning (paper Table 2)"
TITLE_RELATIVE = "Relative ES decay (paper Table 4)"
TITLE_FLIP_RATIO = "ΔES, Edit Flip Ratio and emergent edits (paper Table 5)"
TITLE_FLIPS = "Edit flip categories (paper Table 6)"
TITLE_SELECTIVE = "Selective-layer fine-tuning (paper Table 7)"
TITLE_DOWNSTREAM = "Downstream accuracy (paper Table 8)"
TITLE_DECAY_PLOT = "ES before and after fine-tuning, per configuration"
TITLE_STEPS = "Decay over fine-tuning steps"
TITLE_TRAINING = "Training loss"
TITLE_CONFIGS = "Configurations"

MAX_EXAMPLES_PER_CATEGORY = 3
MAX_LINES_PER_PLOT = 20


# --------------------------------------------------------------------------------------------------
# Report building blocks


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


Block = Paragraph | BulletList | CodeBlock | Table | Figure


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


@dataclass
class StudyResults:
    """The contents of RUN_DIR/results/; every optional input is None when absent or unreadable."""

    run_dir: Path
    decay: pd.DataFrame
    configs: pd.DataFrame | None = None
    flips: pd.DataFrame | None = None
    training: pd.DataFrame | None = None
    study: dict[str, Any] | None = None

    @property
    def results_dir(self) -> Path:
        return self.run_dir / "results"


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


# --------------------------------------------------------------------------------------------------
# Loading and normalising the inputs


def load_results(run_dir: Path) -> StudyResults:
    """Read RUN_DIR/results/. A missing decay.csv is an error; every other input is optional."""
    run_dir = Path(run_dir)
    results_dir = run_dir / "results"
    decay_path = results_dir / "decay.csv"
    if not decay_path.is_file():
        raise FileNotFoundError(
            f"no decay table at {decay_path}: a study report needs RUN_DIR/results/decay.csv "
            f"(is {run_dir} a finished study run directory?)"
        )
    decay = normalise_decay(pd.read_csv(decay_path))
    return StudyResults(
        run_dir=run_dir,
        decay=decay,
        configs=_read_optional_csv(results_dir / "configs.csv"),
        flips=_normalise_flips(_read_optional_csv(results_dir / "flips.csv")),
        training=_normalise_training(_read_optional_csv(results_dir / "training.csv")),
        study=_read_optional_json(results_dir / "study.json"),
    )


def _read_optional_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        log.warning("ignoring unreadable %s: %s", path, error)
        return None


def _read_optional_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        log.warning("ignoring unreadable %s: %s", path, error)
        return None
    if not isinstance(data, dict):
        log.warning("ignoring %s: expected a JSON object, found %s", path, type(data).__name__)
        return None
    return data


def _is_missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _text(value: object) -> str:
    if value is None or _is_missing(value):
        return NA
    text = str(value).strip()
    return text if text else NA


def _integers(series: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(series, errors="coerce").astype(float)
    present = numeric.dropna()
    if (present == np.floor(present)).all():
        return numeric.astype("Int64")
    return numeric


def _booleans(series: pd.Series) -> pd.Series:
    def convert(value: object) -> bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if value is None or _is_missing(value):
            return False
        if isinstance(value, (int, float, np.integer, np.floating)):
            return bool(value)
        return str(value).strip().lower() in {"true", "t", "yes", "y", "1"}

    return series.map(convert).astype(bool)


def normalise_decay(decay: pd.DataFrame) -> pd.DataFrame:
    """Give decay.csv every column of the schema, clean config values, and derive ΔES where missing.

    Absent columns become NaN; empty text settings read "—"; an empty ft_method is "none".
    `delta_es` and `relative_decay` are filled from `es_ed` and `es_ed_ft` only where they are empty.
    Applying it twice changes nothing.
    """
    df = decay.copy()
    for column in (*CONFIG_COLUMNS, "step", "final", *METRIC_COLUMNS, *TEXT_COLUMNS):
        if column not in df.columns:
            df[column] = np.nan
    ids = df["config_id"].map(_text)
    df["config_id"] = [f"row-{i}" if cid == NA else cid for i, cid in enumerate(ids)]
    for column in (*TEXT_CONFIG_COLUMNS, *TEXT_COLUMNS):
        df[column] = df[column].map(_text)
    df["ft_method"] = df["ft_method"].map(lambda m: FT_NONE if m == NA else m.lower())
    df["ft_layers"] = df["ft_layers"].map(str.lower)
    for column in INTEGER_COLUMNS:
        df[column] = _integers(df[column])
    df["step"] = df["step"].fillna(0)
    for column in METRIC_COLUMNS:
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    df["final"] = _booleans(df["final"])
    drop = df["es_ed"] - df["es_ed_ft"]
    df["delta_es"] = df["delta_es"].fillna(drop)
    relative = 100.0 * drop / df["es_ed"].where(df["es_ed"] != 0)
    df["relative_decay"] = df["relative_decay"].fillna(relative)
    return df


def _normalise_flips(flips: pd.DataFrame | None) -> pd.DataFrame | None:
    if flips is None:
        return None
    df = flips.copy()
    for column in (
        "config_id",
        "step",
        "case_id",
        "subject",
        "target_new",
        "target_true",
        "category",
        "efficacy_before",
        "efficacy_after",
    ):
        if column not in df.columns:
            df[column] = np.nan
    df["config_id"] = df["config_id"].map(_text)
    df["category"] = df["category"].map(lambda c: _text(c).lower())
    df["step"] = _integers(df["step"]).fillna(0)
    for column in ("efficacy_before", "efficacy_after"):
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    return df


def _normalise_training(training: pd.DataFrame | None) -> pd.DataFrame | None:
    if training is None:
        return None
    df = training.copy()
    for column in ("config_id", "state", "step", "loss"):
        if column not in df.columns:
            df[column] = np.nan
    df["config_id"] = df["config_id"].map(_text)
    df["state"] = df["state"].map(_text)
    df["step"] = pd.to_numeric(df["step"], errors="coerce")
    df["loss"] = pd.to_numeric(df["loss"], errors="coerce").astype(float)
    return df.dropna(subset=["step", "loss"])


def _rank(order: Sequence[str]) -> Callable[[object], int]:
    def rank(value: object) -> int:
        return order.index(value) if value in order else len(order)

    return rank


def sort_configurations(frame: pd.DataFrame, keys: Iterable[str] = SORT_KEYS) -> pd.DataFrame:
    """Sort rows by the config columns present, fine-tuning methods and layer choices in paper order."""
    ordered = frame.copy()
    by: list[str] = []
    for key in keys:
        if key not in ordered.columns:
            continue
        if key == "ft_method":
            ordered["_rank_ft_method"] = ordered[key].map(_rank(FT_ORDER))
            by.append("_rank_ft_method")
        elif key == "ft_layers":
            ordered["_rank_ft_layers"] = ordered[key].map(_rank(LAYER_ORDER))
            by.append("_rank_ft_layers")
        if not pd.api.types.is_numeric_dtype(ordered[key]):
            ordered[f"_text_{key}"] = ordered[key].map(_text)
            by.append(f"_text_{key}")
        else:
            by.append(key)
    if not by or ordered.empty:
        return ordered[[c for c in frame.columns]]
    ordered = ordered.sort_values(by, kind="stable", na_position="last")
    return ordered[list(frame.columns)].reset_index(drop=True)


def final_rows(decay: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: its row marked final (the last one if several), else its last step."""
    df = normalise_decay(decay)
    if df.empty:
        return df
    ordered = df.sort_values(["config_id", "step"], kind="stable")
    marked = ordered[ordered["final"]].groupby("config_id", sort=False).tail(1)
    unmarked = ordered[~ordered["config_id"].isin(set(marked["config_id"]))]
    last = unmarked.groupby("config_id", sort=False).tail(1)
    return sort_configurations(pd.concat([marked, last]))


def _fine_tuned(final: pd.DataFrame) -> pd.DataFrame:
    return final[final["ft_method"] != FT_NONE]


def _ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    unique = list(dict.fromkeys(values))
    return sorted(unique, key=lambda v: (_rank(order)(v), v))


def _ft_label(method: str) -> str:
    return FT_LABELS.get(method, method)


def _all_missing(frame: pd.DataFrame, columns: Iterable[str]) -> bool:
    return bool(frame[list(columns)].isna().all().all()) if not frame.empty else True


# --------------------------------------------------------------------------------------------------
# Formatting


def _format_value(value: object, fmt: str, na: str) -> str:
    if value is None or _is_missing(value):
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


def _cell_strings(df: pd.DataFrame, floatfmt: str | Mapping[str, str], na: str) -> list[list[str]]:
    formats = [
        floatfmt.get(str(c), ".2f") if isinstance(floatfmt, Mapping) else floatfmt
        for c in df.columns
    ]
    rows: list[list[str]] = []
    for values in df.itertuples(index=False, name=None):
        rows.append([_format_value(v, fmt, na) for v, fmt in zip(values, formats)])
    return rows


_NUMBER_LIKE = re.compile(r"^[-+−]?(\d|inf)")


def _right_aligned(df: pd.DataFrame, rows: list[list[str]], na: str) -> list[bool]:
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


def _markdown_cell(text: str) -> str:
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
    rows = _cell_strings(df, floatfmt, na)
    right = _right_aligned(df, rows, na)
    header = [_markdown_cell(str(c)) for c in df.columns]
    body = [[_markdown_cell(cell) for cell in row] for row in rows]
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


def _arrow(before: object, after: object, fmt: str = ".2f") -> str:
    if _is_missing(before) and _is_missing(after):
        return NA
    return f"{_format_value(before, fmt, NA)} → {_format_value(after, fmt, NA)}"


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


def _mean_and_sd(values: pd.Series) -> str:
    present = values.dropna()
    if present.empty:
        return NA
    if len(present) == 1:
        return f"{present.iloc[0]:.2f} (n=1)"
    return f"{present.mean():.2f} ± {present.std(ddof=1):.2f} (n={len(present)})"


# --------------------------------------------------------------------------------------------------
# Tables computed from decay.csv


KEY_TABLE_COLUMNS = (
    "config_id",
    "model",
    "edit_method",
    "edit_data",
    "n_edits",
    "ft_method",
    "ft_data",
    "ft_layers",
    "seed",
    "ES before",
    "ES after",
    "ΔES",
    "rel. decay %",
    "EFR %",
    "DS M_ft",
    "DS M_ed_ft",
)


def key_table(decay: pd.DataFrame) -> pd.DataFrame:
    """The headline table: one row per configuration, taken at its final fine-tuning step.

    ES before is `es_ed` (M_ed), ES after `es_ed_ft` (M_ed_ft), ΔES `delta_es` (points), rel. decay
    `relative_decay`, EFR `efr`; DS are the generation-protocol downstream accuracies of M_ft and M_ed_ft.
    """
    final = final_rows(decay)
    table = pd.DataFrame(
        {
            "config_id": final["config_id"],
            "model": final["model"],
            "edit_method": final["edit_method"],
            "edit_data": final["edit_data"],
            "n_edits": final["n_edits"],
            "ft_method": final["ft_method"],
            "ft_data": final["ft_data"],
            "ft_layers": final["ft_layers"],
            "seed": final["seed"],
            "ES before": final["es_ed"],
            "ES after": final["es_ed_ft"],
            "ΔES": final["delta_es"],
            "rel. decay %": final["relative_decay"],
            "EFR %": final["efr"],
            "DS M_ft": final["ds_M_ft"],
            "DS M_ed_ft": final["ds_M_ed_ft"],
        },
        columns=list(KEY_TABLE_COLUMNS),
    )
    return table.reset_index(drop=True)


def _primary_layers(fine_tuned: pd.DataFrame) -> tuple[pd.DataFrame, str | None, int]:
    """The fine-tuned rows on the main layer choice ("all" when present, else the most common one)."""
    if fine_tuned.empty:
        return fine_tuned, None, 0
    counts = fine_tuned["ft_layers"].value_counts()
    if "all" in counts.index:
        primary = "all"
    else:
        primary = sorted(counts.index, key=lambda v: (-int(counts[v]), str(v)))[0]
    kept = fine_tuned[fine_tuned["ft_layers"] == primary]
    return kept, primary, len(fine_tuned) - len(kept)


def _key_text(values: Iterable[object]) -> tuple[str, ...]:
    return tuple(_text(v) for v in values)


def _edit_rows(final: pd.DataFrame, row: Mapping[str, object]) -> pd.DataFrame:
    wanted = _key_text(row[k] for k in EDIT_KEYS)
    mask = [
        _key_text(values) == wanted
        for values in final[list(EDIT_KEYS)].itertuples(index=False, name=None)
    ]
    return final[mask]


def _before_ft(edit_rows: pd.DataFrame) -> pd.DataFrame:
    """The rows to read M_ed values from: the unfine-tuned configs when present, else all of them."""
    none = edit_rows[edit_rows["ft_method"] == FT_NONE]
    return none if not none.empty else edit_rows


CellBuilder = Callable[[pd.DataFrame, str], dict[str, SeedSummary]]


@dataclass
class MethodTable:
    """A table with one row per edit setting and columns per fine-tuning method, before formatting."""

    frame: pd.DataFrame  # SeedSummary cells in the value columns
    keys: list[str]
    value_columns: list[str]
    primary_layers: str | None
    excluded: int

    def formatted(self) -> pd.DataFrame:
        out = self.frame.copy()
        for column in self.value_columns:
            out[column] = out[column].map(
                lambda s: s.format() if isinstance(s, SeedSummary) else _text(s)
            )
        return out


def method_table(
    final: pd.DataFrame,
    cells: CellBuilder,
    no_ft: Callable[[pd.DataFrame], dict[str, SeedSummary]] | None = None,
) -> MethodTable:
    """Rows model × edit method × edit data × n_edits (× ft_data when it varies), columns per FT method.

    Only the main layer choice is used (see :func:`_primary_layers`). `no_ft` fills the columns read
    before fine-tuning from every configuration of the edit setting.
    """
    fine_tuned, primary, excluded = _primary_layers(_fine_tuned(final))
    keys = list(EDIT_KEYS)
    if fine_tuned["ft_data"].nunique() > 1:
        keys.append("ft_data")
    methods = _ordered(fine_tuned["ft_method"], FT_ORDER)
    empty = final.iloc[0:0]
    value_columns: list[str] = list(no_ft(empty)) if no_ft is not None else []
    for method in methods:
        value_columns.extend(c for c in cells(empty, _ft_label(method)) if c not in value_columns)

    records: list[dict[str, object]] = []
    covered: set[tuple[str, ...]] = set()

    def add(row: dict[str, object], groups: pd.DataFrame, edit_rows: pd.DataFrame) -> None:
        if no_ft is not None:
            row.update(no_ft(_before_ft(edit_rows)))
        for method in methods:
            row.update(cells(groups[groups["ft_method"] == method], _ft_label(method)))
        row["seeds"] = int(pd.concat([groups["seed"], edit_rows["seed"]]).nunique(dropna=False))
        records.append(row)

    if not fine_tuned.empty:
        for key, group in fine_tuned.groupby(keys, sort=False, dropna=False):
            row = dict(zip(keys, key))
            edit_rows = _edit_rows(final, row)
            covered.add(_key_text(row[k] for k in EDIT_KEYS))
            add(row, group, edit_rows if no_ft is not None else group)
    if no_ft is not None:
        unfine_tuned = final[final["ft_method"] == FT_NONE]
        if not unfine_tuned.empty:
            for key, group in unfine_tuned.groupby(list(EDIT_KEYS), sort=False, dropna=False):
                row = dict(zip(EDIT_KEYS, key))
                if _key_text(key) in covered:
                    continue
                if "ft_data" in keys:
                    row["ft_data"] = NA
                add(row, group.iloc[0:0], group)

    frame = pd.DataFrame.from_records(records, columns=[*keys, *value_columns, "seeds"])
    frame = sort_configurations(frame, keys)
    for column in value_columns:
        frame[column] = frame[column].map(
            lambda s: s if isinstance(s, SeedSummary) else EMPTY_SUMMARY
        )
    return MethodTable(frame, keys, value_columns, primary, excluded)


def _layers_note(table: MethodTable) -> str | None:
    if not table.excluded:
        return None
    return (
        f"Only fine-tuning with `ft_layers = {table.primary_layers}` is shown; {table.excluded} "
        f"configuration(s) with other layer choices are in “{TITLE_SELECTIVE}”."
    )


def es_table(final: pd.DataFrame) -> MethodTable:
    """Paper Table 2: No FT = `es_ed`; each FT method = `es_ed_ft`."""
    return method_table(
        final,
        cells=lambda rows, label: {label: over_seeds(rows, "es_ed_ft")},
        no_ft=lambda rows: {"No FT": over_seeds(rows, "es_ed")},
    )


def relative_decay_table(final: pd.DataFrame) -> MethodTable:
    """Paper Table 4: `relative_decay` = (ES_ed − ES_ed_ft) / ES_ed × 100 per FT method."""
    return method_table(
        final, cells=lambda rows, label: {label: over_seeds(rows, "relative_decay")}
    )


def flip_ratio_table(final: pd.DataFrame) -> MethodTable:
    """Paper Table 5: `delta_es`, `efr` and `emergent_ratio` per FT method."""
    return method_table(
        final,
        cells=lambda rows, label: {
            f"{label} ΔES": over_seeds(rows, "delta_es"),
            f"{label} EFR": over_seeds(rows, "efr"),
            f"{label} emergent": over_seeds(rows, "emergent_ratio"),
        },
    )


def _with_model_averages(table: MethodTable) -> pd.DataFrame:
    """The formatted table plus, per model with several rows, the mean of its row means per column."""
    formatted = table.formatted()
    pieces: list[pd.DataFrame] = []
    for model in list(dict.fromkeys(table.frame["model"])):
        mask = table.frame["model"] == model
        pieces.append(formatted[mask])
        if int(mask.sum()) < 2:
            continue
        average: dict[str, object] = {k: NA for k in table.keys}
        average["model"] = model
        average["edit_method"] = "average"
        for column in table.value_columns:
            means = [s.mean for s in table.frame.loc[mask, column] if s.n > 0]
            average[column] = f"{np.mean(means):.2f}" if means else NA
        average["seeds"] = NA
        pieces.append(pd.DataFrame([average], columns=formatted.columns))
    if not pieces:
        return formatted
    return pd.concat(pieces, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# Plots (Agg canvas, no pyplot state)


def _figure(width: float, height: float) -> MplFigure:
    figure = MplFigure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _setting_label(column: str, value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = _text(value)
    if column == "n_edits":
        return f"{text} edits"
    if column == "seed":
        return f"seed {text}"
    if column == "ft_layers":
        return f"{text} layers"
    return text


def plot_labels(frame: pd.DataFrame) -> dict[str, str]:
    """A short label per configuration: its values of the settings that differ between the configurations.

    Config ids name every setting and are too long for tick labels and legends; where the short labels
    would not tell two configurations apart, the config id is used.
    """
    configs = frame.drop_duplicates("config_id").set_index("config_id")
    settings = [c for c in CONFIG_COLUMNS[1:] if c in configs.columns]
    varying = [c for c in settings if configs[c].astype(str).nunique() > 1] or [
        c for c in ("ft_method", "ft_layers") if c in configs.columns
    ]
    labels = {
        str(cid): " · ".join(_setting_label(c, row[c]) for c in varying)
        for cid, row in configs.iterrows()
    }
    if len(set(labels.values())) < len(labels) or not all(labels.values()):
        return {cid: cid for cid in labels}
    return labels


def plot_decay_bars(final: pd.DataFrame) -> MplFigure | None:
    """ES of M_ed and M_ed_ft side by side for every fine-tuned configuration."""
    rows = _fine_tuned(final)
    rows = rows[rows["es_ed"].notna() | rows["es_ed_ft"].notna()]
    if rows.empty:
        return None
    labels = plot_labels(rows)
    names = [labels[str(c)] for c in rows["config_id"]]
    y = np.arange(len(rows))
    # horizontal bars: one row per configuration, however long its label
    figure = _figure(5.0 + 0.065 * max(len(n) for n in names), 1.6 + 0.3 * len(rows))
    axes = figure.add_subplot()
    axes.barh(
        y - 0.2,
        rows["es_ed"].to_numpy(float),
        height=0.4,
        label="before: ES(M_ed)",
        color="#4878a8",
    )
    axes.barh(
        y + 0.2,
        rows["es_ed_ft"].to_numpy(float),
        height=0.4,
        label="after: ES(M_ed_ft)",
        color="#d9843b",
    )
    axes.set_yticks(y, names, fontsize=8)
    axes.set_ylim(len(rows) - 0.5, -0.5)  # first configuration on top
    top = float(np.nanmax(rows[["es_ed", "es_ed_ft"]].to_numpy(float)))
    axes.set_xlim(0, max(105.0, top * 1.05))
    axes.set_xlabel("edit success ES (%)")
    axes.set_title("ES before → after fine-tuning")
    figure.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    axes.grid(axis="x", alpha=0.3)
    return figure


def _multi_step_configs(decay: pd.DataFrame) -> list[str]:
    fine_tuned = _fine_tuned(decay)
    steps = fine_tuned.groupby("config_id", sort=False)["step"].nunique()
    return sort_configurations(
        decay[decay["config_id"].isin(steps[steps > 1].index)].drop_duplicates("config_id")
    )["config_id"].tolist()


def plot_decay_steps(decay: pd.DataFrame, config_ids: Sequence[str]) -> MplFigure:
    """ES(M_ed_ft) and EFR against the fine-tuning step, one line per configuration.

    The ES line starts at step 0 with ES(M_ed) when the configuration has no step-0 row.
    """
    figure = _figure(11.0, 4.2)
    es_axes, efr_axes = figure.subplots(1, 2)
    labels = plot_labels(decay[decay["config_id"].isin(config_ids)])
    for config_id in config_ids[:MAX_LINES_PER_PLOT]:
        rows = decay[decay["config_id"] == config_id].sort_values("step")
        steps = rows["step"].astype(float).tolist()
        es = rows["es_ed_ft"].tolist()
        es_ed = rows["es_ed"].dropna()
        if 0 not in steps and not es_ed.empty:
            steps, es = [0.0, *steps], [float(es_ed.iloc[0]), *es]
        es_axes.plot(steps, es, marker="o", label=labels[config_id])
        efr_axes.plot(rows["step"].astype(float), rows["efr"], marker="o", label=labels[config_id])
    es_axes.set(xlabel="fine-tuning step", ylabel="ES(M_ed_ft) (%)", title="edit success")
    efr_axes.set(xlabel="fine-tuning step", ylabel="EFR (%)", title="edit flip ratio")
    for axes in (es_axes, efr_axes):
        axes.grid(alpha=0.3)
    efr_axes.legend(fontsize=7, loc="best")
    return figure


def plot_training(training: pd.DataFrame, labels: Mapping[str, str] | None = None) -> MplFigure:
    """Loss against step per configuration; `labels` maps config ids to legend labels."""
    labels = labels or {}
    figure = _figure(8.0, 4.5)
    axes = figure.add_subplot()
    groups = list(training.groupby(["config_id", "state"], sort=True))[:MAX_LINES_PER_PLOT]
    palette = [entry["color"] for entry in matplotlib.rcParams["axes.prop_cycle"]]
    colours = {
        cid: palette[i % len(palette)]
        for i, cid in enumerate(dict.fromkeys(c for (c, _), _ in groups))
    }
    for (config_id, state), rows in groups:
        rows = rows.sort_values("step")
        style = "--" if state == "M_ft" else "-"
        axes.plot(
            rows["step"],
            rows["loss"],
            style,
            color=colours[config_id],
            label=f"{labels.get(config_id, config_id)} ({state})",
        )
    axes.set(
        xlabel="fine-tuning step",
        ylabel="training loss",
        title="fine-tuning loss (solid M_ed_ft, dashed M_ft)",
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="best")
    return figure


# --------------------------------------------------------------------------------------------------
# Sections


def partial_notice(study: Mapping | None) -> Paragraph | None:
    """A warning when `study.json` says the tables were gathered before every stage had finished."""
    stages = (study or {}).get("stages")
    if not isinstance(stages, Mapping) or stages.get("finished", 0) >= stages.get("total", 0):
        return None
    return Paragraph(
        f"**Partial results:** {stages['finished']} of {stages['total']} stages had finished when these "
        "tables were gathered; configurations with unfinished stages are missing or incomplete. Rerun "
        "the command to finish the study."
    )


def header_section(ctx: ReportContext) -> Section:
    results = ctx.results
    final = ctx.final
    blocks: list[Block] = [Paragraph(f"Run directory: `{results.run_dir}`")]
    study = results.study
    if study is None:
        blocks.append(
            Paragraph(
                "No `results/study.json`: the study's name, command and versions were not recorded."
            )
        )
    else:
        if "name" in study:
            blocks.append(Paragraph(f"Study: **{_text(study['name'])}**"))
        notice = partial_notice(study)
        if notice is not None:
            blocks.append(notice)
        command = study.get("command")
        if command:
            text = (
                shlex.join(str(c) for c in command) if isinstance(command, list) else str(command)
            )
            blocks.extend([Paragraph("Command:"), CodeBlock(text)])
        if "seeds" in study:
            seeds = study["seeds"]
            shown = ", ".join(str(s) for s in seeds) if isinstance(seeds, list) else _text(seeds)
            blocks.append(Paragraph(f"Seeds: {shown}"))
        versions = study.get("versions")
        if isinstance(versions, Mapping) and versions:
            frame = pd.DataFrame(
                {
                    "package": [str(k) for k in versions],
                    "version": [
                        _text(v) if not isinstance(v, (dict, list)) else json.dumps(v)
                        for v in versions.values()
                    ],
                }
            )
            blocks.append(Table(frame, source="Versions from `results/study.json`."))
        elif versions:
            blocks.append(Paragraph(f"Versions: {_text(versions)}"))
        environments = study.get("stage_environments")
        if isinstance(environments, Mapping) and environments:
            frame = pd.DataFrame(
                {
                    "device, versions": [str(k) for k in environments],
                    "stages": [_text(v) for v in environments.values()],
                }
            )
            blocks.append(
                Table(
                    frame,
                    source="Where the finished stages ran, from each stage's record in the store.",
                )
            )
    n_ft = len(_fine_tuned(final))

    def listing(column: str) -> str:
        values = [v for v in dict.fromkeys(final[column].map(_text)) if v != NA]
        return ", ".join(values) if values else NA

    blocks.append(
        BulletList(
            [
                f"{len(final)} configurations ({n_ft} fine-tuned, {len(final) - n_ft} edited only)",
                f"models: {listing('model')}",
                f"edit methods: {listing('edit_method')}; edit data: {listing('edit_data')}; "
                f"edits per configuration: {listing('n_edits')}",
                f"fine-tuning methods: {', '.join(_ft_label(m) for m in _ordered(final['ft_method'], FT_ORDER)) or NA}; "
                f"fine-tuning data: {listing('ft_data')}; layers: {listing('ft_layers')}",
                f"seeds: {listing('seed')}",
            ]
        )
    )
    return Section(ctx.title, blocks, level=1)


def data_files_section(ctx: ReportContext) -> Section:
    results_dir = ctx.results.results_dir
    described = [
        (
            "decay.csv",
            "one row per (configuration, fine-tuning step); every table below comes from its final rows "
            "unless it says otherwise",
        ),
        ("configs.csv", "one row per configuration, with any extra settings"),
        (
            "flips.csv",
            "per-edit flip category (stable / erased / emergent / impossible) per configuration",
        ),
        ("edits.csv", "the long per-edit table: ES, PS, NS per edit, model state and step"),
        ("edits.parquet", "the same per-edit table in Parquet"),
        ("training.csv", "fine-tuning loss per step"),
        ("study.json", "study name, command, versions and seeds"),
    ]
    items = []
    for name, description in described:
        if (results_dir / name).is_file():
            items.append(f"[results/{name}](results/{name}): {description}")
        else:
            items.append(f"`results/{name}`: not present")
    return Section(TITLE_DATA_FILES, [BulletList(items)])


def key_results_section(ctx: ReportContext) -> Section:
    table = key_table(ctx.final)
    if table.empty:
        return Section(TITLE_KEY, [Paragraph(f"No configurations in {DECAY_LINK}.")])
    shown = table.drop(columns=["ES before", "ES after"])
    shown.insert(
        shown.columns.get_loc("ΔES"),
        "ES before → after",
        [_arrow(b, a) for b, a in zip(table["ES before"], table["ES after"])],
    )
    kinds = [k for k in dict.fromkeys(ctx.final["efficacy_kind"]) if k != NA]
    blocks: list[Block] = [
        Table(
            shown,
            source=(
                f"Source: {DECAY_LINK}, the final row of each configuration; columns `es_ed` → `es_ed_ft`, "
                "`delta_es` (points), `relative_decay`, `efr`, `ds_M_ft`, `ds_M_ed_ft` (generation protocol)."
            ),
        )
    ]
    if kinds:
        rules = {
            "counterfact": "`counterfact`: P(new object) > P(true object) on the rewrite prompt",
            "zsre": "`zsre`: teacher-forced token accuracy of the new answer (for EFR and flips an edit "
            "succeeds when every token is the argmax, or most of them: column `indicator`)",
        }
        blocks.append(
            Paragraph(
                "Efficacy measured as (column `efficacy_kind`, PAPER §2.7): "
                + "; ".join(rules.get(k, f"`{k}`") for k in kinds)
                + "."
            )
        )
    return Section(TITLE_KEY, blocks)


def es_section(ctx: ReportContext) -> Section:
    table = es_table(ctx.final)
    if table.frame.empty:
        return Section(TITLE_ES, [Paragraph("No ES measured.")])
    return _method_table_section(
        TITLE_ES,
        table,
        Table(
            table.formatted(),
            source=(
                f"Source: {DECAY_LINK}, final rows; No FT = `es_ed` (ES of M_ed), each fine-tuning column = "
                f"`es_ed_ft` (ES of M_ed_ft), in %. {SPREAD_NOTE}"
            ),
        ),
    )


def _method_table_section(title: str, table: MethodTable, rendered: Table) -> Section:
    """A per-fine-tuning-method table, followed by the note on configurations tuned on other layers."""
    blocks: list[Block] = [rendered]
    note = _layers_note(table)
    if note:
        blocks.append(Paragraph(note))
    return Section(title, blocks)


def relative_decay_section(ctx: ReportContext) -> Section:
    table = relative_decay_table(ctx.final)
    if table.frame.empty or not table.value_columns:
        return Section(TITLE_RELATIVE, [Paragraph("Not measured: no fine-tuned configurations.")])
    return _method_table_section(
        TITLE_RELATIVE,
        table,
        Table(
            _with_model_averages(table),
            source=(
                f"Source: {DECAY_LINK}, final rows, column `relative_decay` = (ES_ed − ES_ed_ft) / ES_ed × 100 "
                f"(%; positive = edits lost). Rows “average” are the mean of that model's rows. {SPREAD_NOTE}"
            ),
        ),
    )


def flip_ratio_section(ctx: ReportContext) -> Section:
    table = flip_ratio_table(ctx.final)
    if table.frame.empty or not table.value_columns:
        return Section(TITLE_FLIP_RATIO, [Paragraph("Not measured: no fine-tuned configurations.")])
    indicators = [i for i in dict.fromkeys(ctx.final["indicator"]) if i != NA]
    source = (
        f"Source: {DECAY_LINK}, final rows; ΔES = `delta_es` = ES_ed − ES_ed_ft (points), EFR = `efr` = "
        "share of edits successful on M_ed that fail on M_ed_ft (%), emergent = `emergent_ratio` "
        f"(edits failing on M_ed that succeed on M_ed_ft, %). {SPREAD_NOTE}"
    )
    if indicators:
        source += " Per-edit success indicator: " + ", ".join(f"`{i}`" for i in indicators) + "."
    return _method_table_section(TITLE_FLIP_RATIO, table, Table(table.formatted(), source=source))


def _last_flip_step(flips: pd.DataFrame) -> pd.DataFrame:
    last = flips.groupby("config_id")["step"].transform("max")
    return flips[flips["step"] == last]


def flip_counts(flips: pd.DataFrame, final: pd.DataFrame) -> pd.DataFrame:
    """Edits per flip category for each configuration at its last step in flips.csv."""
    last = _last_flip_step(flips)
    categories = _ordered(last["category"], CATEGORY_ORDER)
    for category in CATEGORY_ORDER:
        if category not in categories:
            categories.append(category)
    counts = (
        last.groupby(["config_id", "step"])["category"]
        .value_counts()
        .unstack(fill_value=0)
        .reindex(columns=categories, fill_value=0)
        .reset_index()
    )
    counts.columns.name = None
    counts["total"] = counts[categories].sum(axis=1)
    settings = final[
        ["config_id", "model", "edit_method", "n_edits", "ft_method", "ft_layers", "seed"]
    ]
    merged = counts.merge(settings, on="config_id", how="left")
    ordered = merged[
        [
            "config_id",
            "model",
            "edit_method",
            "n_edits",
            "ft_method",
            "ft_layers",
            "seed",
            "step",
            *categories,
            "total",
        ]
    ]
    return sort_configurations(ordered)


def flip_examples(
    flips: pd.DataFrame, per_category: int = MAX_EXAMPLES_PER_CATEGORY
) -> pd.DataFrame:
    """A few edits per category (first by config_id and case_id) at each configuration's last step."""
    last = _last_flip_step(flips)
    has_answers = "answer_before" in last.columns and "answer_after" in last.columns
    records: list[dict[str, str]] = []
    for category in _ordered(last["category"], CATEGORY_ORDER):
        rows = last[last["category"] == category].copy()
        rows["_case"] = rows["case_id"].map(_text)
        rows = rows.sort_values(["config_id", "_case"], kind="stable").head(per_category)
        for row in rows.itertuples(index=False):
            record = {
                "category": category,
                "config_id": row.config_id,
                "case_id": _text(row.case_id),
                "subject": _text(row.subject),
                "true → new target": f"{_text(row.target_true)} → {_text(row.target_new)}",
            }
            if has_answers:
                record["answer M_ed → M_ed_ft"] = (
                    f"{_text(row.answer_before)} → {_text(row.answer_after)}"
                )
            record["efficacy before → after"] = _arrow(
                row.efficacy_before, row.efficacy_after, ".3g"
            )
            records.append(record)
    return pd.DataFrame.from_records(records)


def flips_section(ctx: ReportContext) -> Section:
    flips = ctx.results.flips
    if flips is None or flips.empty:
        return Section(
            TITLE_FLIPS,
            [
                Paragraph(
                    "Per-edit flip categories not measured (`results/flips.csv` absent or empty). "
                    f"Aggregate counts, where recorded, are in {DECAY_LINK} (`n_stable`, `n_erased`, `n_emergent`, "
                    "`n_impossible`)."
                )
            ],
        )
    blocks: list[Block] = [
        Paragraph(
            "stable: succeeds on M_ed and on M_ed_ft; erased: succeeds on M_ed, fails on M_ed_ft; "
            "emergent: fails on M_ed, succeeds on M_ed_ft; impossible: fails on both."
        ),
        Table(
            flip_counts(flips, ctx.final),
            floatfmt=".0f",
            source=(
                f"Source: {FLIPS_LINK}, rows at each configuration's last step, counted per `category`."
            ),
        ),
    ]
    examples = flip_examples(flips)
    if not examples.empty:
        blocks.append(
            Table(
                examples,
                source=(
                    f"Examples: the first {MAX_EXAMPLES_PER_CATEGORY} edits per category (by `config_id`, `case_id`) "
                    f"from {FLIPS_LINK}; efficacy columns `efficacy_before` → `efficacy_after`."
                ),
            )
        )
    return Section(TITLE_FLIPS, blocks)


SELECTIVE_GROUP = ("model", "edit_method", "edit_data", "n_edits", "ft_method", "ft_data")
SELECTIVE_METRICS = (
    # label, base M column, M_ed column, M_ed_ft column
    ("ES", "es_M", "es_ed", "es_ed_ft"),
    ("PS", "ps_M", "ps_ed", "ps_ed_ft"),
    ("NS", "ns_M", "ns_ed", "ns_ed_ft"),
    ("DS", "ds_M", "ds_M_ed", "ds_M_ed_ft"),
    ("DS (rank)", "ds_rank_M", "ds_rank_M_ed", "ds_rank_M_ed_ft"),
)


def selective_layer_groups(final: pd.DataFrame) -> pd.DataFrame:
    """The fine-tuned configurations whose setting was fine-tuned on more than one layer choice."""
    fine_tuned = _fine_tuned(final)
    if fine_tuned.empty or fine_tuned["ft_layers"].nunique() < 2:
        return fine_tuned.iloc[0:0]
    group_ids = fine_tuned.groupby(list(SELECTIVE_GROUP), dropna=False)["ft_layers"].transform(
        "nunique"
    )
    return fine_tuned[group_ids > 1]


def selective_table(final: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 7: per setting and metric, base M, M_ed, and M_ed_ft for each layer choice."""
    rows = selective_layer_groups(final)
    layers = _ordered(rows["ft_layers"], LAYER_ORDER)
    records: list[dict[str, object]] = []
    for key, group in rows.groupby(list(SELECTIVE_GROUP), sort=False, dropna=False):
        settings = dict(zip(SELECTIVE_GROUP, key))
        before = _before_ft(_edit_rows(final, settings))
        for label, base_column, edited_column, tuned_column in SELECTIVE_METRICS:
            values = {
                "M": over_seeds(before, base_column)
                if base_column in final.columns
                else EMPTY_SUMMARY,
                "M_ed": over_seeds(before, edited_column),
                **{
                    f"ft {layer}": over_seeds(group[group["ft_layers"] == layer], tuned_column)
                    for layer in layers
                },
            }
            if all(v.n == 0 for v in values.values()) and label != "ES":
                continue
            records.append(
                {**settings, "metric": label, **{k: v.format() for k, v in values.items()}}
            )
    columns = [*SELECTIVE_GROUP, "metric", "M", "M_ed", *(f"ft {layer}" for layer in layers)]
    return pd.DataFrame.from_records(records, columns=columns)


def selective_layers_section(ctx: ReportContext) -> Section | None:
    rows = selective_layer_groups(ctx.final)
    if rows.empty:
        return None
    configurations = rows[
        [
            "config_id",
            "model",
            "edit_method",
            "n_edits",
            "ft_method",
            "ft_data",
            "ft_layers",
            "seed",
        ]
    ]
    return Section(
        TITLE_SELECTIVE,
        [
            Table(
                selective_table(ctx.final),
                source=(
                    f"Source: {DECAY_LINK}, final rows. M = base model (`es_M`, `ds_M`, `ds_rank_M`; PS and NS of M are "
                    "not in decay.csv unless `ps_M` / `ns_M` columns exist), M_ed = `es_ed`, `ps_ed`, `ns_ed`, "
                    "`ds_M_ed`, `ds_rank_M_ed`; ft <layers> = the M_ed_ft columns (`es_ed_ft`, `ps_ed_ft`, `ns_ed_ft`, "
                    f"`ds_M_ed_ft`, `ds_rank_M_ed_ft`) of the configurations fine-tuned on those layers. DS = generation "
                    f"protocol, DS (rank) = rank classification; all in %. {SPREAD_NOTE}"
                ),
            ),
            Table(sort_configurations(configurations), source="Configurations compared above."),
        ],
    )


def _downstream_summary(final: pd.DataFrame, noft_column: str, ft_column: str) -> pd.DataFrame:
    """Degradation per model (× ft_data when it varies): mean ± SD over configurations, paper Table 8 style."""
    fine_tuned, _, _ = _primary_layers(_fine_tuned(final))
    keys = ["model"] + (["ft_data"] if fine_tuned["ft_data"].nunique() > 1 else [])
    methods = _ordered(fine_tuned["ft_method"], FT_ORDER)
    per_edit = (
        final.groupby([*EDIT_KEYS, "seed"], dropna=False, sort=False)[noft_column]
        .mean()
        .reset_index()
    )
    records: list[dict[str, object]] = []
    for model in _ordered(final["model"], ()):
        model_rows = fine_tuned[fine_tuned["model"] == model]
        data_values = _ordered(model_rows["ft_data"], ()) if "ft_data" in keys else [None]
        for ft_data in data_values or [NA]:
            record: dict[str, object] = {"model": model}
            if "ft_data" in keys:
                record["ft_data"] = ft_data
            record["No FT"] = _mean_and_sd(per_edit.loc[per_edit["model"] == model, noft_column])
            rows = model_rows if ft_data is None else model_rows[model_rows["ft_data"] == ft_data]
            for method in methods:
                record[_ft_label(method)] = _mean_and_sd(
                    rows.loc[rows["ft_method"] == method, ft_column]
                )
            records.append(record)
    return pd.DataFrame.from_records(
        records, columns=[*keys, "No FT", *(_ft_label(m) for m in methods)]
    )


def _downstream_detail(final: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    rows = final[final[list(columns)].notna().any(axis=1)]
    labels = ["DS M", "DS M_ed", "DS M_ft", "DS M_ed_ft", "degradation no FT %", "degradation FT %"]
    detail = rows[
        [
            "config_id",
            "model",
            "edit_method",
            "edit_data",
            "n_edits",
            "ft_method",
            "ft_layers",
            "seed",
            *columns,
        ]
    ]
    return detail.rename(columns=dict(zip(columns, labels)))


def downstream_section(ctx: ReportContext) -> Section:
    final = ctx.final
    protocols = (
        ("generation protocol", DS_COLUMNS),
        ("rank-classification protocol", DS_RANK_COLUMNS),
    )
    blocks: list[Block] = []
    for name, columns in protocols:
        if _all_missing(final, columns):
            blocks.append(
                Paragraph(
                    f"Downstream accuracy, {name}: not measured (`{'`, `'.join(columns)}` empty)."
                )
            )
            continue
        ds_m, ds_ed, ds_ft, ds_ed_ft, noft, ft = columns
        blocks.append(Paragraph(f"**Downstream accuracy, {name}**"))
        blocks.append(
            Table(
                _downstream_summary(final, noft, ft),
                source=(
                    f"Degradation (%) caused by the prior edit, per model: mean ± SD (n values) from {DECAY_LINK}, final "
                    f"rows. No FT = `{noft}` (M_ed against M; one value per edit setting and seed), fine-tuning columns = "
                    f"`{ft}` (M_ed_ft against M_ft). Positive = the edit costs downstream accuracy."
                ),
            )
        )
        blocks.append(
            Table(
                sort_configurations(_downstream_detail(final, columns)),
                source=(
                    f"Per configuration, from {DECAY_LINK}: `{ds_m}`, `{ds_ed}`, `{ds_ft}`, `{ds_ed_ft}` (accuracy, %), "
                    f"`{noft}`, `{ft}` (degradation, %)."
                ),
            )
        )
    return Section(TITLE_DOWNSTREAM, blocks)


def decay_plot_section(ctx: ReportContext) -> Section | None:
    figure = plot_decay_bars(ctx.final)
    if figure is None:
        return None
    path = ctx.save_plot("decay_bars.png", figure)
    return Section(
        TITLE_DECAY_PLOT,
        [
            Figure(
                path,
                (
                    f"ES(M_ed) (`es_ed`) and ES(M_ed_ft) (`es_ed_ft`) of each fine-tuned configuration at its final step, "
                    f"from {DECAY_LINK}; numbers in “{TITLE_KEY}”."
                ),
            )
        ],
    )


def steps_section(ctx: ReportContext) -> Section | None:
    decay = ctx.results.decay
    config_ids = _multi_step_configs(decay)
    if not config_ids:
        return None
    path = ctx.save_plot("decay_steps.png", plot_decay_steps(decay, config_ids))
    rows = decay[decay["config_id"].isin(config_ids)]
    table = sort_configurations(
        rows[
            [
                "config_id",
                "step",
                "final",
                "es_ed",
                "es_ed_ft",
                "delta_es",
                "relative_decay",
                "efr",
                "emergent_ratio",
            ]
        ],
        ("config_id", "step"),
    )
    blocks: list[Block] = [
        Figure(
            path,
            f"ES(M_ed_ft) and EFR against the fine-tuning step (step 0 of the ES line = ES(M_ed)), "
            f"from {DECAY_LINK}.",
        ),
        Table(
            table,
            source=f"Source: every row of {DECAY_LINK} for configurations with several steps.",
        ),
    ]
    if len(config_ids) > MAX_LINES_PER_PLOT:
        blocks.insert(
            1,
            Paragraph(
                f"The plot shows the first {MAX_LINES_PER_PLOT} of {len(config_ids)} "
                "configurations; the table lists all."
            ),
        )
    return Section(TITLE_STEPS, blocks)


def training_section(ctx: ReportContext) -> Section | None:
    training = ctx.results.training
    if training is None:
        return None
    if training.empty:
        return Section(TITLE_TRAINING, [Paragraph("`results/training.csv` holds no loss values.")])
    decay = ctx.results.decay
    same_configs = decay is not None and set(training["config_id"]) <= set(decay["config_id"])
    labels = (
        plot_labels(decay[decay["config_id"].isin(training["config_id"])]) if same_configs else None
    )
    path = ctx.save_plot("training_loss.png", plot_training(training, labels))
    summary = (
        training.sort_values("step")
        .groupby(["config_id", "state"])
        .agg(
            points=("loss", "size"),
            last_step=("step", "last"),
            first_loss=("loss", "first"),
            last_loss=("loss", "last"),
            min_loss=("loss", "min"),
        )
        .reset_index()
    )
    blocks: list[Block] = [
        Figure(
            path, "Fine-tuning loss per step from [results/training.csv](results/training.csv)."
        ),
        Table(
            summary,
            floatfmt=".4f",
            source="Source: [results/training.csv](results/training.csv), columns `step`, `loss`.",
        ),
    ]
    if summary.shape[0] > MAX_LINES_PER_PLOT:
        blocks.insert(
            1,
            Paragraph(
                f"The plot shows the first {MAX_LINES_PER_PLOT} of {summary.shape[0]} curves."
            ),
        )
    return Section(TITLE_TRAINING, blocks)


def configurations_section(ctx: ReportContext) -> Section | None:
    configs = ctx.results.configs
    if configs is None or configs.empty:
        return None
    return Section(
        TITLE_CONFIGS,
        [
            Table(
                configs,
                floatfmt="g",
                source="Every configuration with its settings, from [results/configs.csv](results/configs.csv).",
            )
        ],
    )


SECTION_BUILDERS: list[SectionBuilder] = [
    header_section,
    data_files_section,
    key_results_section,
    es_section,
    relative_decay_section,
    flip_ratio_section,
    flips_section,
    selective_layers_section,
    downstream_section,
    decay_plot_section,
    steps_section,
    training_section,
    configurations_section,
]


# --------------------------------------------------------------------------------------------------
# Rendering


def _relative_link(path: Path, run_dir: Path) -> str:
    try:
        return path.relative_to(run_dir).as_posix()
    except ValueError:
        return path.as_posix()


def render_markdown(sections: Sequence[Section], run_dir: Path) -> str:
    lines: list[str] = []
    for section in sections:
        lines.extend([f"{'#' * section.level} {section.title}", ""])
        for block in section.blocks:
            if isinstance(block, Paragraph):
                lines.extend([block.text, ""])
            elif isinstance(block, BulletList):
                lines.extend([*(f"- {item}" for item in block.items), ""])
            elif isinstance(block, CodeBlock):
                lines.extend(["```", block.text, "```", ""])
            elif isinstance(block, Table):
                if block.source:
                    lines.extend([block.source, ""])
                lines.extend([format_markdown_table(block.frame, block.floatfmt), ""])
            elif isinstance(block, Figure):
                link = _relative_link(block.path, run_dir)
                lines.extend([f"![{block.path.stem}]({link})", "", block.caption, ""])
    return "\n".join(lines).rstrip() + "\n"


_CODE_SPAN = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline_html(text: str) -> str:
    def plain(part: str) -> str:
        escaped = html.escape(part, quote=True)
        escaped = _LINK.sub(lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>', escaped)
        return _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", escaped)

    pieces: list[str] = []
    position = 0
    for match in _CODE_SPAN.finditer(text):
        pieces.append(plain(text[position : match.start()]))
        pieces.append(f"<code>{html.escape(match.group(1))}</code>")
        position = match.end()
    pieces.append(plain(text[position:]))
    return "".join(pieces)


def _html_table(table: Table) -> str:
    frame = table.frame
    rows = _cell_strings(frame, table.floatfmt, NA)
    right = _right_aligned(frame, rows, NA)
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "\n".join(
        "<tr>"
        + "".join(
            f'<td class="num">{html.escape(c)}</td>' if r else f"<td>{html.escape(c)}</td>"
            for c, r in zip(row, right)
        )
        + "</tr>"
        for row in rows
    )
    parts = []
    if table.source:
        parts.append(f'<p class="source">{_inline_html(table.source)}</p>')
    parts.append(
        f'<div class="scroll"><table>\n<thead><tr>{header}</tr></thead>\n<tbody>\n{body}\n</tbody>'
        "\n</table></div>"
    )
    return "\n".join(parts)


def _html_figure(figure: Figure) -> str:
    encoded = base64.b64encode(figure.path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(figure.path.stem, quote=True)}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{_inline_html(figure.caption)}</figcaption></figure>"
    )


CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #222;
       max-width: 1280px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .4em 0 1.4em; font-size: .88em; }
th, td { border: 1px solid #d0d0d0; padding: .25em .6em; vertical-align: top; }
th { background: #f3f4f6; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafafa; }
div.scroll { overflow-x: auto; }
p.source { color: #555; font-size: .85em; margin-bottom: .3em; }
pre { background: #f6f8fa; padding: .7em; overflow-x: auto; }
code { background: #f3f4f6; padding: 0 .2em; border-radius: 3px; }
figure { margin: 1em 0; }
figure img { max-width: 100%; }
figcaption { color: #555; font-size: .88em; }
"""


def render_html(sections: Sequence[Section], title: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
    ]
    for section in sections:
        level = min(max(section.level, 1), 6)
        parts.append(f"<h{level}>{html.escape(section.title)}</h{level}>")
        for block in section.blocks:
            if isinstance(block, Paragraph):
                parts.append(f"<p>{_inline_html(block.text)}</p>")
            elif isinstance(block, BulletList):
                parts.append(
                    "<ul>"
                    + "".join(f"<li>{_inline_html(item)}</li>" for item in block.items)
                    + "</ul>"
                )
            elif isinstance(block, CodeBlock):
                parts.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
            elif isinstance(block, Table):
                parts.append(_html_table(block))
            elif isinstance(block, Figure):
                parts.append(_html_figure(block))
    parts.extend(["</body>", "</html>"])
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------------
# Entry point


def _default_title(results: StudyResults) -> str:
    if results.study and _text(results.study.get("name")) != NA:
        return f"Study report: {_text(results.study.get('name'))}"
    return f"Study report: {results.run_dir.resolve().name}"


def _build(builder: SectionBuilder, ctx: ReportContext) -> Section | None:
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
        title=title or _default_title(results),
        final=final_rows(results.decay),
        plots_dir=run_dir / "plots",
    )
    sections = [
        s for s in (_build(b, ctx) for b in (builders or SECTION_BUILDERS)) if s is not None
    ]

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
