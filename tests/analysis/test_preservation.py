"""Preservation options against plain fine-tuning: the paired verdict comes out each way, the
McNemar test, the DS band, the same options on planted edits (paired over attack probes), and the
report section (absent without any option)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from editdecay.analysis.preservation import attack_preservation, preservation_table
from editdecay.analysis.stats import mcnemar_exact_p
from editdecay.analysis.tables import final_rows
from editdecay.report.blocks import ReportContext, Table
from editdecay.report.defence_sections import TITLE_PRESERVATION, preservation_section
from editdecay.report.inputs import StudyResults

N = 20


def _decay(kept_plain: int, kept_option: int, success: int = N) -> pd.DataFrame:
    common = {
        "model": "m", "edit_method": "memit", "edit_data": "zsre", "n_edits": N,
        "ft_method": "lora", "ft_data": "commonsense", "ft_layers": "all", "seed": 0,
        "step": 10, "final": True, "n_success_ed": success, "es_ed": 100.0 * success / N,
    }  # fmt: skip
    rows = [
        {**common, "config_id": "plain", "ft_preserve": "none", "n_stable": kept_plain,
         "es_ed_ft": 100.0 * kept_plain / N, "ds_rank_M_ed_ft": 50.0},
        {**common, "config_id": "keep", "ft_preserve": "subspace", "n_stable": kept_option,
         "es_ed_ft": 100.0 * kept_option / N, "ds_rank_M_ed_ft": 48.0},
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _flips(kept_plain: int, kept_option: int, success: int = N) -> pd.DataFrame:
    rows = []
    for cid, kept in (("plain", kept_plain), ("keep", kept_option)):
        for i in range(N):
            rows.append(
                {"config_id": cid, "step": 10, "case_id": f"zsre:{i}",
                 "success_before": i < success, "success_after": i < min(kept, success)}
            )  # fmt: skip
    return pd.DataFrame(rows)


def _downstream() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"config_id": c, "state": "M_ed_ft", "step": 10, "mode": "rank", "task": "boolq",
             "n": 100, "accuracy": 0.5}
            for c in ("plain", "keep")
        ]
    )  # fmt: skip


def _table(kept_plain, kept_option, success=N):
    final = final_rows(_decay(kept_plain, kept_option, success), preserved=True)
    return preservation_table(final, _flips(kept_plain, kept_option, success), _downstream())


@pytest.mark.parametrize(
    "plain, option, verdict",
    [(5, 20, "keeps more"), (20, 5, "keeps fewer"), (10, 12, "no difference shown")],
)
def test_verdict_comes_out_each_way(plain, option, verdict):
    row = _table(plain, option).iloc[0]
    assert row["verdict"] == verdict
    assert row["kept"] == 100.0 * option / N and row["kept_plain"] == 100.0 * plain / N
    assert row["only_option"] == max(0, option - plain)
    assert row["only_plain"] == max(0, plain - option)


def test_not_testable_without_successful_edits():
    row = _table(0, 0, success=0).iloc[0]
    assert row["verdict"].startswith("not testable here")
    assert math.isnan(row["kept"])


def _downstream_n(n: int, keep_accuracy: float) -> pd.DataFrame:
    ds = _downstream()
    ds["n"] = n
    ds.loc[ds["config_id"] == "keep", "accuracy"] = keep_accuracy
    return ds


def test_ds_difference_band_and_goal():
    row = _table(5, 19).iloc[0]
    assert row["ds_delta"] == pytest.approx(-2.0)
    assert row["ds_band"] == pytest.approx(200 * math.sqrt((0.48 * 0.52 + 0.25) / 100), rel=1e-6)
    # 95 % kept, but a band of ±14 points on 100 items cannot place a 1-point cost either way
    assert row["goal"].startswith("not testable here: edits kept")
    assert _table(5, 17).iloc[0]["goal"] == "not met"  # 85 % kept


@pytest.mark.parametrize(
    "keep_ds, goal",
    [(49.9, "met"), (45.0, "not met"), (48.9, "not testable here")],
)
def test_goal_comes_out_each_way_on_a_large_ds_set(keep_ds, goal):
    decay = _decay(5, 19)
    decay.loc[decay["config_id"] == "keep", "ds_rank_M_ed_ft"] = keep_ds
    n = 200_000  # band ≈ 0.32 points
    table = preservation_table(
        final_rows(decay, preserved=True), _flips(5, 19), _downstream_n(n, keep_ds / 100)
    )
    assert table.iloc[0]["goal"].startswith(goal)


def test_without_a_plain_counterpart_there_is_no_row():
    decay = _decay(5, 20)
    decay.loc[decay["config_id"] == "plain", "seed"] = 1
    assert preservation_table(final_rows(decay, preserved=True), _flips(5, 20)).empty


def test_mcnemar_exact():
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(10, 0) == pytest.approx(2 / 1024)
    assert mcnemar_exact_p(5, 5) == 1.0
    assert mcnemar_exact_p(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    with pytest.raises(ValueError):
        mcnemar_exact_p(-1, 2)


def _ctx(tmp_path: Path, decay, flips) -> ReportContext:
    results = StudyResults(tmp_path, decay, flips=flips, downstream=_downstream())
    return ReportContext(results, "t", final_rows(decay), tmp_path)


def test_section_shows_each_option_and_is_absent_without_one(tmp_path):
    section = preservation_section(_ctx(tmp_path, _decay(5, 20), _flips(5, 20)))
    assert section.title == TITLE_PRESERVATION
    table = next(b for b in section.blocks if isinstance(b, Table)).frame
    assert list(table["option"]) == ["subspace"] and list(table["verdict"]) == ["keeps more"]
    plain_only = _decay(5, 20).iloc[:1]
    assert preservation_section(_ctx(tmp_path, plain_only, _flips(5, 20))) is None


PROBES = 30


def _attack_probes(fired_ed: int, kept_plain: int, kept_option: int) -> pd.DataFrame:
    """30 attack probes: the first `fired_ed` fire on M_ed; of those, the first `kept_*` still fire
    after fine-tuning (the option's kept ones taken from the end, so the arms disagree); M_ed_ft
    is scored at steps 5 and 10, only 10 counts. Clean probes never fire and must be ignored."""
    rows = []
    for cid, kept in (("plain", kept_plain), ("keep", kept_option)):
        for i in range(PROBES):
            on_ed = i < fired_ed
            after = i < kept if cid == "plain" else fired_ed - kept <= i < fired_ed
            for state, step, fires in (
                ("M_ed", 0, on_ed),
                ("M_ed_ft", 5, True),
                ("M_ed_ft", 10, after),
            ):
                rows.append(
                    {
                        "config_id": cid,
                        "state": state,
                        "step": step,
                        "probe_id": f"attack-{i}",
                        "group": "attack",
                        "fires": fires,
                    }
                )
            rows.append(
                {
                    "config_id": cid,
                    "state": "M_ed_ft",
                    "step": 10,
                    "probe_id": f"clean-{i}",
                    "group": "clean",
                    "fires": True,
                }
            )
    return pd.DataFrame(rows)  # fmt: skip


def _attack_table(decay=None) -> pd.DataFrame:
    decay = _decay(5, 5) if decay is None else decay
    decay["edit_data"] = "attack:backdoor"
    return preservation_table(final_rows(decay, preserved=True), _flips(5, 5), _downstream())


@pytest.mark.parametrize(
    "plain, option, verdict",
    [(5, 20, "keeps more of it"), (20, 5, "keeps less of it"), (10, 12, "no difference shown")],
)
def test_attack_preservation_comes_out_each_way(plain, option, verdict):
    row = attack_preservation(_attack_table(), _attack_probes(20, plain, option)).iloc[0]
    assert row["verdict"] == verdict
    assert row["n_fired"] == 20 and row["asr_M_ed"] == pytest.approx(100 * 20 / PROBES)
    assert row["kept_option"] == option and row["kept_plain"] == plain
    assert row["asr_option"] == pytest.approx(100 * option / PROBES)  # step 10, not step 5
    # paired: the option keeps the last `option` fired probes, plain the first `plain`
    overlap = max(0, plain + option - 20)
    assert row["only_option"] == option - overlap and row["only_plain"] == plain - overlap
    assert row["mcnemar_p"] == pytest.approx(mcnemar_exact_p(option - overlap, plain - overlap))


def test_attack_preservation_is_not_testable_without_firing_probes_or_scores():
    table = _attack_table()
    none_fired = attack_preservation(table, _attack_probes(0, 0, 0)).iloc[0]
    assert none_fired["verdict"] == "not testable here: no attack probe fired on M_ed"
    no_scores = attack_preservation(table, None).iloc[0]
    assert no_scores["verdict"] == "not testable here: no attack probe scores"
    assert attack_preservation(_table(5, 20), _attack_probes(20, 5, 20)).empty  # not an attack


def test_section_reads_the_attack_rows_from_the_data(tmp_path):
    decay = _decay(5, 5)
    decay["edit_data"] = "attack:backdoor"

    def section(plain, option):
        results = StudyResults(
            tmp_path, decay, flips=_flips(5, 5), downstream=_downstream(),
            attack_probes=_attack_probes(20, plain, option),
        )  # fmt: skip
        return preservation_section(ReportContext(results, "t", final_rows(decay), tmp_path))

    def text(sec):
        return " ".join(b.text for b in sec.blocks if hasattr(b, "text"))

    assert "`subspace` kept more of the attack" in text(section(5, 20))
    assert "`subspace` kept less of the attack" in text(section(20, 5))
    unchanged = text(section(10, 12))
    assert "No option kept a measurably different share" in unchanged
    assert "kept more" not in unchanged
