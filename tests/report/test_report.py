"""The study report: synthetic results directories in, Markdown / HTML / PNG out."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from editdecay.report import format_markdown_table, key_table, write_report
from editdecay.report.plot_sections import TITLE_STEPS, TITLE_TRAINING
from editdecay.report.plots import plot_labels
from editdecay.report.sections import (
    TITLE_DOWNSTREAM,
    TITLE_ES,
    TITLE_FLIP_RATIO,
    TITLE_FLIPS,
    TITLE_KEY,
    TITLE_RELATIVE,
    TITLE_SELECTIVE,
)
from editdecay.schema import DECAY

EDIT_METHODS = ("memit", "alphaedit")
ES_ED = {("memit", 0): 90.0, ("memit", 1): 94.0, ("alphaedit", 0): 96.0, ("alphaedit", 1): 100.0}
# relative decay (%) per (edit method, fine-tuning method), for seeds 0 and 1
RELATIVE = {
    ("memit", "lora"): (10.0, 14.0),
    ("memit", "full"): (2.0, 4.0),
    ("alphaedit", "lora"): (30.0, 34.0),
    ("alphaedit", "full"): (50.0, 60.0),
}
# the selective-layer set: AlphaEdit + LoRA, seed 0, on other layer choices
SELECTIVE = {"edited": 40.0, "non-edited": 37.0}
MULTI_STEP = "memit-lora-s0"
NO_DELTA = "alphaedit-full-s0"  # delta_es left empty: the report must derive it


def _row(
    edit_method: str,
    ft_method: str,
    seed: int,
    layers: str | float = "all",
    step: int = 10,
    relative: float | None = None,
    final: bool = True,
) -> dict[str, object]:
    es_ed = ES_ED[(edit_method, seed)]
    layer_tag = "" if layers in ("all",) or ft_method == "none" else f"-{layers}"
    row = DECAY.row(
        **{
            "config_id": f"{edit_method}-{ft_method}{layer_tag}-s{seed}",
            "model": "tiny",
            "edit_method": edit_method,
            "edit_data": "counterfact",
            "n_edits": 10,
            "ft_method": ft_method,
            "ft_data": "commonsense" if ft_method != "none" else np.nan,
            "ft_layers": layers if ft_method != "none" else np.nan,
            "seed": seed,
            "step": 0 if ft_method == "none" else step,
            "final": final,
            "es_ed": es_ed,
            "ps_ed": es_ed - 10,
            "ns_ed": 70.0,
            "es_M": 20.0,
            "indicator": "p_new>p_true",
            "efficacy_kind": "counterfact",
            "ds_M": 40.0,
            "ds_M_ed": 38.0,
            "ds_degradation_noft": 5.0,
            "ds_rank_M": np.nan,
            "ds_rank_M_ed": np.nan,
            "ds_rank_M_ft": np.nan,
            "ds_rank_M_ed_ft": np.nan,
            "ds_rank_degradation_noft": np.nan,
            "ds_rank_degradation_ft": np.nan,
            "n_success_ed": 9,
            "n_stable": 6,
            "n_erased": 2,
            "n_emergent": 1,
            "n_impossible": 1,
        }
    )
    nan_after = {
        "es_ed_ft": np.nan,
        "ps_ed_ft": np.nan,
        "ns_ed_ft": np.nan,
        "delta_es": np.nan,
        "relative_decay": np.nan,
        "efr": np.nan,
        "emergent_ratio": np.nan,
        "es_M_ft": np.nan,
        "ds_M_ft": np.nan,
        "ds_M_ed_ft": np.nan,
        "ds_degradation_ft": np.nan,
    }
    if ft_method == "none":
        row.update(nan_after)
        return row
    assert relative is not None
    es_after = es_ed * (1 - relative / 100)
    row.update(
        {
            "es_ed_ft": es_after,
            "ps_ed_ft": es_after - 5,
            "ns_ed_ft": 75.0,
            "delta_es": np.nan if row["config_id"] == NO_DELTA else es_ed - es_after,
            "relative_decay": relative,
            "efr": relative + 1,
            "emergent_ratio": 0.5,
            "es_M_ft": 21.0,
            "ds_M_ft": 60.0,
            "ds_M_ed_ft": 57.0,
            "ds_degradation_ft": 5.0,
        }
    )
    return row


def _decay_rows(selective: bool = True) -> list[dict[str, object]]:
    rows = []
    for edit_method in EDIT_METHODS:
        for seed in (0, 1):
            rows.append(_row(edit_method, "none", seed))
            for ft_method in ("lora", "full"):
                relative = RELATIVE[(edit_method, ft_method)][seed]
                if f"{edit_method}-{ft_method}-s{seed}" == MULTI_STEP:
                    rows.append(
                        _row(edit_method, ft_method, seed, step=5, relative=5.5, final=False)
                    )
                rows.append(_row(edit_method, ft_method, seed, relative=relative))
    if selective:
        for layers, relative in SELECTIVE.items():
            rows.append(_row("alphaedit", "lora", 0, layers=layers, relative=relative))
    return rows


def _flips(config_id: str, step: int, categories: dict[str, int]) -> list[dict[str, object]]:
    rows = []
    case = 0
    for category, count in categories.items():
        for _ in range(count):
            success_before = category in ("stable", "erased")
            success_after = category in ("stable", "emergent")
            rows.append(
                {
                    "config_id": config_id,
                    "step": step,
                    "case_id": case,
                    "subject": f"Subject {case}",
                    "target_new": f"new{case}",
                    "target_true": f"true{case}",
                    "category": category,
                    "success_before": success_before,
                    "success_after": success_after,
                    "efficacy_before": 0.9 if success_before else 0.1,
                    "efficacy_after": 0.8 if success_after else 0.2,
                    "answer_before": f"answer-{category}-{case}-before",
                    "answer_after": f"answer-{category}-{case}-after",
                }
            )
            case += 1
    return rows


def _write_run(run_dir: Path, selective: bool = True) -> pd.DataFrame:
    results = run_dir / "results"
    results.mkdir(parents=True)
    decay = pd.DataFrame(_decay_rows(selective))
    decay.to_csv(results / "decay.csv", index=False)
    configs = decay.drop_duplicates("config_id")[
        [
            "config_id",
            "model",
            "edit_method",
            "edit_data",
            "n_edits",
            "ft_method",
            "ft_data",
            "ft_layers",
            "seed",
        ]
    ].copy()
    configs["lr"] = 2e-4
    configs.to_csv(results / "configs.csv", index=False)
    flips = pd.DataFrame(
        _flips(MULTI_STEP, 5, {"stable": 8, "erased": 0, "emergent": 1, "impossible": 1})
        + _flips(MULTI_STEP, 10, {"stable": 6, "erased": 2, "emergent": 1, "impossible": 1})
        + _flips(
            "alphaedit-lora-s0", 10, {"stable": 3, "erased": 5, "emergent": 0, "impossible": 2}
        )
    )
    flips.to_csv(results / "flips.csv", index=False)
    edits = pd.DataFrame(
        {
            "config_id": [MULTI_STEP] * 2,
            "state": ["M_ed", "M_ed_ft"],
            "step": [0, 10],
            "case_id": [0, 0],
            "es": [1.0, 1.0],
            "ps": [1.0, 0.5],
            "ns": [1.0, 1.0],
        }
    )
    edits.to_csv(results / "edits.csv", index=False)
    edits.to_parquet(results / "edits.parquet")
    steps = np.arange(1, 11)
    training = pd.concat(
        [
            pd.DataFrame(
                {"config_id": MULTI_STEP, "state": "M_ed_ft", "step": steps, "loss": 3.0 / steps}
            ),
            pd.DataFrame(
                {"config_id": MULTI_STEP, "state": "M_ft", "step": steps, "loss": 3.1 / steps}
            ),
        ]
    )
    training.to_csv(results / "training.csv", index=False)
    (results / "study.json").write_text(
        json.dumps(
            {
                "name": "synthetic-study",
                "command": ["editdecay", "study", "run", "--seeds", "0,1"],
                "versions": {"editdecay": "0.1.0", "torch": "2.13.0"},
                "seeds": [0, 1],
                "stage_environments": {
                    "cuda, torch 2.11.0+cu130, editdecay 0.1.0": 30,
                    "device not recorded, torch 2.13.0+cpu, editdecay 0.1.0": 7,
                },
            }
        )
    )
    return decay


def _sections(markdown: str) -> dict[str, str]:
    """Level-2 sections of the report by title."""
    sections: dict[str, str] = {}
    title = None
    for line in markdown.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            sections[title] = ""
        elif title is not None:
            sections[title] += line + "\n"
    return sections


def _tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table in `text` as a list of {header: cell} rows."""
    tables: list[list[dict[str, str]]] = []
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            cells = [[c.strip() for c in row.strip().strip("|").split(" | ")] for row in block]
            header, body = cells[0], cells[2:]
            tables.append([dict(zip(header, row)) for row in body])
            block = []
    return tables


