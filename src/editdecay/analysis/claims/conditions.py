"""The paper's claims 8–13 and 15 (PAPER §4): models, fine-tuning data, layer choice, downstream
cost, activations, target tokens and run-to-run noise; one registered check each (claim 14, the edit
layers, is in :mod:`.edit_layers`).

The conventions every check follows are in :mod:`.erasure`'s docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ...schema import FT_LABELS, TUNED_METHODS
from ..rank_tests import mann_whitney_u
from ..stats import chi2_quantile, sd_interval
from .noise import (
    MAIN_FT_DATA,
    SEED_GROUP,
    Z,
    band_text,
    bootstrap_test,
    estimate_noise,
    fine_tuned_rows,
    fmt,
    interval_verdict,
    judge,
    main_rows,
    matched,
    matching_rows,
    paired,
    paired_finding,
    paired_interval,
    scope,
    seed_averaged,
    seed_sd,
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
from .tables import seed_spreads

DS_NOISE_LIMIT = 5.4  # claim 15: the paper's largest seed-to-seed DS difference (GPT-J)
ES_SD_LEVEL = 0.5  # claim 15: the paper's ES SD across sampled edit sets (10k edits)
DS_SD_LEVEL = DS_NOISE_LIMIT / math.sqrt(2)  # the SD whose two-seed differences are 5.4 points


@claim(
    8,
    "Model robustness: GPT-J > Llama-2 ≈ GPT2-XL",
    paper="mean relative ES loss 15.93% (GPT-J), 39.92% (Llama-2), 40.84% (GPT2-XL)",
)
def model_robustness_order(data: ClaimData) -> Finding:
    final = data.final
    rows = main_rows(final).dropna(subset=["relative_decay"])
    ours = "; ".join(
        f"{model} {fmt(float(g['relative_decay'].mean()))}%" for model, g in rows.groupby("model")
    )
    return not_tested(
        "the claim is about GPT-J, Llama-2 and GPT2-XL, which this run does not "
        "include; ours lists the mean relative ES loss per model for information",
        ours=f"mean relative ES loss: {ours}" if ours else "—",
    )


@claim(
    9,
    "Knowledge-rich fine-tuning data (HotpotQA) erases more than Commonsense",
    paper="ES after FT, HotpotQA vs Commonsense: 72.76 vs 76.3, 68 vs 70.18, 75.56 vs 89.87 (largest gap 14.31 pp)",
)
def knowledge_rich_data_erases_more(data: ClaimData) -> Finding:
    final, n_ds = data.final, data.n_ds
    ft = fine_tuned_rows(final)
    rows = seed_averaged(
        ft[(ft["ft_layers"] == "all") & ft["ft_data"].isin([MAIN_FT_DATA, "hotpotqa"])]
    )
    pairs = paired(rows, "ft_data", "hotpotqa", MAIN_FT_DATA, "es_ed_ft")
    if pairs.empty:
        return not_tested("needs the same edits fine-tuned on HotpotQA and on Commonsense")
    used = matching_rows(rows, pairs, "ft_data")
    noise = estimate_noise(final, used, "es_ed_ft", n_ds)
    return paired_finding(
        pairs,
        noise,
        "ES after FT",
        "hotpotqa",
        MAIN_FT_DATA,
        "es_ed_ft",
        scope(used),
        boot=data.boot,
    )


@claim(
    10,
    "Selective-layer FT: edit removal edited-only > non-edited-only > all layers",
    paper=(
        "Llama-2 AlphaEdit CF, ES after FT (100 / 1k edits): all 98 / 90.55, non-edited 72 / 60.30, edited "
        "66 / 57.80; DS all > non-edited > edited"
    ),
)
def selective_layer_order(data: ClaimData) -> Finding:
    final, n_ds = data.final, data.n_ds
    ft = fine_tuned_rows(final)
    rows = seed_averaged(ft[ft["ft_layers"].isin(["all", "edited", "non-edited"])])
    triples = matched(rows, "ft_layers", ("all", "non-edited", "edited"), "es_ed_ft")
    if triples.empty:
        return not_tested(
            "needs the same edits fine-tuned on all, on the edited and on the non-edited layers",
        )
    high = triples.assign(diff=triples["all"] - triples["non-edited"])
    low = triples.assign(diff=triples["non-edited"] - triples["edited"])
    used = matching_rows(rows, triples, "ft_layers")
    bands = [
        paired_interval(data.boot, triples.assign(diff=p["diff"]), a, b, "es_ed_ft")
        for p, (a, b) in ((high, ("non-edited", "all")), (low, ("edited", "non-edited")))
    ]
    if all(band is not None for band in bands):
        verdicts = [interval_verdict(band) for band in bands]
        band_words = "; ".join(band.text() for band in bands)
        test = bootstrap_test(bands[0])
    else:
        noise = estimate_noise(final, used, "es_ed_ft", n_ds)
        verdicts = [judge(float(p["diff"].mean()), noise.se_paired(len(p))) for p in (high, low)]
        band_words = band_text(noise.se_paired(len(high)))
        test = f"{noise.text}; SE = σ·√(2/k); test: normal approximation, beyond ±{Z:g}·SE"
    if DOES_NOT_HOLD in verdicts:
        verdict = DOES_NOT_HOLD
    elif all(v == HOLDS for v in verdicts):
        verdict = HOLDS
    else:
        verdict = INCONCLUSIVE
    means = {
        layer: float(used[used["ft_layers"] == layer]["es_ed_ft"].mean())
        for layer in ("all", "non-edited", "edited")
    }
    ds_column = "ds_M_ed_ft" if used["ds_M_ed_ft"].notna().any() else "ds_rank_M_ed_ft"
    ds = {layer: float(used[used["ft_layers"] == layer][ds_column].mean()) for layer in means}
    ds_order = " > ".join(sorted(ds, key=lambda k: -ds[k] if math.isfinite(ds[k]) else math.inf))
    ours = (
        f"ES after FT: all {fmt(means['all'])}, non-edited {fmt(means['non-edited'])}, edited "
        f"{fmt(means['edited'])} (all − non-edited {fmt(float(high['diff'].mean()), sign=True)}, non-edited − "
        f"edited {fmt(float(low['diff'].mean()), sign=True)}; {band_words}); DS: "
        + (
            ", ".join(f"{k} {fmt(v)}" for k, v in ds.items()) + f" (order {ds_order})"
            if any(math.isfinite(v) for v in ds.values())
            else "not measured"
        )
    )
    detail = (
        f"`es_ed_ft` of {len(high)} setting(s) fine-tuned on all three layer choices ({scope(used)}); "
        f"{test}. Holds: ES(all) > ES(non-edited) and ES(non-edited) > ES(edited), each beyond the "
        f"band; does not hold: either pair reversed beyond it. The DS order (`{ds_column}`) is "
        "reported, not judged."
    )
    return Finding(verdict, ours, detail)


@claim(
    11,
    "Prior editing slightly reduces the downstream benefit of later fine-tuning",
    paper="DS degradation (M_ed_ft vs M_ft): LoRA 6.02%, DoRA 6.88%, full FT 14.69% (mean over models)",
)
def editing_reduces_ft_benefit(data: ClaimData) -> Finding:
    final, n_ds = data.final, data.n_ds
    rows = main_rows(final)
    column = (
        "ds_degradation_ft" if rows["ds_degradation_ft"].notna().any() else "ds_rank_degradation_ft"
    )
    rows = rows.dropna(subset=[column])
    if rows.empty:
        return not_tested("needs DS measured on M_ft and M_ed_ft")
    noise = estimate_noise(final, rows, column, n_ds)
    k = len(rows)
    mean = float(rows[column].mean())
    se = noise.se_mean(k)
    per_method = ", ".join(
        f"{FT_LABELS.get(m, m)} {fmt(float(rows[rows['ft_method'] == m][column].mean()))}%"
        for m in TUNED_METHODS
        if (rows["ft_method"] == m).any()
    )
    ours = f"DS degradation {per_method} (mean {fmt(mean)}%, {band_text(se)})"
    detail = (
        f"`{column}` of {k} configuration(s) ({scope(rows)}); {noise.text}; SE = σ/√k; verdict: mean beyond "
        f'±{Z:g}·SE of 0 (the size, "slightly", is not judged).'
    )
    return Finding(judge(mean, se), ours, detail)


@claim(
    12,
    "Activation geometry: FT shifts hidden states far more than KE, nearly orthogonally",
    paper="‖Δh_ft‖ ≫ ‖Δh_ed‖ at every layer; cos(d_ed, d_ft) < cos(d_ed_ft, d_ed) ≪ cos(d_ed_ft, d_ft)",
)
def activation_geometry(data: ClaimData) -> Finding:
    acts = data.activations
    if acts is None:
        return not_tested(NO_ACTIVATIONS)
    if acts.empty:
        return not_tested("results/activations.csv has no rows")
    units = activation_units(acts)
    if units.empty:
        return not_tested("activations.csv has no rows at or after an edited layer")
    n = len(units)
    magnitude = sign_verdict(units["min_norm_gap"])
    orderings = [sign_verdict(units[c]) for c in ("gap_low", "gap_high")]
    parts = [magnitude, *orderings]
    if any(v == DOES_NOT_HOLD for v, _ in parts):
        verdict = DOES_NOT_HOLD
    elif all(v == HOLDS for v, _ in parts):
        verdict = HOLDS
    else:
        verdict = INCONCLUSIVE
    ours = (
        f"‖Δh_ft‖ > ‖Δh_ed‖ at every edited-and-later layer in {int((units['min_norm_gap'] > 0).sum())}"
        f"/{n} unit(s) (median ratio {fmt(float(units['median_ratio'].median()), 2)}); mean cosines "
        f"cos(d_ed, d_ft) {fmt(float(units['cos_ed_ft'].mean()), 2)}, cos(d_ed_ft, d_ed) "
        f"{fmt(float(units['cos_edft_ed'].mean()), 2)}, cos(d_ed_ft, d_ft) "
        f"{fmt(float(units['cos_edft_ft'].mean()), 2)}"
    )
    detail = (
        f"[results/activations.csv](results/activations.csv): {n} unit(s) = configuration × prompt "
        "set × position, each over the layers from the first edited one on (below it the edit "
        "cannot move the residual stream). Three exact two-sided sign tests over the units: "
        "(a) min over layers of norm_ft − norm_ed > 0 (" + magnitude[1] + "); (b) layer-mean "
        "cos_edft_ed − cos_ed_ft > 0 (" + orderings[0][1] + "); (c) layer-mean cos_edft_ft − "
        "cos_edft_ed > 0 (" + orderings[1][1] + "). Holds: every unit positive and p < "
        f"{SIGN_ALPHA:g} in all three; does not hold: any of them negative with p < {SIGN_ALPHA:g}; "
        "inconclusive otherwise. The sizes (≫) are reported, not judged; layers within a unit "
        "are not independent, so they are not counted as separate evidence."
    )
    return Finding(verdict, ours, detail)


SIGN_ALPHA = 0.05
# The reasons without `editdecay analyse`'s tables: worded as before it existed, so that the
# committed REPRODUCTION.md files (tests/report/test_committed_reports.py) stay byte for byte.
NO_ACTIVATIONS = (
    "needs results/activations.csv (per-layer hidden-state shifts of M, M_ed, M_ft, M_ed_ft): "
    "run `editdecay analyse RUN_DIR` on the run and its store"
)
NO_TARGET_FREQUENCY = (
    "needs results/target_frequency.csv (the edit targets' token frequencies by flip category): "
    "run `editdecay analyse RUN_DIR` on the run and its store"
)
MIN_FREQUENCY_GROUP = 5  # claim 13: erased and stable edits needed for a rank test


def activation_units(acts: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration × prompt set × position over the layers at or after the first
    edited layer: the smallest norm_ft − norm_ed, the median norm_ft / norm_ed, the mean cosines
    and the two ordering gaps of claim 12."""
    rows = []
    for key, unit in acts.groupby(["config_id", "prompts", "position"], sort=False):
        edited = [int(x) for x in str(unit["edit_layers"].iloc[0]).split() if x.strip().isdigit()]
        first = min(edited) if edited else 0
        later = unit[unit["layer"] >= first]
        if later.empty:
            continue
        gap = later["norm_ft"] - later["norm_ed"]
        ratio = later["norm_ft"] / later["norm_ed"].where(later["norm_ed"] > 0)
        cos = {c: float(later[c].mean()) for c in ("cos_ed_ft", "cos_edft_ed", "cos_edft_ft")}
        rows.append(
            {
                "unit": " / ".join(map(str, key)),
                "min_norm_gap": float(gap.min()),
                "median_ratio": float(ratio.median()),
                **cos,
                "gap_low": cos["cos_edft_ed"] - cos["cos_ed_ft"],
                "gap_high": cos["cos_edft_ft"] - cos["cos_edft_ed"],
            }
        )
    return pd.DataFrame(rows)


