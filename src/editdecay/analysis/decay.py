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
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ..schema import EFFICACY_KINDS as KINDS
from ..schema import FLIP_CATEGORIES as CATEGORIES
from ..schema import INDICATORS

log = logging.getLogger(__name__)

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
FEW = 5  # ids listed in a message


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
    check_indicator(indicator)
    kind = _check_kind(kind if kind is not None else efficacy_kind(table))
    if kind == "counterfact":
        require_columns(table, ["es"], "per-edit table")
        success = table["es"] == 1
    else:
        require_columns(table, ["rewrite_acc"], "per-edit table")
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
    check_indicator(indicator)
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
    out["efficacy_before"] = numeric_column(before, es_column).to_numpy()
    out["efficacy_after"] = aligned(numeric_column(after, es_column), after)
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
    return pair_metrics(before, after, flips, indicator, kind)


def downstream_degradation(ds_reference: float | None, ds_other: float | None) -> float:
    """Relative downstream drop (DS_reference − DS_other) / DS_reference × 100 (PAPER Table 8).

    By analogy with Table 8: for a fine-tuned column the reference is DS(M_ft) and the other
    DS(M_ed_ft); for "No ft" the reference is DS(M) and the other DS(M_ed). Positive values mean the
    edit cost downstream accuracy. NaN when the reference is 0 or missing.
    """
    return relative_drop(ds_reference, ds_other)


def pair_metrics(
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
        metrics[f"{name}_ed"] = mean_percent(numeric_column(before, column))
    if after is None or flips is None:
        return metrics

    counts = flips["category"].value_counts()
    for category in CATEGORIES:
        metrics[f"n_{category}"] = int(counts.get(category, 0))
    for name, column in columns.items():
        metrics[f"{name}_ed_ft"] = mean_percent(numeric_column(after, column))
    metrics["delta_es"] = metrics["es_ed"] - metrics["es_ed_ft"]
    metrics["relative_decay"] = relative_drop(metrics["es_ed"], metrics["es_ed_ft"])
    metrics["efr"] = percent(metrics["n_erased"], n_success)
    metrics["emergent_ratio"] = percent(metrics["n_emergent"], n_failed)
    return metrics


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


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
    require_columns(before, ["case_id"], "before table")
    require_columns(after, ["case_id"], "after table")
    for name, table in (("before", before), ("after", after)):
        repeated = table["case_id"][table["case_id"].duplicated()].unique()
        if len(repeated):
            raise ValueError(
                f"case_id repeats in the {name} table ({len(repeated)} id(s), e.g. "
                f"{few(repeated)}); pass one row per edit"
            )
    ids_before, ids_after = set(before["case_id"]), set(after["case_id"])
    if ids_before != ids_after:
        only_before, only_after = ids_before - ids_after, ids_after - ids_before
        raise ValueError(
            "before and after tables cover different edits: "
            f"{len(only_before)} case_id(s) missing after fine-tuning (e.g. {few(only_before)}), "
            f"{len(only_after)} case_id(s) missing before (e.g. {few(only_after)})"
        )


def _joint_kind(*tables: pd.DataFrame) -> str:
    """One dataset kind for tables judged together: CounterFact if either is judged CounterFact."""
    kinds = {efficacy_kind(table) for table in tables}
    return "counterfact" if "counterfact" in kinds else "zsre"


def check_indicator(indicator: str) -> None:
    if indicator not in INDICATORS:
        raise ValueError(f"unknown indicator {indicator!r}; options: {', '.join(INDICATORS)}")


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown efficacy kind {kind!r}; options: {', '.join(KINDS)}")
    return kind


def require_columns(table: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}")


def numeric_column(table: pd.DataFrame, column: str) -> pd.Series:
    """A score column as floats; all-NaN when the table lacks it."""
    if column not in table.columns:
        return pd.Series(np.nan, index=table.index, dtype=float)
    return pd.to_numeric(table[column], errors="coerce").astype(float)


def mean_percent(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.mean() * 100) if len(values) else math.nan


def percent(part: int, whole: int) -> float:
    return part / whole * 100 if whole else math.nan


def relative_drop(reference: float | None, other: float | None) -> float:
    """(reference − other) / reference × 100; NaN for a zero or missing reference."""
    if not is_present(reference) or float(reference) == 0.0 or not is_present(other):
        return math.nan
    return (float(reference) - float(other)) / float(reference) * 100


def is_present(value: Any) -> bool:
    if value is None:
        return False
    try:
        return not pd.isna(value)
    except (TypeError, ValueError):
        return True


def few(ids: Iterable[Any], k: int = FEW) -> str:
    """A short, deterministic listing of some ids."""
    shown = sorted(ids, key=str)
    text = ", ".join(repr(i) for i in shown[:k])
    return text + (", ..." if len(shown) > k else "")