def _find(rows: list[dict[str, str]], **match: str) -> dict[str, str]:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one row matching {match}, found {len(found)}: {rows}"
    return found[0]


@pytest.fixture
def report(tmp_path):
    run_dir = tmp_path / "run"
    decay = _write_run(run_dir)
    result = write_report(run_dir)
    markdown = result.markdown_path.read_text()
    return result, markdown, _sections(markdown), decay


def test_writes_markdown_html_and_self_contained_plots(report):
    result, markdown, _, _ = report
    run_dir = result.markdown_path.parent
    assert result.markdown_path == run_dir / "report.md" and result.markdown_path.is_file()
    assert result.html_path == run_dir / "report.html" and result.html_path.is_file()
    assert sorted(p.name for p in result.plot_paths) == [
        "decay_bars.png",
        "decay_steps.png",
        "training_loss.png",
    ]
    for path in result.plot_paths:
        assert path.parent == run_dir / "plots"
        assert path.read_bytes().startswith(b"\x89PNG")
        assert f"](plots/{path.name})" in markdown

    page = result.html_path.read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.IGNORECASE)
    assert "<link" not in page and "<script" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(result.plot_paths)
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert "<style>" in page

    for name in ("decay.csv", "flips.csv", "edits.csv"):
        assert f"[results/{name}](results/{name})" in markdown
    assert "synthetic-study" in markdown and "editdecay study run --seeds 0,1" in markdown
    assert "torch" in markdown and "2.13.0" in markdown
    assert (
        "| cuda, torch 2.11.0+cu130, editdecay 0.1.0" in markdown
        and "| device not recorded" in markdown
    )
    assert "could not be built" not in markdown


