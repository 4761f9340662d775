"""Claim checks on hand-built decay tables with known verdicts, and the paired t-test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from editdecay.analysis.claims import (
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    NOT_TESTABLE,
    NOT_TESTED,
    VERDICTS,
    check_claim,
    check_claims,
    check_claims_per_model,
    final_for_claims,
    main_rows,
    seed_spreads,
    t_tests,
)
from editdecay.analysis.stats import paired_t_test
from editdecay.schema import DECAY

N = 1000  # edits per configuration: a small binomial SE, so seed noise decides where there are seeds


def row(
    edit_method="memit",
    edit_data="counterfact",
    n_edits=N,
    ft_method="lora",
    ft_data="commonsense",
    ft_layers="all",
    seed=0,
    delta=None,
    es_ed=100.0,
    step=40,
    final=True,
    efr=None,
    n_emergent=0,
    ds_ft=60.0,
    ds_ed_ft=57.0,
    model="m",
):
    """One decay.csv row; `delta` is ΔES in points (es_ed_ft = es_ed − delta)."""
    kind = "zsre" if edit_data == "zsre" else "counterfact"
    none = ft_method == "none"
    r = DECAY.row(
        **{
            "config_id": f"{model}.{edit_method}-{edit_data}{n_edits}.{ft_method}-{ft_data}-{ft_layers}.s{seed}",
            "model": model,
            "edit_method": edit_method,
            "edit_data": edit_data,
            "n_edits": n_edits,
            "ft_method": ft_method,
            "ft_data": "" if none else ft_data,
            "ft_layers": ft_layers,
            "seed": seed,
            "step": 0 if none else step,
            "final": final,
            "efficacy_kind": kind,
            "indicator": "exact",
            "es_M": 20.0,
            "es_ed": es_ed,
            "n_success_ed": int(round(es_ed / 100 * n_edits)),
            "ds_M": 40.0,
            "ds_M_ed": 39.0,
        }
    )
    if none:
        return r
    es_after = es_ed - delta
    erased = int(round(delta / 100 * n_edits)) + n_emergent
    r.update(
        {
            "es_ed_ft": es_after,
            "delta_es": delta,
            "relative_decay": 100 * delta / es_ed,
            "efr": efr if efr is not None else 100 * erased / r["n_success_ed"],
            "n_erased": erased,
            "n_emergent": n_emergent,
            "n_stable": r["n_success_ed"] - erased,
            "n_impossible": 0,
            "ds_M_ft": ds_ft,
            "ds_M_ed_ft": ds_ed_ft,
            "ds_degradation_ft": 100 * (ds_ft - ds_ed_ft) / ds_ft,
        }
    )
    return r


def paper_like(edit_method, edit_data, n_edits, ft_method, seed, jitter=0.2, alphaedit=10.0):
    """ΔES in the paper's directions: AlphaEdit, zsRE, more edits and full FT all decay more."""
    delta = (
        20.0
        + (alphaedit if edit_method == "alphaedit" else 0.0)
        + (10.0 if edit_data == "zsre" else 0.0)
    )
    delta += 5.0 if n_edits == N else 0.0
    delta += {"lora": 0.0, "dora": 1.0, "full": 15.0}[ft_method]
    return delta + (jitter if seed == 0 else -jitter)


def grid(decay=paper_like, seeds=(0, 1), fts=("lora", "dora", "full"), counts=(100, N), **kw):
    rows = []
    for method in ("memit", "alphaedit"):
        for data in ("counterfact", "zsre"):
            for n in counts:
                rows.append(row(method, data, n, "none", model=kw.get("model", "m")))
                for ft in fts:
                    for seed in seeds:
                        rows.append(
                            row(
                                method,
                                data,
                                n,
                                ft,
                                seed=seed,
                                delta=decay(method, data, n, ft, seed),
                                **kw,
                            )
                        )
    return rows


def tables(rows, downstream=None):
    out = {"decay": pd.DataFrame(rows)}
    if downstream is not None:
        out["downstream"] = downstream
    return out


# --------------------------------------------------------------------------- the t-test


def test_t_tests_table_per_ft_method():
    rows = grid(seeds=(0,))
    table = t_tests(pd.DataFrame(rows))
    assert list(table["ft_method"]) == ["LoRA", "DoRA", "Full FT"]
    assert set(table["pairs"]) == {8}
    lora = [r for r in rows if r["ft_method"] == "lora"]
    expected = paired_t_test([r["es_ed"] for r in lora], [r["es_ed_ft"] for r in lora])
    got = table[table["ft_method"] == "LoRA"].iloc[0]
    assert got["t"] == pytest.approx(expected.t) and got["p"] == pytest.approx(expected.p)
    assert got["paper p"] == "4.46e-5"


# --------------------------------------------------------------------------- verdicts