def sign_test_p(n_positive: int, n_negative: int) -> float:
    """Exact two-sided sign test: P(a split at least this uneven) under p = ½ (ties dropped)."""
    n = n_positive + n_negative
    if n == 0:
        return 1.0
    k = min(n_positive, n_negative)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def sign_verdict(values: pd.Series) -> tuple[str, str]:
    """HOLDS when every value is positive and the sign test rejects ½ at SIGN_ALPHA; DOES_NOT_HOLD
    when the negatives win beyond it; INCONCLUSIVE otherwise. Returns (verdict, words)."""
    pos, neg = int((values > 0).sum()), int((values < 0).sum())
    p = sign_test_p(pos, neg)
    words = f"{pos}+/{neg}−, p = {p:.3g}"
    if neg > pos and p < SIGN_ALPHA:
        return DOES_NOT_HOLD, words
    if neg == 0 and pos == len(values) and p < SIGN_ALPHA:
        return HOLDS, words
    return INCONCLUSIVE, words


@claim(
    13,
    "Erased edits have rare target tokens; stable and emergent ones frequent tokens",
    paper="qualitative (Table 6 examples)",
)
def erased_edits_have_rare_targets(data: ClaimData) -> Finding:
    freq = data.target_frequency
    if freq is None:
        return not_tested(NO_TARGET_FREQUENCY)
    if freq.empty:
        return not_tested("results/target_frequency.csv has no rows")
    column = "wikitext_log10_per_million"
    targets = distinct_targets(freq, column)
    groups = {
        c: targets[targets["category"] == c][column] for c in ("stable", "erased", "emergent")
    }
    sizes = ", ".join(f"{c} {len(v)}" for c, v in groups.items())
    if min(len(groups["stable"]), len(groups["erased"])) < MIN_FREQUENCY_GROUP:
        return not_testable(
            f"{sizes} distinct targets; the rank test needs at least {MIN_FREQUENCY_GROUP} erased "
            f"and {MIN_FREQUENCY_GROUP} stable"
        )
    test = mann_whitney_u(groups["stable"], groups["erased"])
    if test.p < SIGN_ALPHA:
        verdict = HOLDS if test.effect > 0.5 else DOES_NOT_HOLD
    else:
        verdict = INCONCLUSIVE
    means = ", ".join(f"{c} {fmt(float(v.mean()), 2)}" for c, v in groups.items() if len(v))
    ours = (
        f"mean log10 WikiText frequency per million: {means}; stable vs erased "
        f"P(stable > erased) = {fmt(test.effect, 2)}, p = {test.p:.3g}"
    )
    detail = (
        f"[results/target_frequency.csv](results/target_frequency.csv), `{column}`; {sizes} "
        "distinct targets (a target counts once per category, however many configurations "
        "repeat it). Mann–Whitney U of stable against erased, normal approximation with tie "
        f"correction. Holds: erased rarer with p < {SIGN_ALPHA:g}; does not hold: stable rarer "
        f"with p < {SIGN_ALPHA:g}; inconclusive otherwise. Emergent targets are reported, not judged."
    )
    return Finding(verdict, ours, detail)


