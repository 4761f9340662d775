"""The paper's claims 1–7 (PAPER §4): whether edits decay, and which method, editor, edit count
and data set erases more; one registered check each.

Claims compare directions and orderings, never absolute numbers (a 135M model does not reproduce
GPT-J's values); only the final fine-tuning step of each configuration is used, and configurations
that differ only in their fine-tuning seed count once (they share the edit sample). The noise model
and the pairing are in :mod:`.noise`.
"""

from __future__ import annotations

import math

from ...schema import LOCATE_THEN_EDIT
from ...schema import PEFT_METHODS as PEFT
from .noise import (
    Z,
    band_text,
    bootstrap_test,
    compare_axis,
    estimate_noise,
    fine_tuned_rows,
    fmt,
    interval_verdict,
    judge,
    main_ft_data,
    main_rows,
    matching_rows,
    mean_interval,
    paired,
    paired_finding,
    paired_interval,
    scope,
    seed_averaged,
)
from .registry import (
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    ClaimData,
    Finding,
    claim,
    not_testable,
    not_tested,
)

EQUIVALENCE_MARGIN = 5.0  # claim 3, "within a few points" of relative decay
EMERGENCE_RESOLUTION = 1.0  # claim 7: emergent flips hiding under a point of erasures count as none


@claim(
    1,
    "Edits decay after unrelated fine-tuning",
    paper=(
        "mean relative ES loss 15.93% (GPT-J), 40.84% (GPT2-XL), 39.92% (Llama-2); zsRE, Table 4"
    ),
)
def edits_decay(data: ClaimData) -> Finding:
    final, n_ds = data.final, data.n_ds
    rows = main_rows(final).dropna(subset=["relative_decay"])
    if rows.empty:
        return not_tested("needs MEMIT/AlphaEdit configurations fine-tuned on all layers")
    k = len(rows)
    mean = float(rows["relative_decay"].mean())
    band = mean_interval(data.boot, rows, "relative_decay")
    if band is not None:
        verdict, band_words, test = interval_verdict(band), band.text(), bootstrap_test(band)
    else:
        noise = estimate_noise(final, rows, "relative_decay", n_ds)
        se = noise.se_mean(k)
        verdict, band_words = judge(mean, se), band_text(se)
        test = f"{noise.text}; SE = σ/√k; test: normal approximation, mean beyond ±{Z:g}·SE of 0"
    by_kind = ", ".join(
        f"{kind} {fmt(float(g['relative_decay'].mean()))}%" for kind, g in rows.groupby("kind")
    )
    ours = (
        f"mean relative ES loss {fmt(mean)}% ({by_kind}; {band_words}); positive in "
        f"{int((rows['relative_decay'] > 0).sum())}/{k} configurations"
    )
    detail = f"`relative_decay` of {k} configuration(s) ({scope(rows)}); {test}."
    return Finding(verdict, ours, detail)


@claim(
    2,
    "Full fine-tuning erases more than LoRA/DoRA",
    paper="relative ES loss: full FT 38.10% vs LoRA/DoRA ≈ 29–30% (mean over models)",
)
def full_ft_erases_more(data: ClaimData) -> Finding:
    final, n_ds = data.final, data.n_ds
    rows = main_rows(final)
    pairs = paired(
        rows,
        "ft_method",
        "peft",
        "full",
        "relative_decay",
        group=lambda m: "full" if m == "full" else ("peft" if m in PEFT else m),
    )
    if pairs.empty:
        return not_tested("needs the same edits fine-tuned with full FT and with LoRA or DoRA")
    used = matching_rows(rows[rows["ft_method"].isin(["full", *PEFT])], pairs, "ft_method")
    noise = estimate_noise(final, used, "relative_decay", n_ds)
    return paired_finding(
        pairs,
        noise,
        "relative ES loss %",
        "peft",
        "full",
        "relative_decay",
        scope(used) + "; LoRA and DoRA averaged per match",
        boot=data.boot,
    )