def test_paper_like_run_holds():
    results = check_claims(tables(grid()))
    verdicts = {r.id: r.verdict for r in results}
    assert [r.id for r in results] == list(range(1, 16))
    assert all(r.verdict in VERDICTS for r in results)
    for cid in (1, 2, 3, 4, 5, 6):
        assert verdicts[cid] == HOLDS, results[cid - 1]
    assert verdicts[12] == verdicts[13] == verdicts[8] == NOT_TESTED
    assert (
        verdicts[9] == verdicts[10] == NOT_TESTED
    )  # no HotpotQA, no selective layers in this grid
    assert "seed-to-seed" in results[3].detail


def test_claims_per_model_judge_each_model_on_its_own_rows():
    def memit_more_fragile(*args):
        return paper_like(*args, alphaedit=-10.0)

    rows = grid(model="a") + grid(memit_more_fragile, model="b")
    per_model = check_claims_per_model(tables(rows))
    assert list(per_model) == ["a", "b"]
    assert [r.id for r in per_model["b"]] == list(range(1, 16))
    assert per_model["a"][3].verdict == HOLDS and per_model["b"][3].verdict == DOES_NOT_HOLD
    assert "models a;" in per_model["a"][3].detail and "models b;" in per_model["b"][3].detail
    pooled = check_claims(tables(rows))
    assert "models a/b;" in pooled[3].detail
    # claims the two models agree on stay the same verdict alone and together
    assert per_model["a"][0].verdict == per_model["b"][0].verdict == pooled[0].verdict == HOLDS


def test_reversed_direction_does_not_hold():
    def memit_more_fragile(*args):
        return paper_like(*args, alphaedit=-10.0)

    result = check_claim(4, tables(grid(memit_more_fragile)))
    assert result.verdict == DOES_NOT_HOLD
    assert "alphaedit" in result.ours and "memit" in result.ours


def test_difference_inside_seed_noise_is_inconclusive():
    def noisy(*args):
        return paper_like(*args[:4], args[4], jitter=15.0, alphaedit=3.0)

    rows = grid(noisy)
    result = check_claim(4, tables(rows))
    assert result.verdict == INCONCLUSIVE
    assert "seed-to-seed SD" in result.detail
    # the same 3-point gap with quiet seeds is outside the noise
    quiet = grid(lambda *a: paper_like(*a, alphaedit=3.0))
    assert check_claim(4, tables(quiet)).verdict == HOLDS


def test_binomial_fallback_without_seeds():
    def small_gap(*args):
        return paper_like(*args, alphaedit=3.0)

    many = check_claim(4, tables(grid(small_gap, seeds=(0,))))
    assert many.verdict == HOLDS and "binomial" in many.detail
    few = check_claim(4, tables(grid(small_gap, seeds=(0,), counts=(10, 20))))
    assert few.verdict == INCONCLUSIVE and "binomial" in few.detail


def test_missing_configurations_are_not_tested():
    only_lora = tables(grid(fts=("lora",), seeds=(0,)))
    assert check_claim(2, only_lora).verdict == NOT_TESTED
    assert check_claim(3, only_lora).verdict == NOT_TESTED
    assert check_claim(15, only_lora).verdict == NOT_TESTED
    assert check_claim(9, only_lora).verdict == NOT_TESTED
    assert check_claim(10, only_lora).verdict == NOT_TESTED
    one_count = tables(grid(counts=(N,)))
    assert check_claim(5, one_count).verdict == NOT_TESTED
    cf_only = tables([r for r in grid() if r["edit_data"] == "counterfact"])
    assert check_claim(6, cf_only).verdict == NOT_TESTED
    edited_only = tables([r for r in grid() if r["ft_method"] == "none"])
    assert check_claim(1, edited_only).verdict == NOT_TESTED
    assert check_claim(7, edited_only).verdict == NOT_TESTED
    assert check_claim(11, edited_only).verdict == NOT_TESTED


def test_claim_1_decay_and_no_decay():
    assert check_claim(1, tables(grid())).verdict == HOLDS
    gains = check_claim(1, tables(grid(lambda *a: -5.0 + (0.2 if a[4] == 0 else -0.2))))
    assert gains.verdict == DOES_NOT_HOLD


def test_claim_2_full_ft_erases_less():
    def full_gentle(m, d, n, ft, seed):
        return paper_like(m, d, n, ft, seed) - (30.0 if ft == "full" else 0.0)

    assert check_claim(2, tables(grid(full_gentle))).verdict == DOES_NOT_HOLD