def distinct_targets(freq: pd.DataFrame, column: str) -> pd.DataFrame:
    """Each (target, category) once, with its frequency `column`."""
    table = freq.assign(category=freq["category"].astype(str).str.lower())
    return table.drop_duplicates(["target_new", "category"])[["target_new", "category", column]]


@claim(
    15,
    "Run-to-run noise is small: ES deltas below ~1 pp and DS deltas below a few % are noise",
    paper=(
        "ES SD across sampled edit sets ≤ 0.5 pp (10k edits); DS differs by 3.7–5.4% across seeds"
    ),
)
def run_noise_is_small(data: ClaimData) -> Finding:
    final = data.final
    spreads = seed_spreads(data.decay)
    if spreads.empty:
        return not_tested("needs configurations repeated with several fine-tuning seeds")
    ft = fine_tuned_rows(final)
    replicated = ft[ft.duplicated(list(SEED_GROUP), keep=False)]
    checks = [
        _noise_check("ES after FT", *seed_sd(replicated, "es_ed_ft"), ES_SD_LEVEL),
        _noise_check("DS of M_ed_ft", *seed_sd(replicated, "ds_M_ed_ft"), DS_SD_LEVEL),
    ]
    judged = [c for c in checks if c.verdict != INCONCLUSIVE or math.isfinite(c.sd)]
    verdicts = [c.verdict for c in judged]
    if not judged:
        verdict = INCONCLUSIVE
    elif DOES_NOT_HOLD in verdicts:
        verdict = DOES_NOT_HOLD
    elif all(v == HOLDS for v in verdicts):
        verdict = HOLDS
    else:
        verdict = INCONCLUSIVE
    ours = "; ".join(c.text for c in checks)
    detail = (
        "pooled seed-to-seed SD over groups of configurations differing only in the fine-tuning seed, "
        "with its chi-square 95% interval; test: holds when the interval's upper end is at or under "
        f"the paper's level (ES SD {ES_SD_LEVEL:g} pp; DS {DS_SD_LEVEL:.2f} pp, the SD whose "
        f"two-seed differences reach the paper's {DS_NOISE_LIMIT:g}%), does not hold when its lower "
        "end is above it, else inconclusive. Power: "
        + "; ".join(c.power for c in checks)
        + ". The paper's ES figure varies the sampled edit set at 10k edits; ours varies the "
        "fine-tuning seed (data sample, order, adapter initialisation, dropout) on the same edits."
    )
    return Finding(verdict, ours, detail)


@dataclass(frozen=True)
class NoiseCheck:
    sd: float
    verdict: str
    text: str
    power: str


def _noise_check(what: str, sd: float, groups: int, dof: int, level: float) -> NoiseCheck:
    low, high = sd_interval(sd, dof)
    if not math.isfinite(sd):
        return NoiseCheck(sd, INCONCLUSIVE, f"{what}: no seed replicates", f"{what}: none")
    if high <= level:
        verdict = HOLDS
    elif low > level:
        verdict = DOES_NOT_HOLD
    else:
        verdict = INCONCLUSIVE
    # the smallest estimate that would show the SD above the level, and the largest showing it below
    above = level * math.sqrt(chi2_quantile(0.975, dof) / dof)
    below = level * math.sqrt(chi2_quantile(0.025, dof) / dof)
    text = (
        f"{what}: seed SD {fmt(sd, 2)} pp, interval [{fmt(low, 2)}, {fmt(high, 2)}] "
        f"({groups} group(s), {dof} df) against {fmt(level, 2)}"
    )
    power = (
        f"with {dof} df the {what} SD reads as above the level from {fmt(above, 2)} pp and as "
        f"under it only below {fmt(below, 2)} pp"
    )
    return NoiseCheck(sd, verdict, text, power)
