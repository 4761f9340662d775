"""The defence commands end to end on the tiny model: edit → export → forensics --undo, detect
(train and score), finetune with preservation → repair."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from editdecay.cli import app

FT = ["--examples", "12", "--steps", "2", "--set", "batch_size=4", "--set", "micro_batch_size=2"]
FT += ["--set", "cutoff_len=64", "--set", "r=4", "--set", "alpha=8", "--set", "warmup_steps=1"]


@pytest.fixture(scope="module")
def runner():
    return CliRunner(env={"EDITDECAY_NO_PROGRESS": "1"})


def _run(runner, *args):
    result = runner.invoke(app, [str(a) for a in args])
    text = " ".join(result.output.split())
    assert result.exit_code == 0, (text, result.exception)
    return text


@pytest.fixture(scope="module")
def edited(runner, tmp_path_factory):
    root = tmp_path_factory.mktemp("defences")
    edit = root / "edit"
    _run(runner, "edit", "--model", "tiny-llama", "--n", "4", "--stat-tokens", "2000",
         "--set", "targets.steps=10", "--out", edit)  # fmt: skip
    _run(
        runner,
        "export",
        "--delta",
        edit / "delta",
        "--out",
        root / "suspect",
        "--model",
        "tiny-llama",
    )
    return root, edit


def test_forensics_undo_full_restores_the_base_answers(runner, edited):
    root, edit = edited
    out = root / "forensics"
    text = _run(runner, "forensics", "--base", "tiny-llama", "--suspect", root / "suspect",
                "--candidates", edit / "requests.jsonl", "--undo", "full", "--ppl-tokens", "0",
                "--ds-per-task", "1", "--out", out)  # fmt: skip
    assert "reverted" in text and "DS (rank, 7 items)" in text
    report = json.loads((out / "report.json").read_text())
    summary = json.loads((out / "undo.json").read_text())
    assert report["edited_layers"] and (out / "undo" / "delta.json").exists()
    table = pd.read_csv(out / "undo_edits.csv")
    edits = pd.read_csv(edit / "edits.csv")
    unedited = edits[edits["state"] == "unedited"].set_index("case_id")["es"] > 0.5
    # after a full undo of an unfine-tuned edit each request answers as on the base model
    assert list(table["success_after"]) == list(unedited.loc[table["case_id"]])
    assert summary["n_reverted"] == int((table["success_before"] & ~table["success_after"]).sum())
    ds = summary["ds"]  # one item of each of the 7 commonsense tasks, before and after, paired
    assert ds["n_items"] == 7 and set(ds) == {"n_items", "rank", "generate"}
    changed = ds["rank"]["only_right_before"] + ds["rank"]["only_right_after"]
    assert 0 <= changed <= 7 and 0.0 <= ds["rank"]["mcnemar_p"] <= 1.0
    assert "DS, rank (7 items" in (out / "report.md").read_text()


def test_forensics_refuses_a_negative_ds_count(runner, edited):
    root, edit = edited
    result = runner.invoke(app, ["forensics", "--base", "tiny-llama", "--suspect",
                                 str(root / "suspect"), "--undo", "full", "--ds-per-task", "-1"])  # fmt: skip
    assert result.exit_code != 0 and "--ds-per-task" in result.output


def test_detect_trains_and_scores(runner, edited):
    root, edit = edited
    out = root / "detect"
    text = _run(runner, "detect", "--model", root / "suspect", "--requests", edit / "requests.jsonl",
                "--detector", root / "detector", "--train", edit, "--base", "tiny-llama",
                "--negatives-offset", "100", "--n-negatives", "6", "--out", out)  # fmt: skip
    assert "AUROC" in text
    summary = json.loads((out / "detect.json").read_text())
    assert 0.0 <= summary["auroc"] <= 1.0 and summary["n_facts"] == 4
    scores = pd.read_csv(out / "scores.csv")
    assert scores["edited"].sum() == 4 and len(scores) == 4 + summary["n_unedited"]
    assert (root / "detector" / "detector.json").exists()


def test_finetune_with_preservation_then_repair(runner, edited):
    root, edit = edited
    ft = root / "ft"
    _run(runner, "finetune", "--model", "tiny-llama", "--out", ft, *FT, "--merge",
         "--preserve-edits", edit, "--preserve", "activation", "--apply-edits")  # fmt: skip
    out = root / "repair"
    text = _run(runner, "repair", "--model", ft / "model", "--edits", edit,
                "--stats-from", "tiny-llama", "--out", out)  # fmt: skip
    assert "flipped edits repaired" in text
    summary = json.loads((out / "repair.json").read_text())
    table = pd.read_csv(out / "repair_edits.csv")
    assert summary["n_flipped"] == int(table["flipped"].sum())
    assert summary["n_repaired"] == int((table["flipped"] & table["success_repaired"]).sum())
    assert summary["stats_from"] == "tiny-llama" and summary["full_seconds"] > 0


def test_recovery_counts_the_edited_candidates_at_the_top():
    from editdecay.cli.forensics import recovery
    from editdecay.data.requests import EditRequest

    edited = [EditRequest(f"e{i}", "{} is", f"s{i}", "x") for i in range(3)]
    ranked = [{"case_id": c} for c in ["e0", "o1", "e1", "e2", "o2"]]
    r = recovery(ranked, edited)
    assert r["top1_edited"] and r["n_edited_candidates"] == 3
    assert r["recall_at_n"] == 2 / 3 and r["precision_at_10"] == 3 / 5
    assert not recovery([{"case_id": "o1"}, {"case_id": "e0"}], edited)["top1_edited"]