def test_claim_3_equivalence():
    assert check_claim(3, tables(grid())).verdict == HOLDS  # DoRA 1 point above LoRA

    def dora_far(m, d, n, ft, seed):
        return paper_like(m, d, n, ft, seed) + (20.0 if ft == "dora" else 0.0)

    assert check_claim(3, tables(grid(dora_far))).verdict == DOES_NOT_HOLD

    def dora_noisy(m, d, n, ft, seed):
        return paper_like(m, d, n, ft, seed, jitter=12.0) + (4.0 if ft == "dora" else 0.0)

    assert check_claim(3, tables(grid(dora_noisy))).verdict == INCONCLUSIVE


def test_claim_5_and_6_directions():
    def fewer_edits_decay_more(m, d, n, ft, seed):
        return paper_like(m, d, n, ft, seed) - (15.0 if n == N else 0.0)

    assert check_claim(5, tables(grid(fewer_edits_decay_more))).verdict == DOES_NOT_HOLD
    result = check_claim(5, tables(grid()))
    assert result.verdict == HOLDS and "EFR" in result.ours and f"{N} edits" in result.ours

    def cf_decays_more(m, d, n, ft, seed):
        return paper_like(m, d, n, ft, seed) - (20.0 if d == "zsre" else 0.0)

    assert check_claim(6, tables(grid(cf_decays_more))).verdict == DOES_NOT_HOLD


def _with_emergent(rows, emergent):
    for r in rows:
        if r["ft_method"] != "none" and r["edit_data"] == "counterfact":
            r["n_emergent"] = emergent
    return rows


def test_claim_7_emergent_flips():
    hidden = _with_emergent(grid(seeds=(0,), es_ed=80.0), 150)  # 200 failed, 150 emerge
    assert check_claim(7, tables(hidden)).verdict == HOLDS
    # one failed edit per hundred: one emergent edit is inside the noise
    few = _with_emergent(grid(seeds=(0,), es_ed=99.0, counts=(100,), fts=("lora",)), 1)
    assert check_claim(7, tables(few)).verdict == INCONCLUSIVE


def test_claim_7_is_not_testable_when_no_edit_failed_before_fine_tuning():
    plain = grid(seeds=(0,))  # ES(M_ed) = 100: nothing can emerge, whatever the erasures
    result = check_claim(7, tables(plain))
    assert result.verdict == NOT_TESTABLE
    assert "had failed before fine-tuning" in result.detail


def test_claim_9_hotpotqa():
    base = grid(seeds=(0,), fts=("lora",))
    hotpot = [
        row(m, d, n, "lora", ft_data="hotpotqa", delta=paper_like(m, d, n, "lora", 0) + 8.0)
        for m in ("memit", "alphaedit")
        for d in ("counterfact", "zsre")
        for n in (100, N)
    ]
    assert check_claim(9, tables(base + hotpot)).verdict == HOLDS
    gentle = [
        {
            **r,
            **row(
                r["edit_method"],
                r["edit_data"],
                r["n_edits"],
                "lora",
                ft_data="hotpotqa",
                delta=paper_like(r["edit_method"], r["edit_data"], r["n_edits"], "lora", 0) - 8.0,
            ),
        }
        for r in hotpot
    ]
    assert check_claim(9, tables(base + gentle)).verdict == DOES_NOT_HOLD


def _selective(es_all, es_non_edited, es_edited, seeds=(0, 1), jitter=0.2):
    rows = []
    for n in (100, N):
        rows.append(row("alphaedit", "counterfact", n, "none"))
        for layers, after in (
            ("all", es_all),
            ("non-edited", es_non_edited),
            ("edited", es_edited),
        ):
            for seed in seeds:
                delta = 100.0 - after + (jitter if seed == 0 else -jitter)
                rows.append(
                    row(
                        "alphaedit",
                        "counterfact",
                        n,
                        "lora",
                        ft_layers=layers,
                        seed=seed,
                        delta=delta,
                        ds_ed_ft={"all": 80.0, "non-edited": 75.0, "edited": 65.0}[layers],
                    )
                )
    return rows


def test_claim_10_selective_layers():
    holds = check_claim(10, tables(_selective(95.0, 70.0, 60.0)))
    assert holds.verdict == HOLDS
    assert "order all > non-edited > edited" in holds.ours
    assert check_claim(10, tables(_selective(60.0, 70.0, 95.0))).verdict == DOES_NOT_HOLD
    assert (
        check_claim(10, tables(_selective(95.0, 94.5, 94.0, jitter=10.0))).verdict == INCONCLUSIVE
    )


def test_claim_11_ds_degradation_with_downstream_items():
    rows = grid(seeds=(0,))
    downstream = pd.DataFrame(
        [
            {
                "config_id": r["config_id"],
                "state": "M_ed_ft",
                "step": 40,
                "task": t,
                "mode": "generate",
                "n": 100,
                "accuracy": 0.57,
            }
            for r in rows
            if r["ft_method"] != "none"
            for t in "abcdefg"
        ]
    )
    result = check_claim(11, tables(rows, downstream))
    assert result.verdict == HOLDS and "binomial" in result.detail
    # without the item counts the DS noise is unknown
    assert check_claim(11, tables(rows)).verdict == INCONCLUSIVE
    few = downstream.assign(n=1)
    assert check_claim(11, tables(rows, few)).verdict == INCONCLUSIVE