@claim(
    3,
    "LoRA and DoRA erase about equally",
    paper="relative ES loss 29.88% vs 28.71% (labels ambiguous); within a few points",
)
def lora_and_dora_erase_alike(data: ClaimData) -> Finding:
    final, n_ds = data.final, data.n_ds
    rows = main_rows(final)
    pairs = paired(rows, "ft_method", "lora", "dora", "relative_decay")
    if pairs.empty:
        return not_tested("needs the same edits fine-tuned with LoRA and with DoRA")
    used = matching_rows(rows[rows["ft_method"].isin(PEFT)], pairs, "ft_method")
    noise = estimate_noise(final, used, "relative_decay", n_ds)
    k = len(pairs)
    mean = float(pairs["diff"].mean())
    band = paired_interval(data.boot, pairs, "lora", "dora", "relative_decay")
    if band is not None:
        low, high, test = band.low, band.high, bootstrap_test(band).split(";")[0] + ")"
    else:
        se = noise.se_paired(k)
        low, high = mean - Z * se, mean + Z * se
        test = (
            f"{noise.text}; SE = σ·√(2/k); test: normal approximation, interval mean Δ ± {Z:g}·SE"
        )
    if not (math.isfinite(low) and math.isfinite(high)):
        verdict = INCONCLUSIVE
    elif -EQUIVALENCE_MARGIN <= low and high <= EQUIVALENCE_MARGIN:
        verdict = HOLDS
    elif high < -EQUIVALENCE_MARGIN or low > EQUIVALENCE_MARGIN:
        verdict = DOES_NOT_HOLD
    else:
        verdict = INCONCLUSIVE
    ours = (
        f"relative ES loss: DoRA {fmt(float(pairs['dora'].mean()))}% vs LoRA {fmt(float(pairs['lora'].mean()))}% "
        f"(mean Δ {fmt(mean, sign=True)}, interval [{fmt(low)}, {fmt(high)}])"
    )
    detail = (
        f"`relative_decay` of {k} LoRA/DoRA pair(s) ({scope(used)}), diff = DoRA − LoRA; {test}. "
        f"Equivalence: holds if the whole interval lies within ±{EQUIVALENCE_MARGIN:g} points, does "
        "not hold if it lies entirely outside, else inconclusive."
    )
    return Finding(verdict, ours, detail)


@claim(
    4,
    "AlphaEdit edits are more fragile than MEMIT edits",
    paper="Llama-2 zsRE LoRA, 100 edits: ΔES 35.37 (AlphaEdit) vs 9.73 pp (MEMIT); GPT-J AE 10k EFR 25.27%",
)
def alphaedit_more_fragile(data: ClaimData) -> Finding:
    final, n_ds = data.final, data.n_ds
    return compare_axis(
        final,
        n_ds,
        main_rows(final),
        "edit_method",
        "memit",
        "alphaedit",
        "needs the same requests edited by MEMIT and by AlphaEdit, then fine-tuned",
        boot=data.boot,
    )


@claim(
    5,
    "Decay grows with the number of edits",
    paper="GPT-J MEMIT zsRE LoRA: ΔES 10.28 → 14.57 → 30.41 pp, EFR 5.00 → 5.51 → 15.60% (100 → 1k → 10k)",
)
def decay_grows_with_edit_count(data: ClaimData) -> Finding:
    final, n_ds = data.final, data.n_ds
    rows = main_rows(final)
    counts = sorted({int(n) for n in rows["n_edits"].dropna()})
    if len(counts) < 2:
        return not_tested("needs fine-tuned configurations at two or more edit counts")
    low, high = str(counts[0]), str(counts[-1])
    rows = rows[rows["n_edits"].isin([counts[0], counts[-1]])].assign(
        n_label=lambda d: d["n_edits"].map(lambda n: str(int(n)))
    )
    pairs = paired(rows.assign(n_edits=rows["n_label"]), "n_edits", low, high, "delta_es")
    if pairs.empty:
        return not_tested(f"no configuration was fine-tuned at both {low} and {high} edits")
    used = matching_rows(rows, pairs, "n_edits")
    noise = estimate_noise(final, used, "delta_es", n_ds)
    efr = paired(rows.assign(n_edits=rows["n_label"]), "n_edits", low, high, "efr")
    extra = (
        f"; EFR {fmt(float(efr[high].mean()))}% vs {fmt(float(efr[low].mean()))}%"
        if len(efr)
        else ""
    )
    return paired_finding(
        pairs,
        noise,
        "ΔES pp",
        low,
        high,
        "delta_es",
        scope(used),
        names={low: f"{low} edits", high: f"{high} edits"},
        extra=extra,
        boot=data.boot,
    )


