"""Claims decided by the bootstrap over edits: paired arms, seeds, each verdict each way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from editdecay.analysis.claims import (
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    check_claim,
    prepare,
)
from editdecay.schema import DECAY, FLIPS

N = 100


def config(edit_method, ft_method, erased, *, seed=0, edit_data="counterfact", failed=()):
    """decay and flips rows of one configuration: every edit succeeds on M_ed except `failed`,
    and the ones in `erased` fail on M_ed_ft."""
    cid = f"{edit_method}-{edit_data}-{ft_method}-s{seed}"
    before = np.array([i not in failed for i in range(N)])
    after = before & np.array([i not in erased for i in range(N)])
    flips = pd.DataFrame(
        {
            "config_id": cid,
            "step": 10,
            "case_id": [f"{edit_data}:{i}" for i in range(N)],
            "success_before": before,
            "success_after": after,
            "efficacy_before": before.astype(float),
            "efficacy_after": after.astype(float),
        }
    )
    es_ed, es_ft = 100 * before.mean(), 100 * after.mean()
    decay = DECAY.row(
        config_id=cid,
        model="m",
        edit_method=edit_method,
        edit_data=edit_data,
        n_edits=N,
        ft_method=ft_method,
        ft_data="commonsense",
        ft_layers="all",
        seed=seed,
        step=10,
        final=True,
        efficacy_kind="zsre" if edit_data == "zsre" else "counterfact",
        es_ed=es_ed,
        es_ed_ft=es_ft,
        delta_es=es_ed - es_ft,
        relative_decay=100 * (es_ed - es_ft) / es_ed,
        efr=100 * int((before & ~after).sum()) / int(before.sum()),
        n_success_ed=int(before.sum()),
        n_erased=int((before & ~after).sum()),
        n_emergent=0,
    )
    return decay, flips


def tables(*configs):
    decay = pd.DataFrame([d for d, _ in configs])
    flips = pd.concat([f for _, f in configs], ignore_index=True)
    assert set(flips.columns) <= set(FLIPS.names)
    return {"decay": decay, "flips": flips}


def first(k):
    return set(range(k))


@pytest.mark.parametrize(
    ("memit", "alphaedit", "expected"),
    [
        (first(5), first(20), HOLDS),  # AlphaEdit loses 15 more, and every MEMIT loss too
        (first(20), first(5), DOES_NOT_HOLD),
        (first(10), set(range(5, 17)), INCONCLUSIVE),  # 10 vs 12 lost, partly different edits
    ],
)
def test_claim_4_paired_edit_by_edit(memit, alphaedit, expected):
    result = check_claim(
        4, tables(config("memit", "lora", memit), config("alphaedit", "lora", alphaedit))
    )
    assert result.verdict == expected, result.ours
    assert "bootstrap over edits and seeds" in result.detail


def test_pairing_removes_the_noise_the_arms_share():
    """Nested losses differ by exactly the extra edits: a paired band narrower than two independent
    binomial samples of 100 edits would give (10 % and 25 % lost: 95% width ≈ 20.7 points)."""
    data = prepare(
        tables(config("memit", "lora", first(10)), config("alphaedit", "lora", first(25)))
    )
    diff = data.boot.config_values("alphaedit-counterfact-lora-s0", "delta_es") - (
        data.boot.config_values("memit-counterfact-lora-s0", "delta_es")
    )
    low, high = np.quantile(diff, [0.025, 0.975])
    independent = 2 * 1.96 * 100 * np.sqrt(0.10 * 0.90 / N + 0.25 * 0.75 / N)
    paired = 2 * 1.96 * 100 * np.sqrt(0.15 * 0.85 / N)  # the 15 extra edits alone
    assert low < 15 < high
    assert high - low == pytest.approx(paired, rel=0.15)
    assert high - low < 0.8 * independent


def test_identical_arms_give_a_zero_width_band():
    same = first(10)
    result = check_claim(
        4, tables(config("memit", "lora", same), config("alphaedit", "lora", same))
    )
    assert result.verdict == INCONCLUSIVE
    assert "95% interval [0.0, 0.0]" in result.ours


def test_seed_replicates_widen_the_band():
    one_seed = tables(config("memit", "lora", first(10)), config("alphaedit", "lora", first(16)))
    seeds = tables(
        config("memit", "lora", first(10)),
        config("alphaedit", "lora", first(4), seed=0),
        config("alphaedit", "lora", first(28), seed=1),  # same mean loss (16), far apart
    )

    def width(t):
        text = check_claim(4, t).ours
        low, high = (float(x) for x in text.split("95% interval [")[1].split("]")[0].split(", "))
        return high - low

    assert width(seeds) > width(one_seed)


def test_claim_1_bootstrap_each_way():
    decays = tables(config("memit", "lora", first(12)), config("alphaedit", "lora", first(8)))
    assert check_claim(1, decays).verdict == HOLDS
    stable = tables(config("memit", "lora", set()), config("alphaedit", "lora", {3}))
    assert check_claim(1, stable).verdict == INCONCLUSIVE


def test_claim_7_from_per_edit_flips():
    decay, flips = config("memit", "lora", first(5), failed=range(80, 100))
    # 10 of the 20 failed edits emerge after fine-tuning
    emerged = flips["case_id"].isin([f"counterfact:{i}" for i in range(80, 90)])
    flips.loc[emerged, ["success_after", "efficacy_after"]] = [True, 1.0]
    decay.update(n_emergent=10, es_ed_ft=decay["es_ed_ft"] + 10, delta_es=decay["delta_es"] - 10)
    alpha_decay, alpha_flips = config("alphaedit", "lora", first(5), failed=range(80, 100))
    result = check_claim(7, tables((decay, flips), (alpha_decay, alpha_flips)))
    assert result.verdict == HOLDS, result.ours
    none_emerge = tables(
        config("memit", "lora", first(5), failed=range(80, 100)),
        config("alphaedit", "lora", first(5), failed=range(80, 100)),
    )
    assert check_claim(7, none_emerge).verdict == DOES_NOT_HOLD


def test_without_flips_the_normal_approximation_decides_and_says_so():
    decay_only = tables(config("memit", "lora", first(5)), config("alphaedit", "lora", first(20)))
    del decay_only["flips"]
    result = check_claim(4, decay_only)
    assert "normal approximation" in result.detail