def test_claim_15_seed_noise():
    quiet = grid(seeds=(0, 1))  # seed SD 0.28 pp over 24 groups: the interval sits under 0.5 pp
    result = check_claim(15, tables(quiet))
    assert result.verdict == HOLDS
    assert "interval [0.22, 0.39]" in result.ours
    # seed SD 3·√2 ≈ 4.2 pp: far above the paper's 0.5 pp, whatever the number of edits
    for counts in ((N,), (100,)):
        noisy = grid(lambda *a: paper_like(*a[:4], a[4], jitter=3.0), counts=counts)
        assert check_claim(15, tables(noisy)).verdict == DOES_NOT_HOLD
    # 0.42 pp from 4 groups: the interval [0.25, 1.2] straddles the level
    few = grid(lambda *a: paper_like(*a[:4], a[4], jitter=0.3), counts=(100,), fts=("lora",))
    result = check_claim(15, tables(few))
    assert result.verdict == INCONCLUSIVE and "4 df" in result.ours
    assert "reads as above the level from" in result.detail
    ds_noisy = grid()
    for r in ds_noisy:
        if r["ft_method"] != "none":
            r["ds_M_ed_ft"] = 50.0 if r["seed"] == 0 else 60.0
    assert check_claim(15, tables(ds_noisy)).verdict == DOES_NOT_HOLD


def test_seed_spreads_table():
    spreads = seed_spreads(pd.DataFrame(grid(lambda *a: paper_like(*a[:4], a[4], jitter=1.5))))
    assert len(spreads) == 2 * 2 * 2 * 3
    assert spreads["ES SD"].iloc[0] == pytest.approx(math.sqrt(2) * 1.5)
    assert set(spreads["seeds"]) == {2}
    assert seed_spreads(pd.DataFrame(grid(seeds=(0,)))).empty


def test_only_final_steps_count():
    rows = grid(seeds=(0,))
    early = [
        {
            **r,
            "step": 10,
            "final": False,
            "delta_es": -50.0,
            "relative_decay": -50.0,
            "es_ed_ft": 150.0,
        }
        for r in rows
        if r["ft_method"] != "none"
    ]
    final = final_for_claims(pd.DataFrame(early + rows))
    assert (final["step"] != 10).all()
    assert check_claim(1, tables(early + rows)).verdict == HOLDS


def test_report_normalised_table_is_accepted():
    rows = pd.DataFrame(grid())
    rows.loc[rows["ft_method"] == "none", "ft_data"] = "—"
    rows["final"] = rows["final"].map(str)
    assert check_claim(2, {"decay": rows}).verdict == HOLDS


def test_seed_sd_is_floored_at_the_binomial_se():
    def identical_seeds(*args):
        return paper_like(*args[:4], args[4], jitter=0.0, alphaedit=3.0)

    # seeds agree exactly (SD 0); with 1000 edits per configuration the 3-point gap is real ...
    assert check_claim(4, tables(grid(identical_seeds))).verdict == HOLDS
    # ... with 10 and 20 edits the same gap is within the sampling noise of the edits
    few = check_claim(4, tables(grid(identical_seeds, counts=(10, 20))))
    assert few.verdict == INCONCLUSIVE and "binomial SE of the finite sample" in few.detail


def test_claim_7_needs_emergent_edits_for_holds():
    rows = grid(seeds=(0,), es_ed=80.0)  # EFR > ΔES from the smaller denominator alone
    assert (
        final_for_claims(pd.DataFrame(rows)).dropna(subset=["efr"]).eval("efr > delta_es")
    ).all()
    result = check_claim(7, tables(rows))
    assert "0 emergent" in result.ours
    assert result.verdict == DOES_NOT_HOLD


def test_claim_10_needs_both_steps_of_the_order():
    result = check_claim(10, tables(_selective(95.0, 70.0, 69.0)))
    assert result.verdict == INCONCLUSIVE


def test_seed_replicates_count_once():
    two = main_rows(final_for_claims(pd.DataFrame(grid(seeds=(0, 1)))))
    one = main_rows(final_for_claims(pd.DataFrame(grid(seeds=(0,)))))
    assert len(two) == len(one) and set(two["n_seeds"]) == {2} and set(one["n_seeds"]) == {1}
    # paper_like's ±0.2 jitter averages out over the two seeds
    merged = two.merge(
        one, on=["edit_method", "edit_data", "n_edits", "ft_method"], suffixes=("_2", "_1")
    )
    assert np.allclose(merged["delta_es_2"], merged["delta_es_1"] - 0.2)
