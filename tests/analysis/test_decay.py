"""Decay metrics on hand-built per-edit tables with known answers (pure pandas, no model)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from editdecay.analysis.decay import (
    decay_metrics,
    downstream_degradation,
    efficacy_kind,
    flip_table,
    success_indicator,
)
from editdecay.analysis.summary import decay_summary, flip_examples, summary_columns


def cf_table(
    es: list[float], case_ids: list | None = None, answers: list[str] | None = None
) -> pd.DataFrame:
    """A CounterFact per-edit table: binary es, ps equal to es, ns fixed at 0.5."""
    ids = case_ids if case_ids is not None else list(range(len(es)))
    table = pd.DataFrame(
        {
            "case_id": ids,
            "subject": [f"subject {i}" for i in ids],
            "target_new": [f"new {i}" for i in ids],
            "target_true": [f"true {i}" for i in ids],
            "es": es,
            "ps": es,
            "ns": [0.5] * len(es),
            "rewrite_acc": es,
            "paraphrase_acc": es,
            "neighbour_acc": [0.8] * len(es),
        }
    )
    if answers is not None:
        table["answer"] = answers
    return table


def zsre_table(rewrite_acc: list[float], case_ids: list | None = None) -> pd.DataFrame:
    """A zsRE per-edit table: no true object, so es/ps/ns are NaN."""
    ids = case_ids if case_ids is not None else list(range(len(rewrite_acc)))
    n = len(rewrite_acc)
    return pd.DataFrame(
        {
            "case_id": ids,
            "subject": [f"subject {i}" for i in ids],
            "target_new": [f"new {i}" for i in ids],
            "target_true": [np.nan] * n,
            "es": [np.nan] * n,
            "ps": [np.nan] * n,
            "ns": [np.nan] * n,
            "rewrite_acc": rewrite_acc,
            "paraphrase_acc": [0.5] * n,
            "neighbour_acc": [0.25] * n,
        }
    )


# --------------------------------------------------------------------------------------------------
# efficacy kind and the success indicator
# --------------------------------------------------------------------------------------------------


def test_efficacy_kind_from_es_values():
    assert efficacy_kind(cf_table([1, 0])) == "counterfact"
    assert efficacy_kind(zsre_table([1.0, 0.5])) == "zsre"
    assert efficacy_kind(zsre_table([1.0]).drop(columns=["es"])) == "zsre"
    one_es = zsre_table([1.0, 0.5])
    one_es.loc[1, "es"] = 0.0
    assert efficacy_kind(one_es) == "counterfact"


def test_zsre_edited_toward_alt_is_judged_by_token_accuracy():
    # zsRE requests edited toward `alt` keep the original answer as target_true, so `es` has values
    table = zsre_table([1.0, 0.5], case_ids=["zsre:0", "zsre:1"])
    table["es"] = [1.0, 1.0]
    assert efficacy_kind(table) == "zsre"
    assert success_indicator(table).tolist() == [True, False]
    with_source = table.assign(case_id=[0, 1], source="zsre")
    assert efficacy_kind(with_source) == "zsre"
    assert efficacy_kind(cf_table([1, 0]).assign(source="counterfact")) == "counterfact"
    # a user's request file: the `es` rule
    assert efficacy_kind(with_source.assign(source="user")) == "counterfact"


def test_mixed_sources_fall_back_on_es(caplog):
    table = cf_table([1, 0]).assign(source=["counterfact", "zsre"])
    assert efficacy_kind(table) == "counterfact"
    assert "mixes request sources" in caplog.text


def test_zsre_alt_decay_uses_rewrite_accuracy():
    before = zsre_table([1.0, 1.0, 1.0], case_ids=["zsre:0", "zsre:1", "zsre:2"]).assign(es=1.0)
    after = zsre_table([1.0, 0.5, 0.0], case_ids=["zsre:0", "zsre:1", "zsre:2"]).assign(es=1.0)
    m = decay_metrics(before, after)
    assert m["efficacy_kind"] == "zsre"
    assert m["es_ed_ft"] == pytest.approx(50.0)
    assert m["n_erased"] == 2


def test_counterfact_success_is_es_equal_one():
    table = cf_table([1, 0, 1, np.nan])
    table["rewrite_acc"] = [0.0, 1.0, 0.0, 1.0]  # must not be consulted for CounterFact
    assert success_indicator(table).tolist() == [True, False, True, False]
    assert success_indicator(table, "majority").tolist() == [True, False, True, False]


def test_zsre_exact_and_majority_differ_on_two_of_three_tokens():
    table = zsre_table([1.0, 2 / 3, 1 / 3, 0.5, np.nan])
    assert success_indicator(table, "exact").tolist() == [True, False, False, False, False]
    assert success_indicator(table, "majority").tolist() == [True, True, False, False, False]


def test_zsre_indicator_changes_the_flip_metrics():
    before = zsre_table([1.0, 1.0])
    after = zsre_table([2 / 3, 1.0])
    exact = decay_metrics(before, after, indicator="exact")
    majority = decay_metrics(before, after, indicator="majority")
    assert exact["n_erased"] == 1 and exact["efr"] == pytest.approx(50.0)
    assert majority["n_erased"] == 0 and majority["efr"] == pytest.approx(0.0)
    assert majority["n_stable"] == 2
    # the mean efficacy does not depend on the indicator
    assert (
        exact["es_ed_ft"] == pytest.approx(majority["es_ed_ft"]) == pytest.approx(100 * (5 / 3) / 2)
    )
    assert exact["indicator"] == "exact" and majority["indicator"] == "majority"


def test_unknown_indicator_is_rejected_by_name():
    with pytest.raises(ValueError, match="'strict'.*exact, majority"):
        success_indicator(zsre_table([1.0]), "strict")
    with pytest.raises(ValueError, match="'strict'"):
        decay_metrics(zsre_table([1.0]), zsre_table([1.0]), indicator="strict")


# --------------------------------------------------------------------------------------------------
# flip table (PAPER Table 6)
# --------------------------------------------------------------------------------------------------


def test_flip_categories_follow_table_6():
    before = cf_table(
        [1, 1, 0, 0],
        case_ids=["a", "b", "c", "d"],
        answers=["English", "Lecanorales", "United States", "Qaleh Zari"],
    )
    after = cf_table(
        [1, 0, 1, 0],
        case_ids=["a", "b", "c", "d"],
        answers=["English", "Ramalinaceae", "English", "Qaleh Zari"],
    )
    flips = flip_table(before, after)
    assert flips["category"].tolist() == ["stable", "erased", "emergent", "impossible"]
    assert flips["success_before"].tolist() == [True, True, False, False]
    assert flips["success_after"].tolist() == [True, False, True, False]
    assert flips["answer_before"].tolist() == [
        "English",
        "Lecanorales",
        "United States",
        "Qaleh Zari",
    ]
    assert flips["answer_after"].tolist() == ["English", "Ramalinaceae", "English", "Qaleh Zari"]
    assert flips["efficacy_after"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert list(flips.columns) == [
        "case_id",
        "subject",
        "target_new",
        "target_true",
        "success_before",
        "success_after",
        "category",
        "efficacy_before",
        "efficacy_after",
        "answer_before",
        "answer_after",
    ]


def test_flip_table_pairs_by_case_id_not_by_row_order():
    before = cf_table([1, 1, 0], case_ids=[10, 20, 30])
    after = cf_table([0, 1, 1], case_ids=[10, 20, 30]).iloc[::-1].reset_index(drop=True)
    # after, by case id: 10 → 0, 20 → 1, 30 → 1
    flips = flip_table(before, after)
    assert flips["case_id"].tolist() == [10, 20, 30]
    assert flips["category"].tolist() == ["erased", "stable", "emergent"]
    assert flips["efficacy_after"].tolist() == [0.0, 1.0, 1.0]


def test_flip_table_without_answers_has_no_answer_columns():
    flips = flip_table(zsre_table([1.0]), zsre_table([0.5]))
    assert "answer_before" not in flips.columns and "answer_after" not in flips.columns
    assert flips["efficacy_before"].tolist() == [1.0] and flips["efficacy_after"].tolist() == [0.5]
    assert flips["category"].tolist() == ["erased"]


def test_mismatched_case_ids_raise_and_name_them():
    before = cf_table([1, 1, 1], case_ids=["a", "b", "c"])
    after = cf_table([1, 1, 1], case_ids=["a", "b", "z"])
    with pytest.raises(
        ValueError, match=r"missing after fine-tuning \(e\.g\. 'c'\).*missing before \(e\.g\. 'z'\)"
    ):
        flip_table(before, after)
    with pytest.raises(ValueError, match="'c'"):
        decay_metrics(before, after)


def test_repeated_case_id_raises():
    before = cf_table([1, 1], case_ids=["a", "a"])
    with pytest.raises(ValueError, match="repeats in the before table"):
        flip_table(before, cf_table([1], case_ids=["a"]))


# --------------------------------------------------------------------------------------------------
# decay metrics
# --------------------------------------------------------------------------------------------------


def test_reverse_flips_hide_decay_from_delta_es_but_not_from_efr():
    # 4 successes before; 2 of them erased, 2 failures turn into successes, 1 never succeeds
    before = cf_table([1, 1, 1, 1, 0, 0, 0])
    after = cf_table([1, 1, 0, 0, 1, 1, 0])
    m = decay_metrics(before, after)
    assert m["es_ed"] == pytest.approx(400 / 7)
    assert m["es_ed_ft"] == pytest.approx(400 / 7)
    assert m["delta_es"] == pytest.approx(0.0)
    assert m["relative_decay"] == pytest.approx(0.0)
    assert m["efr"] == pytest.approx(50.0)
    assert m["emergent_ratio"] == pytest.approx(200 / 3)
    assert (m["n_edits"], m["n_success_ed"]) == (7, 4)
    assert (m["n_stable"], m["n_erased"], m["n_emergent"], m["n_impossible"]) == (2, 2, 2, 1)
    assert m["efficacy_kind"] == "counterfact"
    assert m["ps_ed"] == pytest.approx(400 / 7) and m["ns_ed"] == pytest.approx(50.0)


def test_relative_decay_reproduces_table_4_example():
    # GPT-J, MEMIT-100, zsRE, LoRA: ES 99.07 → 88.79 gives 10.38 % (Table 4) and ΔES 10.28 (Table 5)
    before = zsre_table([0.9907, 0.9907])
    after = zsre_table([0.8879, 0.8879])
    m = decay_metrics(before, after)
    assert m["efficacy_kind"] == "zsre"
    assert m["es_ed"] == pytest.approx(99.07)
    assert m["es_ed_ft"] == pytest.approx(88.79)
    assert round(m["relative_decay"], 2) == 10.38
    assert round(m["delta_es"], 2) == 10.28
    assert m["ps_ed"] == pytest.approx(50.0) and m["ns_ed_ft"] == pytest.approx(25.0)


def test_ratios_are_nan_without_a_denominator():
    never = decay_metrics(cf_table([0, 0]), cf_table([1, 0]))
    assert math.isnan(never["efr"]) and math.isnan(never["relative_decay"])
    assert never["emergent_ratio"] == pytest.approx(50.0)
    always = decay_metrics(cf_table([1, 1]), cf_table([1, 0]))
    assert math.isnan(always["emergent_ratio"])
    assert always["efr"] == pytest.approx(50.0) and always["relative_decay"] == pytest.approx(50.0)


def test_downstream_degradation():
    assert downstream_degradation(80.0, 60.0) == pytest.approx(25.0)
    # Table 7 Llama-2, 100 edits: DS 1.77 → 2.15 after editing is a negative degradation
    assert downstream_degradation(1.77, 2.15) == pytest.approx(-21.47, abs=0.01)
    assert math.isnan(downstream_degradation(0.0, 10.0))
    assert math.isnan(downstream_degradation(float("nan"), 10.0))
    assert math.isnan(downstream_degradation(None, 10.0))
    assert math.isnan(downstream_degradation(50.0, float("nan")))


# --------------------------------------------------------------------------------------------------
# decay summary over configurations and checkpoints
# --------------------------------------------------------------------------------------------------

CONFIG_A = {
    "config_id": "a-cf-lora",
    "model": "tiny",
    "edit_method": "memit",
    "edit_data": "counterfact",
    "n_edits": 4,
    "ft_method": "lora",
    "ft_data": "commonsense",
    "ft_layers": "all",
    "seed": 0,
}
CONFIG_B = {
    "config_id": "b-zsre-full",
    "model": "tiny",
    "edit_method": "alphaedit",
    "edit_data": "zsre",
    "n_edits": 2,
    "ft_method": "full",
    "ft_data": "commonsense",
    "ft_layers": "all",
    "seed": 1,
}
CONFIG_C = {
    "config_id": "c-cf-none",
    "model": "tiny",
    "edit_method": "memit",
    "edit_data": "counterfact",
    "n_edits": 2,
    "ft_method": "none",
    "ft_data": "none",
    "ft_layers": "none",
    "seed": 0,
}


def rows(config: dict, state: str, step: int, table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(**config, state=state, step=step)


def study_edits() -> pd.DataFrame:
    parts = [
        # config A (CounterFact): checkpoints at steps 5 and 10
        rows(CONFIG_A, "M", 0, cf_table([0, 0, 0, 1])),
        rows(CONFIG_A, "M_ed", 0, cf_table([1, 1, 1, 0])),
        rows(CONFIG_A, "M_ft", 5, cf_table([0, 0, 0, 0])),
        rows(CONFIG_A, "M_ed_ft", 5, cf_table([1, 1, 1, 0])),
        rows(CONFIG_A, "M_ft", 10, cf_table([0, 0, 1, 1])),
        rows(CONFIG_A, "M_ed_ft", 10, cf_table([1, 0, 0, 1])),
        # config B (zsRE): only the final checkpoint, no M_ft rows
        rows(CONFIG_B, "M", 0, zsre_table([0.0, 1 / 3])),
        rows(CONFIG_B, "M_ed", 0, zsre_table([1.0, 2 / 3])),
        rows(CONFIG_B, "M_ed_ft", 10, zsre_table([0.5, 1.0])),
        # config C: edited, never fine-tuned
        rows(CONFIG_C, "M", 0, cf_table([0, 1])),
        rows(CONFIG_C, "M_ed", 0, cf_table([1, 1])),
    ]
    # listed out of order on purpose: the summary sorts by config and step
    return pd.concat(parts[::-1], ignore_index=True)


def ds_rows(
    config_id: str, state: str, step: int, mode: str, accuracies: dict[str, float]
) -> list[dict]:
    out = [
        {
            "config_id": config_id,
            "state": state,
            "step": step,
            "task": task,
            "mode": mode,
            "accuracy": acc,
            "n": 50,
        }
        for task, acc in accuracies.items()
    ]
    # an "average" row that disagrees with the tasks: it must not be used when task rows exist
    out.append(
        {
            "config_id": config_id,
            "state": state,
            "step": step,
            "task": "average",
            "mode": mode,
            "accuracy": 0.99,
            "n": 100,
        }
    )
    return out


def study_downstream() -> pd.DataFrame:
    a = CONFIG_A["config_id"]
    c = CONFIG_C["config_id"]
    records = [
        *ds_rows(a, "M", 0, "generate", {"boolq": 0.5, "piqa": 0.3}),  # 40
        *ds_rows(a, "M_ed", 0, "generate", {"boolq": 0.3, "piqa": 0.3}),  # 30
        *ds_rows(a, "M_ft", 5, "generate", {"boolq": 0.6, "piqa": 0.6}),  # 60, no M_ed_ft at step 5
        *ds_rows(a, "M_ft", 10, "generate", {"boolq": 0.8, "piqa": 0.6}),  # 70
        *ds_rows(a, "M_ed_ft", 10, "generate", {"boolq": 0.7, "piqa": 0.56}),  # 63
        *ds_rows(a, "M", 0, "rank", {"boolq": 0.5, "piqa": 0.5}),  # 50
        *ds_rows(a, "M_ed", 0, "rank", {"boolq": 0.55, "piqa": 0.55}),  # 55
        *ds_rows(a, "M_ft", 10, "rank", {"boolq": 0.8, "piqa": 0.8}),  # 80
        *ds_rows(a, "M_ed_ft", 10, "rank", {"boolq": 0.6, "piqa": 0.6}),  # 60
        *ds_rows(c, "M", 0, "generate", {"boolq": 0.4}),  # 40
        *ds_rows(c, "M_ed", 0, "generate", {"boolq": 0.2}),  # 20
    ]
    return pd.DataFrame(records)


def test_decay_summary_rows_steps_and_final_flag():
    summary = decay_summary(study_edits())
    assert list(summary.columns) == summary_columns(with_downstream=False)
    assert not any(c.startswith("ds_") for c in summary.columns)
    keys = list(zip(summary["config_id"], summary["step"], summary["final"]))
    assert keys == [
        ("a-cf-lora", 5, False),
        ("a-cf-lora", 10, True),
        ("b-zsre-full", 10, True),
        ("c-cf-none", 0, True),
    ]
    a5, a10, b10, c0 = (summary.iloc[i] for i in range(4))
    assert (a5["model"], a5["ft_method"], a5["seed"], a5["n_edits"]) == ("tiny", "lora", 0, 4)

    assert a5["es_M"] == pytest.approx(25.0) and a5["es_M_ft"] == pytest.approx(0.0)
    assert a5["es_ed"] == pytest.approx(75.0) and a5["es_ed_ft"] == pytest.approx(75.0)
    assert a5["efr"] == pytest.approx(0.0) and a5["delta_es"] == pytest.approx(0.0)
    assert (a5["n_stable"], a5["n_erased"], a5["n_emergent"], a5["n_impossible"]) == (3, 0, 0, 1)

    assert a10["es_M_ft"] == pytest.approx(50.0)
    assert a10["es_ed_ft"] == pytest.approx(50.0)
    assert a10["delta_es"] == pytest.approx(25.0)
    assert a10["relative_decay"] == pytest.approx(100 / 3)
    assert a10["efr"] == pytest.approx(200 / 3)
    assert a10["emergent_ratio"] == pytest.approx(100.0)
    assert (a10["n_stable"], a10["n_erased"], a10["n_emergent"], a10["n_impossible"]) == (
        1,
        2,
        1,
        0,
    )

    assert b10["efficacy_kind"] == "zsre"
    assert b10["es_M"] == pytest.approx(100 / 6) and math.isnan(b10["es_M_ft"])
    assert b10["es_ed"] == pytest.approx(250 / 3) and b10["es_ed_ft"] == pytest.approx(75.0)
    assert (b10["n_success_ed"], b10["n_erased"], b10["n_emergent"]) == (1, 1, 1)
    assert b10["efr"] == pytest.approx(100.0) and b10["emergent_ratio"] == pytest.approx(100.0)

    assert c0["ft_method"] == "none"
    assert c0["es_ed"] == pytest.approx(100.0) and c0["es_M"] == pytest.approx(50.0)
    assert c0["n_edits"] == 2 and c0["n_success_ed"] == 2
    for column in (
        "es_ed_ft",
        "ps_ed_ft",
        "ns_ed_ft",
        "delta_es",
        "relative_decay",
        "efr",
        "emergent_ratio",
        "es_M_ft",
    ):
        assert math.isnan(c0[column]), column
    for column in ("n_stable", "n_erased", "n_emergent", "n_impossible"):
        assert pd.isna(c0[column]), column


def test_decay_summary_majority_indicator_reaches_the_zsre_config():
    summary = decay_summary(study_edits(), indicator="majority").set_index("config_id")
    b10 = summary.loc["b-zsre-full"]
    # majority: 2/3 counts as success before, 0.5 as failure after → both flips change
    assert (b10["n_success_ed"], b10["n_stable"], b10["n_erased"]) == (2, 1, 1)
    assert b10["efr"] == pytest.approx(50.0) and math.isnan(b10["emergent_ratio"])
    assert (summary["indicator"] == "majority").all()


def test_decay_summary_downstream_columns_and_degradation():
    summary = decay_summary(study_edits(), downstream=study_downstream())
    assert list(summary.columns) == summary_columns(with_downstream=True)
    by_key = summary.set_index(["config_id", "step"])
    a5, a10 = by_key.loc[("a-cf-lora", 5)], by_key.loc[("a-cf-lora", 10)]

    for row in (a5, a10):
        assert row["ds_M"] == pytest.approx(40.0) and row["ds_M_ed"] == pytest.approx(30.0)
        assert row["ds_degradation_noft"] == pytest.approx(25.0)
        assert row["ds_rank_M"] == pytest.approx(50.0) and row["ds_rank_M_ed"] == pytest.approx(
            55.0
        )
        assert row["ds_rank_degradation_noft"] == pytest.approx(-10.0)

    assert a10["ds_M_ft"] == pytest.approx(70.0) and a10["ds_M_ed_ft"] == pytest.approx(63.0)
    assert a10["ds_degradation_ft"] == pytest.approx(10.0)
    assert a10["ds_rank_M_ft"] == pytest.approx(80.0) and a10["ds_rank_M_ed_ft"] == pytest.approx(
        60.0
    )
    assert a10["ds_rank_degradation_ft"] == pytest.approx(25.0)

    assert a5["ds_M_ft"] == pytest.approx(60.0)
    assert math.isnan(a5["ds_M_ed_ft"]) and math.isnan(a5["ds_degradation_ft"])
    assert math.isnan(a5["ds_rank_M_ft"]) and math.isnan(a5["ds_rank_degradation_ft"])

    b10 = by_key.loc[("b-zsre-full", 10)]
    assert all(math.isnan(b10[c]) for c in summary.columns if c.startswith("ds_"))

    c0 = by_key.loc[("c-cf-none", 0)]
    assert c0["ds_M"] == pytest.approx(40.0) and c0["ds_M_ed"] == pytest.approx(20.0)
    assert c0["ds_degradation_noft"] == pytest.approx(50.0)
    assert (
        math.isnan(c0["ds_M_ft"])
        and math.isnan(c0["ds_M_ed_ft"])
        and math.isnan(c0["ds_degradation_ft"])
    )


def test_decay_summary_uses_the_average_row_when_it_is_the_only_one():
    ds = study_downstream()
    ds = ds[(ds["task"] == "average") | (ds["config_id"] != "c-cf-none")]
    summary = decay_summary(study_edits(), downstream=ds).set_index("config_id")
    assert summary.loc["c-cf-none", "ds_M"] == pytest.approx(99.0)


def test_decay_summary_names_the_config_when_edits_do_not_pair():
    edits = study_edits()
    drop = (
        (edits["config_id"] == "a-cf-lora")
        & (edits["state"] == "M_ed_ft")
        & (edits["step"] == 10)
        & (edits["case_id"] == 3)
    )
    with pytest.raises(ValueError, match=r"config a-cf-lora, step 10: .*\(e\.g\. 3\)"):
        decay_summary(edits[~drop])


# --------------------------------------------------------------------------------------------------
# flip examples
# --------------------------------------------------------------------------------------------------


def test_flip_examples_are_capped_and_sorted_by_case_id():
    ids = [7, 3, 9, 1, 5, 2, 8]
    config = {**CONFIG_A, "n_edits": len(ids)}
    before = cf_table([1, 1, 1, 1, 0, 0, 1], case_ids=ids)
    step5 = cf_table([1, 1, 1, 1, 0, 0, 1], case_ids=ids)
    step10 = cf_table([1, 1, 1, 0, 1, 0, 0], case_ids=ids)
    edits = pd.concat(
        [
            rows(config, "M_ed", 0, before),
            rows(config, "M_ed_ft", 5, step5),
            rows(config, "M_ed_ft", 10, step10),
        ],
        ignore_index=True,
    )

    final = flip_examples(edits, "a-cf-lora", per_category=2)
    # step 10: stable 7, 3, 9 → first two by id: 3, 7; erased 1, 8; emergent 5; impossible 2
    assert list(zip(final["category"], final["case_id"])) == [
        ("stable", 3),
        ("stable", 7),
        ("erased", 1),
        ("erased", 8),
        ("emergent", 5),
        ("impossible", 2),
    ]

    early = flip_examples(edits, "a-cf-lora", step=5, per_category=1)
    assert list(zip(early["category"], early["case_id"])) == [("stable", 1), ("impossible", 2)]

    with pytest.raises(ValueError, match=r"step 7.*\[5, 10\]"):
        flip_examples(edits, "a-cf-lora", step=7)
    with pytest.raises(ValueError, match="no rows"):
        flip_examples(edits, "missing")


def test_a_longer_edited_run_is_compared_with_the_base_run_s_final_step():
    # the edited model was fine-tuned 14 steps (an option added examples), the base model 10
    edits = pd.concat(
        [
            rows(CONFIG_A, "M", 0, cf_table([0, 0])),
            rows(CONFIG_A, "M_ed", 0, cf_table([1, 1])),
            rows(CONFIG_A, "M_ft", 5, cf_table([0, 0])),
            rows(CONFIG_A, "M_ed_ft", 5, cf_table([1, 0])),
            rows(CONFIG_A, "M_ft", 10, cf_table([1, 0])),
            rows(CONFIG_A, "M_ed_ft", 14, cf_table([1, 1])),
        ],
        ignore_index=True,
    )
    downstream = pd.DataFrame(
        ds_rows("a-cf-lora", "M_ft", 10, "rank", {"boolq": 0.4})
        + ds_rows("a-cf-lora", "M_ed_ft", 14, "rank", {"boolq": 0.3})
        + ds_rows("a-cf-lora", "M_ft", 5, "rank", {"boolq": 0.6})
        + ds_rows("a-cf-lora", "M_ed_ft", 5, "rank", {"boolq": 0.5})
    )
    summary = decay_summary(edits, downstream).set_index("step")
    assert summary.loc[14, "es_M_ft"] == pytest.approx(50.0)  # M_ft's final step, 10
    assert summary.loc[14, "ds_rank_M_ft"] == pytest.approx(40.0)
    assert summary.loc[5, "ds_rank_M_ft"] == pytest.approx(60.0)  # earlier steps pair exactly