def test_paper_tables_hold_the_decay_numbers(report):
    _, _, sections, _ = report

    # Table 4: memit + LoRA averages relative decay 10 and 14 over the seeds (the step-5 row, 5.5, is not final)
    table4 = _tables(sections[TITLE_RELATIVE])[0]
    memit = _find(table4, edit_method="memit")
    assert memit["LoRA"] == "12.00 ± 2.83"
    assert memit["Full FT"] == "3.00 ± 1.41"
    assert "5.50" not in sections[TITLE_RELATIVE]
    average = _find(table4, edit_method="average")
    assert average["LoRA"] == f"{(12.0 + 32.0) / 2:.2f}"
    assert (
        "relative_decay" in sections[TITLE_RELATIVE]
        and "results/decay.csv" in sections[TITLE_RELATIVE]
    )

    # Table 2: No FT = es_ed, fine-tuned columns = es_ed_ft; the selective-layer configs stay out
    table2 = _tables(sections[TITLE_ES])[0]
    memit = _find(table2, edit_method="memit")
    assert memit["No FT"] == "92.00 ± 2.83"
    assert memit["LoRA"] == "80.92 ± 0.11"  # 90 × 0.90 and 94 × 0.86
    assert memit["seeds"] == "2"
    alphaedit = _find(table2, edit_method="alphaedit")
    assert (
        alphaedit["LoRA"] == "66.60 ± 0.85"
    )  # 96 × 0.70 and 100 × 0.66; not the edited-layer 57.60
    assert "DoRA" not in alphaedit
    assert "ft_layers = all" in sections[TITLE_ES]

    # Table 5: ΔES (points), EFR and emergent ratio per method
    table5 = _tables(sections[TITLE_FLIP_RATIO])[0]
    memit = _find(table5, edit_method="memit")
    assert memit["LoRA ΔES"] == "11.08 ± 2.94"
    assert memit["LoRA EFR"] == "13.00 ± 2.83"
    assert memit["LoRA emergent"] == "0.50 ± 0.00"
    # ΔES of NO_DELTA is derived: 96 − 48 = 48; with seed 1 (100 − 40 = 60) the mean is 54
    assert _find(table5, edit_method="alphaedit")["Full FT ΔES"] == "54.00 ± 8.49"


