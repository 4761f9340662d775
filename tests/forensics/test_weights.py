"""Forensics on the tiny model: a synthetic low-rank delta is located at exactly its layers, with and
without fine-tuning-like changes everywhere; a model that was only fine-tuned, and the base itself,
are judged unedited; the edited facts' subjects rank first among candidates."""

from __future__ import annotations

import copy

import pytest
import torch

from editdecay.data.loaders import load_requests
from editdecay.editing.config import MemitConfig, TargetConfig
from editdecay.editing.memit import memit_edit
from editdecay.forensics.weights import ForensicsConfig, family_of, locate_edits
from editdecay.models.registry import LoadedModel


def _low_rank_edit(model, adapter, layers, rank=3, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in layers:
            w = dict(model.named_parameters())[adapter.mlp_out_weight_name(layer)]
            u = torch.randn(w.shape[0], rank, generator=g)
            v = torch.randn(rank, w.shape[1], generator=g)
            d = u @ v
            w.add_(d * scale * w.norm() / d.norm())


def _fine_tune_like(model, scale=0.01, seed=1):
    """Dense changes of similar relative size in every matrix (what fine-tuning leaves)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, w in model.named_parameters():
            if w.dim() == 2:
                noise = torch.randn(w.shape, generator=g)
                w.add_(noise * scale * w.norm() / noise.norm())


@pytest.fixture
def suspect(tiny_lm):
    return copy.deepcopy(tiny_lm.model)


def test_family_names_the_module_across_layers():
    assert family_of("model.layers.12.mlp.down_proj.weight") == (
        "model.layers.{}.mlp.down_proj.weight",
        12,
    )
    assert family_of("lm_head.weight") == ("lm_head.weight", None)


def test_a_synthetic_edit_is_found_at_its_layers(tiny_lm, suspect):
    _low_rank_edit(suspect, tiny_lm.adapter, [1, 3], rank=3)
    report, table = locate_edits(tiny_lm, suspect)
    assert report["edited_layers"] == [1, 3]
    assert report["edited_modules"] == [tiny_lm.adapter.mlp_out_weight_name(l) for l in (1, 3)]
    assert report["n_facts_estimate"] == 3


def test_the_edit_is_still_found_under_dense_fine_tuning_changes(tiny_lm, suspect):
    _low_rank_edit(suspect, tiny_lm.adapter, [2], rank=2, scale=0.2)
    _fine_tune_like(suspect, scale=0.01)
    report, _ = locate_edits(tiny_lm, suspect)
    assert report["edited_layers"] == [2]


def test_no_edit_is_found_in_the_base_or_a_fine_tuned_only_model(tiny_lm, suspect):
    report, _ = locate_edits(tiny_lm, copy.deepcopy(tiny_lm.model))
    assert report["edited_layers"] == [] and report["n_facts_estimate"] == 0
    _fine_tune_like(suspect, scale=0.01)
    report, table = locate_edits(tiny_lm, suspect)
    assert report["edited_layers"] == [] and report["changed_matrices"] == len(table)


def _absolute_noise(model, size, seed=2):
    """Dense changes of the same absolute ‖ΔW‖ in every matrix."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, w in model.named_parameters():
            if w.dim() == 2:
                noise = torch.randn(w.shape, generator=g)
                w.add_(noise * size / noise.norm())


def test_a_small_matrix_moved_like_every_other_is_not_an_edit(tiny_lm):
    """Fine-tuning moves a matrix with a small ‖W‖ by a large relative amount at an ordinary σ₁
    (SmolLM2's layer-0 attention under full fine-tuning): an outlier of the relative norm, but no
    direction stronger than the module's other layers got; an edit on top of it is still found."""
    base_model = copy.deepcopy(tiny_lm.model)
    small = tiny_lm.adapter.mlp_out_weight_name(0)
    with torch.no_grad():
        dict(base_model.named_parameters())[small].mul_(0.05)
    base = LoadedModel(tiny_lm.name, base_model, tiny_lm.tokenizer, tiny_lm.adapter, "small")
    suspect = copy.deepcopy(base_model)
    _absolute_noise(suspect, size=0.05)
    report, table = locate_edits(base, suspect)
    row = table.set_index("parameter").loc[small]
    assert row["robust_z"] > ForensicsConfig().outlier_z  # the relative norm alone would flag it
    assert report["edited_layers"] == [] and report["n_facts_estimate"] == 0
    _low_rank_edit(suspect, tiny_lm.adapter, [2], rank=2, scale=0.2)
    found, _ = locate_edits(base, suspect)
    assert found["edited_layers"] == [2]


def test_a_stricter_threshold_can_miss_a_weak_edit(tiny_lm, suspect):
    _low_rank_edit(suspect, tiny_lm.adapter, [2], rank=2, scale=0.012)
    _fine_tune_like(suspect, scale=0.01)
    found, _ = locate_edits(tiny_lm, suspect, cfg=ForensicsConfig(outlier_z=1e9))
    assert found["edited_layers"] == []


def test_edited_subjects_rank_first(tiny_lm, tiny_stat_spec, tiny_stats, suspect):
    requests = load_requests("counterfact", n=40).requests
    edited = requests[:4]
    cfg = MemitConfig(layers=(1, 2, 3), targets=TargetConfig(steps=10), statistic=tiny_stat_spec)
    delta = memit_edit(tiny_lm, edited, cfg, stats=tiny_stats)
    delta.apply(suspect, force=True)
    report, _ = locate_edits(tiny_lm, suspect, candidates=requests)
    assert report["edited_layers"] == [1, 2, 3]
    assert report["n_facts_estimate"] == 4
    top = [s["case_id"] for s in report["subjects"][:4]]
    assert set(top) == {r.case_id for r in edited}


def test_cli_forensics_on_an_exported_edit(tiny_lm, tmp_path, suspect):
    import json

    from typer.testing import CliRunner

    from editdecay.cli import app

    _low_rank_edit(suspect, tiny_lm.adapter, [2], rank=2)
    suspect.save_pretrained(tmp_path / "suspect")
    tiny_lm.tokenizer.save_pretrained(tmp_path / "suspect")
    result = CliRunner().invoke(
        app,
        [
            "forensics",
            "--base",
            "tiny-llama",
            "--suspect",
            str(tmp_path / "suspect"),
            "--out",
            str(tmp_path / "f"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    assert report["edited_layers"] == [2] and report["n_facts_estimate"] == 2
    assert {"edited_layers", "edited_modules", "n_facts_estimate", "subjects"} <= set(report)
