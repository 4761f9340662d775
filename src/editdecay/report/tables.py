"""Tables computed from decay.csv and flips.csv, before formatting: one function per table."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..analysis.tables import EDIT_KEYS, final_rows, fine_tuned_rows, in_order, sort_configurations
from ..schema import FLIP_CATEGORIES, FT_METHODS, FT_NONE, LAYER_CHOICES
from .format import (
    EMPTY_SUMMARY,
    NA,
    SeedSummary,
    arrow,
    cell_text,
    ft_label,
    mean_and_sd,
    over_seeds,
)

MAX_EXAMPLES_PER_CATEGORY = 3


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


HEADLINE_COLUMNS = (
    "model",
    "edit_data",
    "fine-tuning",
    "configurations",
    "ES M_ed",
    "ES M_ed_ft",
    "ΔES",
    "EFR %",
    "DS M_ft",
    "DS M_ed_ft",
)


def headline_table(final: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """The few numbers a reader comes for: per model × edit data × fine-tuning method, the mean over
    its configurations (edit methods, edit counts, seeds) of ES before and after fine-tuning, ΔES,
    EFR and DS. Only the main layer choice and the main fine-tuning data; returns the table and a
    note on what was left out (None when nothing was)."""
    tuned, layers, excluded = primary_layers(fine_tuned_rows(final))
    if tuned.empty:
        return pd.DataFrame(columns=list(HEADLINE_COLUMNS)), None
    counts = tuned["ft_data"].value_counts()
    main_data = "commonsense" if "commonsense" in counts.index else str(counts.index[0])
    other_data = int((tuned["ft_data"] != main_data).sum())
    tuned = tuned[tuned["ft_data"] == main_data]
    records = []
    for (model, data, method), rows in tuned.groupby(
        ["model", "edit_data", "ft_method"], sort=False, dropna=False
    ):
        records.append(
            {
                "model": model,
                "edit_data": data,
                "fine-tuning": ft_label(method),
                "_method": method,
                "configurations": len(rows),
                "ES M_ed": rows["es_ed"].mean(),
                "ES M_ed_ft": rows["es_ed_ft"].mean(),
                "ΔES": rows["delta_es"].mean(),
                "EFR %": rows["efr"].mean(),
                "DS M_ft": rows["ds_M_ft"].mean(),
                "DS M_ed_ft": rows["ds_M_ed_ft"].mean(),
            }
        )
    table = pd.DataFrame.from_records(records)
    table = sort_configurations(table.rename(columns={"_method": "ft_method"}), SORT_HEADLINE)
    left_out = []
    if excluded:
        left_out.append(f"{excluded} configuration(s) fine-tuned on other layers than `{layers}`")
    if other_data:
        left_out.append(f"{other_data} fine-tuned on other data than `{main_data}`")
    note = f"Fine-tuning on `{main_data}`, layers `{layers}`." + (
        f" Not included: {'; '.join(left_out)} (see the tables below)." if left_out else ""
    )
    return table[list(HEADLINE_COLUMNS)].reset_index(drop=True), note


SORT_HEADLINE = ("model", "edit_data", "ft_method")


def primary_layers(fine_tuned: pd.DataFrame) -> tuple[pd.DataFrame, str | None, int]:
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


def key_text(values: Iterable[object]) -> tuple[str, ...]:
    return tuple(cell_text(v) for v in values)


def rows_of_edit(final: pd.DataFrame, row: Mapping[str, object]) -> pd.DataFrame:
    wanted = key_text(row[k] for k in EDIT_KEYS)
    mask = [
        key_text(values) == wanted
        for values in final[list(EDIT_KEYS)].itertuples(index=False, name=None)
    ]
    return final[mask]


def before_ft(edit_rows: pd.DataFrame) -> pd.DataFrame:
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
                lambda s: s.format() if isinstance(s, SeedSummary) else cell_text(s)
            )
        return out


def method_table(
    final: pd.DataFrame,
    cells: CellBuilder,
    no_ft: Callable[[pd.DataFrame], dict[str, SeedSummary]] | None = None,
) -> MethodTable:
    """Rows model × edit method × edit data × n_edits (× ft_data when it varies), columns per FT method.

    Only the main layer choice is used (see :func:`primary_layers`). `no_ft` fills the columns read
    before fine-tuning from every configuration of the edit setting.
    """
    fine_tuned, primary, excluded = primary_layers(fine_tuned_rows(final))
    group_keys = list(EDIT_KEYS)
    if fine_tuned["ft_data"].nunique() > 1:
        group_keys.append("ft_data")
    # the edit-layer column is shown only where some configuration moved its editor off the default
    keys = [k for k in group_keys if k != "edit_layers" or final[k].astype(str).ne("").any()]
    methods = in_order(fine_tuned["ft_method"], FT_METHODS)
    empty = final.iloc[0:0]
    value_columns: list[str] = list(no_ft(empty)) if no_ft is not None else []
    for method in methods:
        value_columns.extend(c for c in cells(empty, ft_label(method)) if c not in value_columns)

    records: list[dict[str, object]] = []
    covered: set[tuple[str, ...]] = set()

    def add(row: dict[str, object], groups: pd.DataFrame, edit_rows: pd.DataFrame) -> None:
        if no_ft is not None:
            row.update(no_ft(before_ft(edit_rows)))
        for method in methods:
            row.update(cells(groups[groups["ft_method"] == method], ft_label(method)))
        # the seeds actually averaged in the row's cells (an FT method may have fewer than another)
        summaries = [v for v in row.values() if isinstance(v, SeedSummary)]
        row["seeds"] = max((s.n for s in summaries), default=0)
        records.append(row)

    if not fine_tuned.empty:
        for key, group in fine_tuned.groupby(group_keys, sort=False, dropna=False):
            row = dict(zip(group_keys, key))
            edit_rows = rows_of_edit(final, row)
            covered.add(key_text(row[k] for k in EDIT_KEYS))
            add(row, group, edit_rows if no_ft is not None else group)
    if no_ft is not None:
        unfine_tuned = final[final["ft_method"] == FT_NONE]
        if not unfine_tuned.empty:
            for key, group in unfine_tuned.groupby(list(EDIT_KEYS), sort=False, dropna=False):
                row = dict(zip(EDIT_KEYS, key))
                if key_text(key) in covered:
                    continue
                if "ft_data" in group_keys:
                    row["ft_data"] = NA
                add(row, group.iloc[0:0], group)

    frame = pd.DataFrame.from_records(records, columns=[*keys, *value_columns, "seeds"])
    frame = sort_configurations(frame, keys)
    for column in value_columns:
        frame[column] = frame[column].map(
            lambda s: s if isinstance(s, SeedSummary) else EMPTY_SUMMARY
        )
    return MethodTable(frame, keys, value_columns, primary, excluded)


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


def with_model_averages(table: MethodTable) -> pd.DataFrame:
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


def last_flip_step(flips: pd.DataFrame) -> pd.DataFrame:
    last = flips.groupby("config_id")["step"].transform("max")
    return flips[flips["step"] == last]


def flip_counts(flips: pd.DataFrame, final: pd.DataFrame) -> pd.DataFrame:
    """Edits per flip category for each configuration at its last step in flips.csv."""
    last = last_flip_step(flips)
    categories = in_order(last["category"], FLIP_CATEGORIES)
    for category in FLIP_CATEGORIES:
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


def flip_totals(flips: pd.DataFrame, final: pd.DataFrame) -> pd.DataFrame:
    """:func:`flip_counts` summed per model × edit data × fine-tuning method × layers."""
    counts = flip_counts(flips, final)
    data = final[["config_id", "edit_data"]]
    counts = counts.merge(data, on="config_id", how="left")
    keys = ["model", "edit_data", "ft_method", "ft_layers"]
    categories = [c for c in counts.columns if c in FLIP_CATEGORIES]
    totals = counts.groupby(keys, dropna=False, sort=False)[[*categories, "total"]].sum()
    totals.insert(0, "configurations", counts.groupby(keys, dropna=False, sort=False).size())
    return sort_configurations(totals.reset_index(), keys)


def flip_examples(
    flips: pd.DataFrame, per_category: int = MAX_EXAMPLES_PER_CATEGORY
) -> pd.DataFrame:
    """A few edits per category (first by config_id and case_id) at each configuration's last step."""
    last = last_flip_step(flips)
    has_answers = "answer_before" in last.columns and "answer_after" in last.columns
    records: list[dict[str, str]] = []
    for category in in_order(last["category"], FLIP_CATEGORIES):
        rows = last[last["category"] == category].copy()
        rows["_case"] = rows["case_id"].map(cell_text)
        rows = rows.sort_values(["config_id", "_case"], kind="stable").head(per_category)
        for row in rows.itertuples(index=False):
            record = {
                "category": category,
                "config_id": row.config_id,
                "case_id": cell_text(row.case_id),
                "subject": cell_text(row.subject),
                "true → new target": f"{cell_text(row.target_true)} → {cell_text(row.target_new)}",
            }
            if has_answers:
                record["answer M_ed → M_ed_ft"] = (
                    f"{cell_text(row.answer_before)} → {cell_text(row.answer_after)}"
                )
            record["efficacy before → after"] = arrow(
                row.efficacy_before, row.efficacy_after, ".3g"
            )
            records.append(record)
    return pd.DataFrame.from_records(records)


