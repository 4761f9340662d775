"""Edit decay under fine-tuning: ΔES, relative decay, Edit Flip Ratio, flip categories, DS degradation.

The input is the long per-edit table: one row per (configuration, model state, checkpoint step,
edit request), with the per-edit scores of :func:`editdecay.evaluation.edit_metrics.evaluate_requests`.

Model states (PAPER §2.7 notation):

``M``        the base model;
``M_ed``     the edited model;
``M_ft``     the base model after fine-tuning;
``M_ed_ft``  the edited model after fine-tuning.

``M`` and ``M_ed`` sit at step 0; ``M_ft`` and ``M_ed_ft`` rows may exist at several fine-tuning
checkpoints, the largest step being the final model.

Metrics (all in percent or percentage points):

- ES / PS / NS (PAPER §2.7 "Editing metrics"): per-edit efficacy, paraphrase and neighbourhood
  scores averaged over edits. CounterFact uses ``es`` / ``ps`` / ``ns``; zsRE uses the MEMIT
  convention, teacher-forced token accuracy ``rewrite_acc`` / ``paraphrase_acc`` / ``neighbour_acc``.
- Absolute decay ΔES = ES(M_ed) − ES(M_ed_ft) (PAPER §2.7, Table 5 "ΔES").
- Relative decay rate (ES(M_ed) − ES(M_ed_ft)) / ES(M_ed) × 100 (PAPER Table 4).
- Edit Flip Ratio, EFR = |{i : M_ed,i = 1, M_ed_ft,i = 0}| / |{i : M_ed,i = 1}| × 100 (PAPER Eq. 1,
  Table 5), and its mirror image, the emergent ratio |{i : M_ed,i = 0, M_ed_ft,i = 1}| /
  |{i : M_ed,i = 0}| × 100, the share of failed edits that fine-tuning turns into successes.
- Flip categories stable / erased / emergent / impossible (PAPER Table 6).
- Downstream degradation (DS(reference) − DS(other)) / DS(reference) × 100 (PAPER Table 8).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

CONFIG_COLUMNS: tuple[str, ...] = (
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
STATES: tuple[str, ...] = ("M", "M_ed", "M_ft", "M_ed_ft")
CATEGORIES: tuple[str, ...] = ("stable", "erased", "emergent", "impossible")
INDICATORS: tuple[str, ...] = ("exact", "majority")
KINDS: tuple[str, ...] = ("counterfact", "zsre")
DS_MODES: dict[str, str] = {"generate": "ds_", "rank": "ds_rank_"}

# Per-edit score columns by dataset kind: efficacy, paraphrase (generalisation), neighbourhood (specificity).
SCORE_COLUMNS: dict[str, dict[str, str]] = {
    "counterfact": {"es": "es", "ps": "ps", "ns": "ns"},
    "zsre": {"es": "rewrite_acc", "ps": "paraphrase_acc", "ns": "neighbour_acc"},
}

# Keys of decay_metrics, in output order.
METRIC_KEYS: tuple[str, ...] = (
    "efficacy_kind",
    "indicator",
    "n_edits",
    "n_success_ed",
    "n_stable",
    "n_erased",
    "n_emergent",
    "n_impossible",
    "es_ed",
    "es_ed_ft",
    "delta_es",
    "relative_decay",
    "efr",
    "emergent_ratio",
    "ps_ed",
    "ps_ed_ft",
    "ns_ed",
    "ns_ed_ft",
)
COUNT_KEYS: tuple[str, ...] = (
    "n_edits",
    "n_success_ed",
    "n_stable",
    "n_erased",
    "n_emergent",
    "n_impossible",
)

# A token accuracy counts as "every token correct" from this value on (accuracies are means of 0/1).
_EXACT_THRESHOLD = 1.0 - 1e-9
_FEW = 5


# --------------------------------------------------------------------------------------------------
# Per-edit scores and the success indicator
# --------------------------------------------------------------------------------------------------


def efficacy_kind(table: pd.DataFrame) -> str:
    """The dataset kind of a per-edit table: ``"counterfact"`` or ``"zsre"``.

    The kind decides the efficacy rule (PAPER §2.7): CounterFact's binary ``es`` (P(o*|p) >
    P(o_c|p)) or zsRE's token accuracy ``rewrite_acc``. In order:

    1. the ``source`` column the evaluator writes (the loader's dataset name), when it names one
       kind for every row;
    2. case ids of the bundled zsRE loader (``"zsre:<n>"``), for tables written without ``source``;
    3. otherwise (a user's request file): CounterFact when ``es`` has a value, zsRE when not.

    zsRE requests edited toward ``alt`` carry the original answer as ``target_true``, so ``es`` is
    defined for them as well; their efficacy is still the token accuracy, hence the order.
    """
    if "source" in table.columns:
        sources = set(table["source"].dropna().astype(str).str.lower())
        if len(sources) == 1 and sources <= set(KINDS):
            return sources.pop()
        if len(sources & set(KINDS)) > 1:
            log.warning(
                "per-edit table mixes request sources %s; the dataset kind is read from `es`",
                sorted(sources),
            )
    if "case_id" in table.columns and len(table):
        if table["case_id"].astype(str).str.startswith("zsre:").all():
            return "zsre"
    if "es" in table.columns and table["es"].notna().any():
        return "counterfact"
    return "zsre"


def success_indicator(
    table: pd.DataFrame, indicator: str = "exact", *, kind: str | None = None
) -> pd.Series:
    """The per-edit binary success M_i of the Edit Flip Ratio (EFR, PAPER Eq. 1), one bool per row.

    - CounterFact: ``es == 1``, i.e. the new object is more likely than the true one on the rewrite
      prompt (PAPER §2.7, CF efficacy). ``indicator`` does not change this.
    - zsRE: efficacy is a token-averaged teacher-forced accuracy (``rewrite_acc``, MEMIT
      convention), and the paper leaves the binary indicator for multi-token targets undefined
      (PAPER §2.7 "Unclear"). Two readings are offered:

      ``"exact"`` (default)
          every target token is the argmax (``rewrite_acc == 1``); this matches the zsRE
          definition "argmax P_ed(·|p) = o*" for the whole answer.
      ``"majority"``
          more than half of the target tokens are the argmax (``rewrite_acc > 0.5``).

    A missing score (NaN) counts as a failure. ``kind`` overrides :func:`efficacy_kind` (used to
    judge two tables of one configuration by the same rule).
    """
    _check_indicator(indicator)
    kind = _check_kind(kind if kind is not None else efficacy_kind(table))
    if kind == "counterfact":
        _require(table, ["es"], "per-edit table")
        success = table["es"] == 1
    else:
        _require(table, ["rewrite_acc"], "per-edit table")
        accuracy = pd.to_numeric(table["rewrite_acc"], errors="coerce")
        success = accuracy >= _EXACT_THRESHOLD if indicator == "exact" else accuracy > 0.5
    return success.fillna(False).astype(bool).rename("success")


# --------------------------------------------------------------------------------------------------
# Flips (PAPER Table 6) and the decay metrics of one before/after pair
# --------------------------------------------------------------------------------------------------


def flip_table(before: pd.DataFrame, after: pd.DataFrame, indicator: str = "exact") -> pd.DataFrame:
    """Per-edit success before and after fine-tuning, with its PAPER Table 6 category.

    ``before`` holds the edited model's rows (M_ed) and ``after`` the edited-then-fine-tuned
    model's rows (M_ed_ft) for the same edit requests; they are paired on ``case_id``. Categories:

    ``stable``      success → success (the edit persists);
    ``erased``      success → failure (counted by EFR, PAPER Eq. 1);
    ``emergent``    failure → success (a reverse flip, not counted by EFR);
    ``impossible``  failure → failure (the edit never succeeds).

    Columns: ``case_id, subject, target_new, target_true, success_before, success_after, category,
    efficacy_before, efficacy_after`` (efficacy as a fraction, CF ``es`` or zsRE ``rewrite_acc``),
    plus ``answer_before, answer_after`` when either table has an ``answer`` column. Rows follow
    the order of ``before``.

    Raises ValueError when a case_id repeats within a table or the two tables cover different edits.
    """
    _check_indicator(indicator)
    _check_pairing(before, after)
    kind = _joint_kind(before, after)
    ids = before["case_id"].to_numpy()

    def aligned(values: pd.Series | np.ndarray, table: pd.DataFrame) -> np.ndarray:
        series = pd.Series(np.asarray(values), index=pd.Index(table["case_id"].to_numpy()))
        return series.loc[ids].to_numpy()

    out = pd.DataFrame({"case_id": ids})
    for column in ("subject", "target_new", "target_true"):
        if column in before.columns:
            out[column] = before[column].to_numpy()
        elif column in after.columns:
            out[column] = aligned(after[column], after)
        else:
            out[column] = np.nan
    success_before = success_indicator(before, indicator, kind=kind).to_numpy()
    success_after = aligned(success_indicator(after, indicator, kind=kind), after).astype(bool)
    out["success_before"] = success_before
    out["success_after"] = success_after
    out["category"] = _categories(success_before, success_after)
    es_column = SCORE_COLUMNS[kind]["es"]
    out["efficacy_before"] = _numeric(before, es_column).to_numpy()
    out["efficacy_after"] = aligned(_numeric(after, es_column), after)
    if "answer" in before.columns or "answer" in after.columns:
        out["answer_before"] = before["answer"].to_numpy() if "answer" in before.columns else np.nan
        out["answer_after"] = (
            aligned(after["answer"], after) if "answer" in after.columns else np.nan
        )
    return out


def decay_metrics(
    before: pd.DataFrame, after: pd.DataFrame, indicator: str = "exact"
) -> dict[str, Any]:
    """Decay of one set of edits from M_ed (``before``) to M_ed_ft (``after``).

    Returns a dict with the keys of :data:`METRIC_KEYS`:

    - ``es_ed, es_ed_ft, ps_ed, ps_ed_ft, ns_ed, ns_ed_ft``: mean ES / PS / NS in percent
      (PAPER §2.7 "Editing metrics"; CF ``es/ps/ns``, zsRE ``rewrite_acc/paraphrase_acc/
      neighbour_acc``); NaN where the score is undefined for every edit.
    - ``delta_es``: absolute decay ES(M_ed) − ES(M_ed_ft) in points (PAPER Table 5 "ΔES").
    - ``relative_decay``: (ES(M_ed) − ES(M_ed_ft)) / ES(M_ed) × 100 (PAPER Table 4 relative
      decay); NaN when ES(M_ed) is 0.
    - ``efr``: Edit Flip Ratio, |success → failure| / |success before| × 100 (PAPER Eq. 1); NaN
      when no edit succeeded before fine-tuning.
    - ``emergent_ratio``: |failure → success| / |failure before| × 100, the reverse flips that
      EFR leaves out (PAPER Table 6 "Emergent"); NaN when every edit succeeded before.
    - ``n_edits, n_success_ed, n_stable, n_erased, n_emergent, n_impossible``: edit counts.
    - ``indicator`` and ``efficacy_kind``: the success rule and dataset kind used.

    The per-edit success follows :func:`success_indicator`; pairing follows :func:`flip_table`.
    """
    flips = flip_table(before, after, indicator)
    kind = _joint_kind(before, after)
    return _metrics(before, after, flips, indicator, kind)


def downstream_degradation(ds_reference: float | None, ds_other: float | None) -> float:
    """Relative downstream drop (DS_reference − DS_other) / DS_reference × 100 (PAPER Table 8).

    By analogy with Table 8: for a fine-tuned column the reference is DS(M_ft) and the other
    DS(M_ed_ft); for "No ft" the reference is DS(M) and the other DS(M_ed). Positive values mean the
    edit cost downstream accuracy. NaN when the reference is 0 or missing.
    """
    return _relative_drop(ds_reference, ds_other)


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
    _check_indicator(indicator)
    _require(edits, ["config_id", "state", "step", "case_id"], "per-edit table")
    unknown_states = sorted(set(edits["state"].dropna().astype(str)) - set(STATES))
    if unknown_states:
        raise ValueError(
            f"unknown state(s) {unknown_states} in the per-edit table; known: {', '.join(STATES)}"
        )
    if downstream is not None:
        _require(
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
    """The column names of :func:`decay_summary`'s output, in order."""
    columns = [
        *CONFIG_COLUMNS,
        "step",
        "final",
        "efficacy_kind",
        "indicator",
        *[k for k in COUNT_KEYS if k != "n_edits"],
        "es_M",
        "es_M_ft",
        "es_ed",
        "es_ed_ft",
        "delta_es",
        "relative_decay",
        "efr",
        "emergent_ratio",
        "ps_ed",
        "ps_ed_ft",
        "ns_ed",
        "ns_ed_ft",
    ]
    if with_downstream:
        for prefix in DS_MODES.values():
            columns += [
                f"{prefix}M",
                f"{prefix}M_ed",
                f"{prefix}M_ft",
                f"{prefix}M_ed_ft",
                f"{prefix}degradation_noft",
                f"{prefix}degradation_ft",
            ]
    return columns


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
    _require(edits, ["config_id", "state", "step", "case_id"], "per-edit table")
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
    es_m = _mean_percent(_numeric(base, es_column))

    steps = sorted(int(s) for s in tuned["step"].dropna().unique())
    out: list[dict[str, Any]] = []
    if not steps:
        metrics = _metrics(before, None, None, indicator, kind)
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
        metrics = _metrics(before, after, flips, indicator, kind)
        es_m_ft = _mean_percent(_numeric(base_ft[base_ft["step"] == step], es_column))
        out.append(
            _assemble(
                config,
                step,
                step == steps[-1],
                metrics,
                es_m,
                es_m_ft,
                _downstream_values(downstream, step),
            )
        )
    evaluated = len(before)
    configured = pd.to_numeric(pd.Series([config.get("n_edits")]), errors="coerce").iloc[0]
    if _is_present(configured) and configured != evaluated:
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
    if not _is_present(row.get("n_edits")):
        row["n_edits"] = metrics["n_edits"]
    row.update({"step": int(step), "final": bool(final), "es_M": es_m, "es_M_ft": es_m_ft})
    row.update({k: v for k, v in metrics.items() if k != "n_edits"})
    row.update(downstream)
    return row


def _metrics(
    before: pd.DataFrame,
    after: pd.DataFrame | None,
    flips: pd.DataFrame | None,
    indicator: str,
    kind: str,
) -> dict[str, Any]:
    """decay_metrics' dict; with ``after`` None only the edited-model (before) values are filled."""
    columns = SCORE_COLUMNS[kind]
    success_before = success_indicator(before, indicator, kind=kind)
    n_success = int(success_before.sum())
    n_failed = len(before) - n_success
    metrics: dict[str, Any] = {key: math.nan for key in METRIC_KEYS}
    metrics.update(
        {
            "efficacy_kind": kind,
            "indicator": indicator,
            "n_edits": len(before),
            "n_success_ed": n_success,
        }
    )
    for name, column in columns.items():
        metrics[f"{name}_ed"] = _mean_percent(_numeric(before, column))
    if after is None or flips is None:
        return metrics

    counts = flips["category"].value_counts()
    for category in CATEGORIES:
        metrics[f"n_{category}"] = int(counts.get(category, 0))
    for name, column in columns.items():
        metrics[f"{name}_ed_ft"] = _mean_percent(_numeric(after, column))
    metrics["delta_es"] = metrics["es_ed"] - metrics["es_ed_ft"]
    metrics["relative_decay"] = _relative_drop(metrics["es_ed"], metrics["es_ed_ft"])
    metrics["efr"] = _percent(metrics["n_erased"], n_success)
    metrics["emergent_ratio"] = _percent(metrics["n_emergent"], n_failed)
    return metrics


def _downstream_values(downstream: pd.DataFrame | None, step: int | None) -> dict[str, float]:
    """The DS columns of one summary row; ``step`` None means no fine-tuned states."""
    if downstream is None:
        return {}
    values: dict[str, float] = {}
    for mode, prefix in DS_MODES.items():
        ds_m = _ds_mean(downstream, "M", None, mode)
        ds_m_ed = _ds_mean(downstream, "M_ed", None, mode)
        ds_m_ft = _ds_mean(downstream, "M_ft", step, mode) if step is not None else math.nan
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
    for column in CONFIG_COLUMNS[1:]:
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
                list(distinct[:_FEW]),
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


def _categories(success_before: np.ndarray, success_after: np.ndarray) -> np.ndarray:
    """PAPER Table 6 category of each edit from its success before and after fine-tuning."""
    before = np.asarray(success_before, dtype=bool)
    after = np.asarray(success_after, dtype=bool)
    return np.select(
        [before & after, before & ~after, ~before & after],
        list(CATEGORIES[:3]),
        default=CATEGORIES[3],
    ).astype(object)


def _check_pairing(before: pd.DataFrame, after: pd.DataFrame) -> None:
    """Both tables hold each case_id once and cover the same edits."""
    _require(before, ["case_id"], "before table")
    _require(after, ["case_id"], "after table")
    for name, table in (("before", before), ("after", after)):
        repeated = table["case_id"][table["case_id"].duplicated()].unique()
        if len(repeated):
            raise ValueError(
                f"case_id repeats in the {name} table ({len(repeated)} id(s), e.g. "
                f"{_few(repeated)}); pass one row per edit"
            )
    ids_before, ids_after = set(before["case_id"]), set(after["case_id"])
    if ids_before != ids_after:
        only_before, only_after = ids_before - ids_after, ids_after - ids_before
        raise ValueError(
            "before and after tables cover different edits: "
            f"{len(only_before)} case_id(s) missing after fine-tuning (e.g. {_few(only_before)}), "
            f"{len(only_after)} case_id(s) missing before (e.g. {_few(only_after)})"
        )


def _joint_kind(*tables: pd.DataFrame) -> str:
    """One dataset kind for tables judged together: CounterFact if either is judged CounterFact."""
    kinds = {efficacy_kind(table) for table in tables}
    return "counterfact" if "counterfact" in kinds else "zsre"


def _check_indicator(indicator: str) -> None:
    if indicator not in INDICATORS:
        raise ValueError(f"unknown indicator {indicator!r}; options: {', '.join(INDICATORS)}")


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown efficacy kind {kind!r}; options: {', '.join(KINDS)}")
    return kind


def _require(table: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}")


def _numeric(table: pd.DataFrame, column: str) -> pd.Series:
    """A score column as floats; all-NaN when the table lacks it."""
    if column not in table.columns:
        return pd.Series(np.nan, index=table.index, dtype=float)
    return pd.to_numeric(table[column], errors="coerce").astype(float)


def _mean_percent(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.mean() * 100) if len(values) else math.nan


def _percent(part: int, whole: int) -> float:
    return part / whole * 100 if whole else math.nan


def _relative_drop(reference: float | None, other: float | None) -> float:
    """(reference − other) / reference × 100; NaN for a zero or missing reference."""
    if not _is_present(reference) or float(reference) == 0.0 or not _is_present(other):
        return math.nan
    return (float(reference) - float(other)) / float(reference) * 100


def _is_present(value: Any) -> bool:
    if value is None:
        return False
    try:
        return not pd.isna(value)
    except (TypeError, ValueError):
        return True


def _few(ids: Iterable[Any], k: int = _FEW) -> str:
    """A short, deterministic listing of some ids."""
    shown = sorted(ids, key=str)
    text = ", ".join(repr(i) for i in shown[:k])
    return text + (", ..." if len(shown) > k else "")