def test_key_table_has_one_row_per_final_config(report, tmp_path):
    result, _, sections, decay = report
    table = key_table(pd.read_csv(tmp_path / "run" / "results" / "decay.csv"))
    assert len(table) == decay["config_id"].nunique() == 14
    assert table["config_id"].is_unique
    pd.testing.assert_frame_equal(table, result.key_table)

    by_id = table.set_index("config_id")
    for row in decay[decay["final"]].itertuples():
        expected = row.es_ed - row.es_ed_ft
        got = by_id.loc[row.config_id, "ΔES"]
        if math.isnan(expected):
            assert math.isnan(got), row.config_id
        else:
            assert got == pytest.approx(expected), row.config_id
    assert by_id.loc[MULTI_STEP, "ES after"] == pytest.approx(81.0)  # the final step, not step 5
    assert by_id.loc[NO_DELTA, "ΔES"] == pytest.approx(48.0)
    assert by_id.loc["alphaedit-lora-edited-s0", "rel. decay %"] == pytest.approx(40.0)
    assert by_id.loc["memit-lora-s1", "DS M_ed_ft"] == pytest.approx(57.0)

    headline, per_config = _tables(sections[TITLE_KEY])
    shown = _find(per_config, config_id="memit-lora-s1")
    assert shown["ES before → after"] == "94.00 → 80.84"
    assert shown["ΔES"] == "13.16"
    assert shown["configuration"] == "memit · lora · commonsense · all layers · seed 1"
    assert len(per_config) == 14
    # the headline: one row per fine-tuning method (all layers), the mean over its configurations
    lora = decay[decay["final"] & (decay["ft_method"] == "lora") & (decay["ft_layers"] == "all")]
    row = _find(headline, **{"fine-tuning": "LoRA"})
    assert row["configurations"] == str(len(lora))
    assert float(row["ΔES"]) == pytest.approx((lora["es_ed"] - lora["es_ed_ft"]).mean(), abs=0.01)
    assert "<details><summary>Per configuration (14)</summary>" in sections[TITLE_KEY]


def test_selective_section_only_when_layers_vary(report, tmp_path):
    _, _, sections, _ = report
    selective = _tables(sections[TITLE_SELECTIVE])
    es = _find(selective[0], metric="ES")
    assert es["M"] == "20.00 ± 0.00"
    assert es["M_ed"] == "98.00 ± 2.83"
    assert es["ft all"] == "66.60 ± 0.85"
    assert es["ft edited"] == "57.60"
    assert es["ft non-edited"] == "60.48"
    assert _find(selective[0], metric="PS")["ft edited"] == "52.60"
    assert _find(selective[0], metric="DS")["ft non-edited"] == "57.00"
    assert {r["config_id"] for r in selective[1]} == {
        "alphaedit-lora-s0",
        "alphaedit-lora-s1",
        "alphaedit-lora-edited-s0",
        "alphaedit-lora-non-edited-s0",
    }

    run_dir = tmp_path / "uniform"
    _write_run(run_dir, selective=False)
    markdown = write_report(run_dir).markdown_path.read_text()
    assert TITLE_SELECTIVE not in markdown
    assert "Selective" not in markdown


