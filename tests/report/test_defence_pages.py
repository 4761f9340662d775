"""Pages of the defence commands: built from their files alone, saying what was and was not found."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from editdecay.cli import app
from editdecay.report.defence_pages import write_defence_page

DEFENCES = Path(__file__).resolve().parents[2] / "results" / "defences"


def _forensics(out: Path, edited_layers: list[int], recovery: dict | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for layer in range(4):
        for module in ("mlp.down_proj", "self_attn.q_proj"):
            edited = layer in edited_layers and module == "mlp.down_proj"
            rows.append(
                {
                    "parameter": f"model.layers.{layer}.{module}.weight",
                    "family": f"model.layers.{{}}.{module}.weight",
                    "layer": float(layer),
                    "norm": 1.0,
                    "relative_norm": 0.2 if edited else 0.001 * (layer + 1),
                    "sigma_1": 1.0,
                    "stable_rank": 2.0,
                    "effective_rank": 3.0,
                    "top_singular": "1 0.5",
                    "robust_z": 20.0 if edited else 0.5,
                    "edited": edited,
                }
            )
    pd.DataFrame(rows).to_csv(out / "differences.csv", index=False)
    report = {
        "edited_layers": edited_layers,
        "edited_modules": [f"model.layers.{l}.mlp.down_proj.weight" for l in edited_layers],
        "n_facts_estimate": 3 if edited_layers else 0,
        "changed_matrices": 8,
        "matrices": 9,
        "rule": {"outlier_z": 6.0, "floor": 1e-6, "rank_tol": 1e-3, "text": "robust z"},
        "subjects": [
            {"case_id": f"c{i}", "subject": f"S{i}", "score": 1 - i / 20} for i in range(12)
        ],
        "base": "base-model",
        "suspect": "suspect-model",
    }
    if recovery:
        report["recovery"] = recovery
    (out / "report.json").write_text(json.dumps(report))


def test_a_found_edit_names_its_layers_subjects_recovery_and_undo(tmp_path):
    recovery = {"n_candidates": 12, "n_edited_candidates": 3, "top1_edited": True,
                "precision_at_10": 0.3, "recall_at_n": 2 / 3}  # fmt: skip
    _forensics(tmp_path, [1, 2], recovery)
    undo = {"mode": "undo-rank", "n_requests": 3, "n_successful_before": 3, "n_reverted": 2,
            "reverted": 66.7, "es_before": 100.0, "es_after": 40.0, "ns_before": 70.0,
            "ns_after": 72.0, "perplexity_before": 21.0, "perplexity_after": 20.5}  # fmt: skip
    (tmp_path / "undo.json").write_text(json.dumps(undo))
    markdown, html = write_defence_page(tmp_path)
    text = markdown.read_text()
    assert "judged edited: **2** matrices at layers **[1, 2]**" in text
    assert "model.layers.1.mlp.down_proj.weight" in text and "| S0 " in text
    assert "top-1 is an edited subject: yes" in text and "precision @ 10: 0.30" in text
    assert "2 of the 3 edits" in text and "**66.7 %**" in text and "| ns " in text
    assert (tmp_path / "plots" / "differences.png").stat().st_size > 0
    assert "<h1" in html.read_text() and "Undo" in html.read_text()


def test_no_edit_found_says_none_and_shows_the_largest_differences(tmp_path):
    _forensics(tmp_path, [])
    text = write_defence_page(tmp_path)[0].read_text()
    assert "judged edited: **none**" in text
    assert "No matrix was judged edited; the ten with the largest robust z" in text
    assert "## Undo" not in text and "top-1" not in text


def test_repair_and_detect_pages(tmp_path):
    repair = {"method": "memit", "n_requests": 10, "n_flipped": 4, "n_repaired": 3, "repaired": 75.0,
              "n_broken_by_repair": 1, "success_tuned": 50.0, "success_repaired": 80.0,
              "success_full": 90.0, "repair_seconds": 12.0, "seconds_per_repaired_edit": 4.0,
              "full_seconds": 40.0, "model": "tuned", "edits": "edits-dir"}  # fmt: skip
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "repair.json").write_text(json.dumps(repair))
    text = write_defence_page(tmp_path / "r")[0].read_text()
    assert "4 of 10 memit edits flipped" in text and "3 restored" in text and "1 edit(s)" in text
    (tmp_path / "d").mkdir()
    detect = {"model": "m", "requests": "req.jsonl", "auroc": 0.5, "n_facts": 2, "n_unedited": 2,
              "detector": "det"}  # fmt: skip
    (tmp_path / "d" / "detect.json").write_text(json.dumps(detect))
    pd.DataFrame({"case_id": list("abcd"), "edited": [True, True, False, False],
                  "score": [0.2, 0.8, 0.3, 0.7]}).to_csv(tmp_path / "d" / "scores.csv", index=False)  # fmt: skip
    text = write_defence_page(tmp_path / "d")[0].read_text()
    assert "AUROC **0.500**" in text and "detector-scores" in text


def test_a_directory_without_defence_outputs_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to report"):
        write_defence_page(tmp_path)


def test_report_command_writes_a_defence_page(tmp_path):
    _forensics(tmp_path, [3])
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "layers **[3]**" in (tmp_path / "report.md").read_text()


# the directories a defence command wrote (study reports such as defences/study and
# defences/distill are checked with the other study reports in test_committed_reports)
DEFENCE_PAGES = sorted(
    p.parent.name
    for p in DEFENCES.glob("*/report.md")
    if any((p.parent / name).is_file() for name in ("report.json", "repair.json", "detect.json"))
)


@pytest.mark.parametrize("name", DEFENCE_PAGES)
def test_committed_defence_pages_regenerate_identically(tmp_path, name):
    copy = tmp_path / name
    shutil.copytree(
        DEFENCES / name, copy, ignore=shutil.ignore_patterns("report.md", "report.html", "plots")
    )
    write_defence_page(copy)
    assert (copy / "report.md").read_text() == (DEFENCES / name / "report.md").read_text(), (
        f"results/defences/{name}/report.md is stale: `editdecay report results/defences/{name}`"
    )