@claim(
    6,
    "zsRE edits decay more than CounterFact edits",
    paper="GPT-J MEMIT 10k LoRA: ΔES 30.11 (zsRE) vs 4.76 pp (CounterFact)",
)
def zsre_decays_more(data: ClaimData) -> Finding:
    final, n_ds = data.final, data.n_ds
    rows = main_rows(final)
    return compare_axis(
        final,
        n_ds,
        rows.assign(edit_data=rows["kind"]),
        "edit_data",
        "counterfact",
        "zsre",
        "needs the same settings run on zsRE and on CounterFact edits",
        boot=data.boot,
    )


@claim(
    7,
    "On CounterFact EFR exceeds ΔES: emergent (reverse) flips hide erased edits",
    paper="GPT-J MEMIT 10k CF LoRA: EFR 22.39% vs ΔES 4.76 pp; emergent edits exist",
)
def emergent_flips_hide_erasures(data: ClaimData) -> Finding:
    final, n_ds = data.final, data.n_ds
    ft = fine_tuned_rows(final)
    rows = ft[
        (ft["kind"] == "counterfact")
        & ft["ft_layers"].eq("all")
        & ft["ft_data"].eq(main_ft_data(final))
        & ft["edit_method"].isin(LOCATE_THEN_EDIT)
    ]
    rows = seed_averaged(rows.dropna(subset=["efr", "delta_es", "n_emergent"]))
    if rows.empty:
        return not_tested("needs fine-tuned CounterFact configurations with EFR measured")
    # EFR − ΔES also grows when edits failed before FT (EFR's denominator is the successes only); the
    # share of edits that flipped failure → success is the part of ΔES that hides erasures, and only
    # an edit that failed on M_ed can flip that way.
    k = len(rows)
    mean = float(rows["emergent_share"].mean())
    emergent = float(rows["n_emergent"].fillna(0).sum())
    erased = float(rows["n_erased"].fillna(0).sum())
    failed_share = float((100 * (1 - rows["n_success_ed"] / rows["n_edits"])).mean())
    ours = (
        f"EFR {fmt(float(rows['efr'].mean()))}% vs ΔES {fmt(float(rows['delta_es'].mean()))} pp; "
        f"emergent edits {fmt(mean, 2)}% of all edits; {emergent:g} emergent and {erased:g} erased "
        f"edits in {k} configurations; {fmt(failed_share, 2)}% of edits had failed before FT"
    )
    if failed_share < EMERGENCE_RESOLUTION:
        return not_testable(
            f"only {fmt(failed_share, 2)}% of the edits had failed before fine-tuning (at most that "
            f"share can emerge), under the {EMERGENCE_RESOLUTION:g}-point resolution of the check",
            ours=ours,
        )
    band = mean_interval(data.boot, rows, "emergent_share")
    if band is not None:
        low, high, test = band.low, band.high, bootstrap_test(band).split(";")[0] + ")"
    else:
        noise = estimate_noise(final, rows, "emergent_share", n_ds)
        se = noise.se_mean(k)
        low, high = mean - Z * se, mean + Z * se
        test = f"{noise.text}; SE = σ/√k; test: normal approximation, mean ± {Z:g}·SE"
    if not (math.isfinite(low) and math.isfinite(high)):
        verdict = INCONCLUSIVE
    elif low > 0:
        verdict = HOLDS
    elif high < EMERGENCE_RESOLUTION:
        verdict = DOES_NOT_HOLD
    else:
        verdict = INCONCLUSIVE
    ours += f" (emergent share interval [{fmt(low, 2)}, {fmt(high, 2)}])"
    detail = (
        f"`emergent_share` (100·`n_emergent`/`n_edits`, which equals erased share − ΔES for "
        f"CounterFact's binary ES) of {k} CounterFact configuration(s) ({scope(rows)}; seeds "
        f"averaged); {test}. Holds: the interval lies above 0. Does not hold: it lies below "
        f"{EMERGENCE_RESOLUTION:g} point (emergent flips hide less than a point of erasures although "
        "edits had failed and could emerge). Not testable: fewer than that share of edits failed "
        "before fine-tuning. Else inconclusive. EFR − ΔES alone is not judged: it is positive "
        "whenever some edits failed before FT."
    )
    return Finding(verdict, ours, detail)