def test_flip_categories_counted_at_the_last_step(report):
    _, _, sections, _ = report
    totals, counts, examples = _tables(sections[TITLE_FLIPS])
    lora = _find(totals, ft_method="lora", ft_layers="all")
    assert int(lora["total"]) == sum(
        int(r["total"]) for r in counts if r["ft_method"] == "lora" and r["ft_layers"] == "all"
    )
    row = _find(counts, config_id=MULTI_STEP)
    assert (
        row["step"],
        row["stable"],
        row["erased"],
        row["emergent"],
        row["impossible"],
        row["total"],
    ) == ("10", "6", "2", "1", "1", "10")
    assert _find(counts, config_id="alphaedit-lora-s0")["erased"] == "5"
    erased = [r for r in examples if r["category"] == "erased"]
    assert 1 <= len(erased) <= 3
    assert all(r["answer M_ed → M_ed_ft"].startswith("answer-erased-") for r in erased)
    assert {r["category"] for r in examples} == {"stable", "erased", "emergent", "impossible"}


def test_downstream_and_steps_sections(report):
    _, _, sections, _ = report
    downstream = sections[TITLE_DOWNSTREAM]
    summary, detail = _tables(downstream)
    assert _find(summary, model="tiny")["LoRA"] == "5.00 ± 0.00 (n=4)"
    assert _find(detail, config_id="memit-full-s0")["DS M_ed_ft"] == "57.00"
    assert "rank-classification protocol: not measured" in downstream

    steps = _tables(sections[TITLE_STEPS])[0]
    assert [r["step"] for r in steps] == ["5", "10"]
    assert {r["config_id"] for r in steps} == {MULTI_STEP}
    assert steps[0]["es_ed_ft"] == f"{90 * 0.945:.2f}"
    assert TITLE_TRAINING in sections


def test_only_decay_csv_degrades_gracefully(tmp_path):
    run_dir = tmp_path / "bare"
    (run_dir / "results").mkdir(parents=True)
    decay = pd.DataFrame(
        {
            "config_id": ["a", "b"],
            "model": ["tiny", "tiny"],
            "edit_method": ["memit", "memit"],
            "n_edits": [5, 5],
            "ft_method": ["none", "lora"],
            "seed": [0, 0],
            "step": [0, 20],
            "final": [True, True],
            "es_ed": [80.0, 80.0],
            "es_ed_ft": [np.nan, 60.0],
            "ds_M": [np.nan, np.nan],
            "ds_M_ft": [np.nan, np.nan],
        }
    )
    decay.to_csv(run_dir / "results" / "decay.csv", index=False)

    result = write_report(run_dir, title="Bare run")
    markdown = result.markdown_path.read_text()
    sections = _sections(markdown)
    assert markdown.startswith("# Bare run")
    assert "could not be built" not in markdown
    assert "not measured" in sections[TITLE_DOWNSTREAM]
    assert "not measured" in sections[TITLE_FLIPS]
    assert (
        TITLE_SELECTIVE not in sections
        and TITLE_TRAINING not in sections
        and TITLE_STEPS not in sections
    )
    assert "`results/flips.csv`: not present" in markdown
    assert [p.name for p in result.plot_paths] == ["decay_bars.png"]
    assert result.html_path.read_text().count("data:image/png;base64,") == 1

    table2 = _tables(sections[TITLE_ES])[0]
    assert table2 == [
        {
            "model": "tiny",
            "edit_method": "memit",
            "edit_data": "—",
            "n_edits": "5",
            "No FT": "80.00",
            "LoRA": "60.00",
            "seeds": "1",
        }
    ]
    assert (
        _tables(sections[TITLE_RELATIVE])[0][0]["LoRA"] == "25.00"
    )  # derived from es_ed and es_ed_ft
    assert list(result.key_table["ΔES"].isna()) == [True, False]
    assert result.key_table["ΔES"].iloc[1] == pytest.approx(20.0)


