"""The decay table of a whole study: one row per (configuration, checkpoint), the columns of decay.csv.

Built from the long per-edit table (:data:`editdecay.schema.EDITS`) and the downstream table by
:func:`decay_summary`; the metrics of each before/after pair come from :mod:`.decay`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..schema import (
    CONFIG_COLUMNS,
    DECAY,
    DS_COLUMNS,
    DS_MODES,
    DS_RANK_COLUMNS,
    STATES,
    column_names,
)
from .decay import (
    CATEGORIES,
    COUNT_KEYS,
    FEW,
    SCORE_COLUMNS,
    check_indicator,
    downstream_degradation,
    efficacy_kind,
    flip_table,
    is_present,
    mean_percent,
    numeric_column,
    pair_metrics,
    require_columns,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# The whole study: one row per (configuration, checkpoint)
# --------------------------------------------------------------------------------------------------


def decay_summary(
    edits: pd.DataFrame, downstream: pd.DataFrame | None = None, indicator: str = "exact"
) -> pd.DataFrame:
    """One row per (config_id, step) of the configuration's M_ed_ft rows, with every decay metric.

    For each configuration, ``before`` is its M_ed rows and ``after`` its M_ed_ft rows at the step,
    scored by :func:`decay_metrics`. ``final`` marks the configuration's largest M_ed_ft step.
    ``es_M`` is the unedited model's efficacy on the same requests (state M) and ``es_M_ft`` that of
    the fine-tuned unedited model at the same step (state M_ft; NaN if not evaluated there).

    A configuration without M_ed_ft rows (``ft_method`` "none") gives one row at step 0 with
    ``final`` True, where only the edited-model columns (``es_ed, ps_ed, ns_ed, n_edits,
    n_success_ed``, ``es_M``, ``ds_M, ds_M_ed``) are filled and the after-fine-tuning columns are NaN.
    A configuration without M_ed rows is skipped with a warning.

    ``n_edits`` is the configuration's own value when the table has that column (a mismatch with
    the number of evaluated edits is logged), otherwise the number of evaluated edits.

    With ``downstream`` (columns ``config_id, state, step, task, mode, accuracy``), DS is the
    unweighted mean accuracy over tasks × 100 (a ``task == "average"`` row is used only when no
    per-task rows exist). Mode ``generate`` gives ``ds_M, ds_M_ed`` (states at step 0; their step is
    not consulted), ``ds_M_ft, ds_M_ed_ft`` (at the row's step; NaN if not evaluated there) and the
    PAPER Table 8 degradations ``ds_degradation_noft`` = downstream_degradation(ds_M, ds_M_ed) and
    ``ds_degradation_ft`` = downstream_degradation(ds_M_ft, ds_M_ed_ft); mode ``rank`` gives the
    same six columns prefixed ``ds_rank_``.

    Rows are sorted by config_id, then step; the columns are :func:`summary_columns`.
    """
    check_indicator(indicator)
    require_columns(edits, ["config_id", "state", "step", "case_id"], "per-edit table")
    unknown_states = sorted(set(edits["state"].dropna().astype(str)) - set(STATES))
    if unknown_states:
        raise ValueError(
            f"unknown state(s) {unknown_states} in the per-edit table; known: {', '.join(STATES)}"
        )
    if downstream is not None:
        require_columns(
            downstream,
            ["config_id", "state", "step", "task", "mode", "accuracy"],
            "downstream table",
        )

    rows: list[dict[str, Any]] = []
    for config_id, config_rows in edits.groupby("config_id", sort=True):
        ds_rows = (
            downstream[downstream["config_id"] == config_id] if downstream is not None else None
        )
        rows.extend(_config_rows(config_id, config_rows, ds_rows, indicator))
    columns = summary_columns(with_downstream=downstream is not None)
    summary = pd.DataFrame(rows, columns=columns)
    for key in COUNT_KEYS:
        summary[key] = _as_counts(summary[key])
    summary["step"] = summary["step"].astype(int)
    summary["final"] = summary["final"].astype(bool)
    log.info(
        "decay summary: %d row(s) over %d configuration(s)",
        len(summary),
        summary["config_id"].nunique(),
    )
    return summary


def summary_columns(with_downstream: bool = True) -> list[str]:
    """The column names of :func:`decay_summary`'s output, in order: :data:`editdecay.schema.DECAY`."""
    downstream = set(column_names(DS_COLUMNS) + column_names(DS_RANK_COLUMNS))
    return [c for c in DECAY.names if with_downstream or c not in downstream]


def flip_examples(
    edits: pd.DataFrame,
    config_id: str,
    step: int | None = None,
    per_category: int = 3,
    indicator: str = "exact",
) -> pd.DataFrame:
    """Up to ``per_category`` edits of each PAPER Table 6 category for one configuration.

    Compares the configuration's M_ed rows with its M_ed_ft rows at ``step`` (default: the final,
    largest step). Returns :func:`flip_table` rows, ordered by category (stable, erased, emergent,
    impossible) and, within a category, by ``case_id``; the first ``per_category`` by that order are
    kept, so the choice is deterministic.
    """
    if per_category < 0:
        raise ValueError(f"per_category must be >= 0, got {per_category}")
    require_columns(edits, ["config_id", "state", "step", "case_id"], "per-edit table")
    config_rows = edits[edits["config_id"] == config_id]
    if config_rows.empty:
        raise ValueError(f"no rows for config_id {config_id!r}")
    before = config_rows[config_rows["state"] == "M_ed"]
    tuned = config_rows[config_rows["state"] == "M_ed_ft"]
    if before.empty or tuned.empty:
        raise ValueError(f"config_id {config_id!r} needs both M_ed and M_ed_ft rows for flips")
    steps = sorted(int(s) for s in tuned["step"].dropna().unique())
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise ValueError(
            f"config_id {config_id!r} has no M_ed_ft rows at step {step}; steps: {steps}"
        )
    flips = flip_table(before, tuned[tuned["step"] == step], indicator)
    flips = flips.sort_values("case_id", kind="stable")
    parts = [flips[flips["category"] == category].head(per_category) for category in CATEGORIES]
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------------


def _config_rows(
    config_id: Any, rows: pd.DataFrame, downstream: pd.DataFrame | None, indicator: str
) -> list[dict[str, Any]]:
    """decay_summary's rows for one configuration."""
    config = _config_values(config_id, rows)
    kind = efficacy_kind(rows)
    before = rows[rows["state"] == "M_ed"]
    if before.empty:
        log.warning("config %s has no M_ed rows; left out of the decay summary", config_id)
        return []
    case_ids = set(before["case_id"])
    base = rows[(rows["state"] == "M") & rows["case_id"].isin(case_ids)]
    base_ft = rows[(rows["state"] == "M_ft") & rows["case_id"].isin(case_ids)]
    tuned = rows[rows["state"] == "M_ed_ft"]
    es_column = SCORE_COLUMNS[kind]["es"]
    es_m = mean_percent(numeric_column(base, es_column))

    steps = sorted(int(s) for s in tuned["step"].dropna().unique())
    base_steps = sorted(int(s) for s in base_ft["step"].dropna().unique())
    out: list[dict[str, Any]] = []
    if not steps:
        metrics = pair_metrics(before, None, None, indicator, kind)
        out.append(
            _assemble(
                config, 0, True, metrics, es_m, math.nan, _downstream_values(downstream, None)
            )
        )
    for step in steps:
        after = tuned[tuned["step"] == step]
        try:
            flips = flip_table(before, after, indicator)
        except ValueError as err:
            raise ValueError(f"config {config_id}, step {step}: {err}") from err
        metrics = pair_metrics(before, after, flips, indicator, kind)
        reference = _reference_step(step, steps, base_steps)
        es_m_ft = mean_percent(numeric_column(base_ft[base_ft["step"] == reference], es_column))
        out.append(
            _assemble(
                config,
                step,
                step == steps[-1],
                metrics,
                es_m,
                es_m_ft,
                _downstream_values(downstream, step, reference),
            )
        )
    evaluated = len(before)
    configured = pd.to_numeric(pd.Series([config.get("n_edits")]), errors="coerce").iloc[0]
    if is_present(configured) and configured != evaluated:
        log.warning(
            "config %s: n_edits is %s but %d edit(s) were evaluated",
            config_id,
            configured,
            evaluated,
        )
    return out


def _assemble(
    config: Mapping[str, Any],
    step: int,
    final: bool,
    metrics: Mapping[str, Any],
    es_m: float,
    es_m_ft: float,
    downstream: Mapping[str, float],
) -> dict[str, Any]:
    """One decay_summary row from its parts (the configuration's n_edits wins over the count)."""
    row: dict[str, Any] = dict(config)
    if not is_present(row.get("n_edits")):
        row["n_edits"] = metrics["n_edits"]
    row.update({"step": int(step), "final": bool(final), "es_M": es_m, "es_M_ft": es_m_ft})
    row.update({k: v for k, v in metrics.items() if k != "n_edits"})
    row.update(downstream)
    return row


def _reference_step(step: int, steps: list[int], base_steps: list[int]) -> int:
    """The M_ft step M_ed_ft's `step` is compared with: the same step, except that the final
    steps pair up when the two runs differ in length (an edit-preserving option that adds
    training examples fine-tunes M_ed longer than M)."""
    if step in base_steps or not base_steps or step != steps[-1]:
        return step
    return base_steps[-1]


def _downstream_values(
    downstream: pd.DataFrame | None, step: int | None, reference: int | None = None
) -> dict[str, float]:
    """The DS columns of one summary row; ``step`` None means no fine-tuned states; `reference`
    is the M_ft step compared with (default: `step`)."""
    reference = step if reference is None else reference
    if downstream is None:
        return {}
    values: dict[str, float] = {}
    for mode, prefix in DS_MODES.items():
        ds_m = _ds_mean(downstream, "M", None, mode)
        ds_m_ed = _ds_mean(downstream, "M_ed", None, mode)
        ds_m_ft = _ds_mean(downstream, "M_ft", reference, mode) if step is not None else math.nan
        ds_m_ed_ft = _ds_mean(downstream, "M_ed_ft", step, mode) if step is not None else math.nan
        values.update(
            {
                f"{prefix}M": ds_m,
                f"{prefix}M_ed": ds_m_ed,
                f"{prefix}M_ft": ds_m_ft,
                f"{prefix}M_ed_ft": ds_m_ed_ft,
                f"{prefix}degradation_noft": downstream_degradation(ds_m, ds_m_ed),
                f"{prefix}degradation_ft": downstream_degradation(ds_m_ft, ds_m_ed_ft),
            }
        )
    return values


def _ds_mean(downstream: pd.DataFrame, state: str, step: int | None, mode: str) -> float:
    """Unweighted mean accuracy over tasks, in percent, for one state (and step) and mode."""
    rows = downstream[(downstream["state"] == state) & (downstream["mode"] == mode)]
    if step is not None:
        rows = rows[rows["step"] == step]
    per_task = rows[rows["task"] != "average"]
    if per_task.empty:
        per_task = rows
    accuracy = pd.to_numeric(per_task["accuracy"], errors="coerce")
    by_task = accuracy.groupby(per_task["task"]).mean().dropna()
    return float(by_task.mean() * 100) if len(by_task) else math.nan


def _config_values(config_id: Any, rows: pd.DataFrame) -> dict[str, Any]:
    """The configuration columns of one config_id (first non-missing value; NaN if absent)."""
    values: dict[str, Any] = {"config_id": config_id}
    for column in column_names(CONFIG_COLUMNS)[1:]:
        if column not in rows.columns:
            values[column] = math.nan
            continue
        present = rows[column].dropna()
        distinct = present.unique()
        if len(distinct) > 1:
            log.warning(
                "config %s has several values of %s: %s; using %r",
                config_id,
                column,
                list(distinct[:FEW]),
                present.iloc[0],
            )
        values[column] = present.iloc[0] if len(present) else math.nan
    return values


def _as_counts(values: pd.Series) -> pd.Series:
    """A count column as nullable integers (missing counts stay missing); left as is if not whole numbers."""
    numeric = pd.to_numeric(values, errors="coerce")
    lossless = numeric.isna().sum() == values.isna().sum()
    whole = bool(((numeric.dropna() % 1) == 0).all())
    return numeric.astype("Int64") if lossless and whole else values