SELECTIVE_GROUP = (*EDIT_KEYS, "ft_method", "ft_data")
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
    fine_tuned = fine_tuned_rows(final)
    if fine_tuned.empty or fine_tuned["ft_layers"].nunique() < 2:
        return fine_tuned.iloc[0:0]
    group_ids = fine_tuned.groupby(list(SELECTIVE_GROUP), dropna=False)["ft_layers"].transform(
        "nunique"
    )
    return fine_tuned[group_ids > 1]


def selective_table(final: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 7: per setting and metric, base M, M_ed, and M_ed_ft for each layer choice."""
    rows = selective_layer_groups(final)
    layers = in_order(rows["ft_layers"], LAYER_CHOICES)
    records: list[dict[str, object]] = []
    for key, group in rows.groupby(list(SELECTIVE_GROUP), sort=False, dropna=False):
        settings = dict(zip(SELECTIVE_GROUP, key))
        before = before_ft(rows_of_edit(final, settings))
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
    shown = [k for k in SELECTIVE_GROUP if k != "edit_layers" or rows[k].astype(str).ne("").any()]
    columns = [*shown, "metric", "M", "M_ed", *(f"ft {layer}" for layer in layers)]
    return pd.DataFrame.from_records(records, columns=columns)


def downstream_summary(final: pd.DataFrame, noft_column: str, ft_column: str) -> pd.DataFrame:
    """Degradation per model (× ft_data when it varies): mean ± SD over configurations, paper Table 8 style."""
    fine_tuned, _, _ = primary_layers(fine_tuned_rows(final))
    keys = ["model"] + (["ft_data"] if fine_tuned["ft_data"].nunique() > 1 else [])
    methods = in_order(fine_tuned["ft_method"], FT_METHODS)
    per_edit = (
        final.groupby([*EDIT_KEYS, "seed"], dropna=False, sort=False)[noft_column]
        .mean()
        .reset_index()
    )
    records: list[dict[str, object]] = []
    for model in in_order(final["model"], ()):
        model_rows = fine_tuned[fine_tuned["model"] == model]
        data_values = in_order(model_rows["ft_data"], ()) if "ft_data" in keys else [None]
        for ft_data in data_values or [NA]:
            record: dict[str, object] = {"model": model}
            if "ft_data" in keys:
                record["ft_data"] = ft_data
            record["No FT"] = mean_and_sd(per_edit.loc[per_edit["model"] == model, noft_column])
            rows = model_rows if ft_data is None else model_rows[model_rows["ft_data"] == ft_data]
            for method in methods:
                record[ft_label(method)] = mean_and_sd(
                    rows.loc[rows["ft_method"] == method, ft_column]
                )
            records.append(record)
    return pd.DataFrame.from_records(
        records, columns=[*keys, "No FT", *(ft_label(m) for m in methods)]
    )


def downstream_detail(final: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
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