def test_missing_decay_csv_is_a_clear_error(tmp_path):
    (tmp_path / "results").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "results" / "decay.csv"))):
        write_report(tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_format_markdown_table_shape():
    df = pd.DataFrame(
        {"name": ["a|b", "c"], "count": [3, 12], "value": [1.23456, np.nan], "rate": [0.5, 2.0]}
    )
    text = format_markdown_table(df, floatfmt={"value": ".1f", "rate": ".3f"})
    lines = text.splitlines()
    assert len(lines) == 2 + len(df)
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines)
    assert all(len(re.findall(r"(?<!\\)\|", line)) == df.shape[1] + 1 for line in lines)
    assert len({len(line) for line in lines}) == 1  # padded into aligned columns
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["name", "count", "value", "rate"]
    rule = [c.strip() for c in lines[1].strip("|").split("|")]
    assert not rule[0].endswith(":") and all(
        r.endswith(":") and set(r[:-1]) == {"-"} for r in rule[1:]
    )
    assert "a\\|b" in lines[2] and "1.2" in lines[2] and "0.500" in lines[2]
    assert "—" in lines[3] and "2.000" in lines[3] and "12" in lines[3]
    assert format_markdown_table(df.iloc[0:0]).count("\n") == 1
    assert "1.23" in format_markdown_table(df)


def test_plot_labels_name_only_the_settings_that_differ():
    frame = pd.DataFrame(
        {
            "config_id": ["long.a", "long.b", "long.b", "long.c"],
            "model": ["tiny"] * 4,
            "edit_method": ["memit", "memit", "memit", "alphaedit"],
            "n_edits": [50.0, 150.0, 150.0, 150.0],
            "ft_method": ["lora"] * 4,
            "ft_layers": ["all", "all", "all", "edited"],
            "seed": [0] * 4,
        }
    )
    assert plot_labels(frame) == {
        "long.a": "memit · 50 edits · all layers",
        "long.b": "memit · 150 edits · all layers",
        "long.c": "alphaedit · 150 edits · edited layers",
    }
    one = plot_labels(frame[frame["config_id"] == "long.a"])
    assert one == {"long.a": "lora · all layers"}
    # two configurations that differ only in a setting outside the label columns keep their ids
    twins = pd.DataFrame(
        {"config_id": ["x", "y"], "model": ["tiny"] * 2, "ft_method": ["lora"] * 2}
    )
    assert plot_labels(twins) == {"x": "x", "y": "y"}


def _odd_inputs(results: Path) -> None:
    """ft_data varies, ft_layers is a list string, no `final` column, odd optional files."""
    decay = pd.DataFrame(
        {
            "config_id": ["e", "h", "c", "c"],
            "model": ["tiny"] * 4,
            "edit_method": ["memit"] * 4,
            "edit_data": ["zsre"] * 4,
            "n_edits": [4] * 4,
            "ft_method": [np.nan, "dora", "dora", "dora"],
            "ft_data": [np.nan, "hotpotqa", "commonsense", "commonsense"],
            "ft_layers": [np.nan, "[1, 2]", "[1, 2]", "[1, 2]"],
            "seed": [0] * 4,
            "step": [0, 3, 1, 3],
            "es_ed": [50.0, 50.0, 50.0, 50.0],
            "es_ed_ft": [np.nan, 0.0, 45.0, 40.0],
            "efr": [np.nan, 100.0, 5.0, 20.0],
        }
    )
    decay.to_csv(results / "decay.csv", index=False)
    pd.DataFrame({"config_id": ["c"], "category": ["erased"]}).to_csv(
        results / "flips.csv", index=False
    )
    (results / "training.csv").write_text("")
    (results / "study.json").write_text("[1, 2]")


def _header_only(results: Path) -> None:
    (results / "decay.csv").write_text(
        "config_id,model,edit_method,ft_method,step,final,es_ed,es_ed_ft\n"
    )


@pytest.mark.parametrize("make", [_odd_inputs, _header_only])
def test_odd_inputs_still_give_a_report(tmp_path, make):
    (tmp_path / "results").mkdir()
    make(tmp_path / "results")
    result = write_report(tmp_path)
    markdown = result.markdown_path.read_text()
    assert "could not be built" not in markdown
    assert result.html_path.is_file()
    if make is _odd_inputs:
        sections = _sections(markdown)
        table2 = _tables(sections[TITLE_ES])[0]
        assert _find(table2, ft_data="commonsense")["DoRA"] == "40.00"  # the last step of "c"
        assert _find(table2, ft_data="hotpotqa")["No FT"] == "50.00"
        assert list(result.key_table["config_id"]) == ["e", "c", "h"]
        assert TITLE_STEPS in sections
    else:
        assert result.key_table.empty
