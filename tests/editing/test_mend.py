"""MEND on the tiny random Llama: the pseudo-gradient, the hypernetwork at init, training, the artifact, the editor."""

from __future__ import annotations

import json

import pytest
import torch
from torch.func import functional_call

from editdecay.data.loaders import load_requests
from editdecay.editing import EDITORS, default_config
from editdecay.editing.config import MendConfig
from editdecay.editing.delta import EditDelta, FingerprintMismatchError
from editdecay.editing.mend import (
    MendEditor,
    MendHypernet,
    MendNotTrainedError,
    MendTrainer,
    PrefixRunner,
    SequenceCache,
    build_targets,
    capture,
    compute_deltas,
    mend_edit,
    train_mend,
)
from editdecay.editing.mend.forward import target_nll
from editdecay.evaluation.scorer import Scorer
from editdecay.models.registry import fingerprint

LAYERS = (1, 2, 3)  # the last three of the tiny model's four


def _quick(**kw) -> MendConfig:
    return MendConfig.quick(layers=LAYERS, **kw)


@pytest.fixture(scope="module")
def train_requests():
    return load_requests("counterfact-train", n=12).requests


@pytest.fixture(scope="module")
def trained(tiny_lm):
    """A MEND editor after a handful of quick-train steps (shared; tests must not change it)."""
    return train_mend(tiny_lm, _quick(steps=4, eval_every=2))


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    return trained.save(tmp_path_factory.mktemp("mend") / "editor")


def _edit_batch(lm, requests, split=True):
    runner = PrefixRunner(lm, min(LAYERS), split=split)
    return runner, SequenceCache(runner).batch([(r.text, r.target_new) for r in requests])


def _fresh(lm, edit_lr=1e-2):
    return MendHypernet(
        build_targets(lm, LAYERS, ("mlp.down_proj", "mlp.up_proj")),
        rank=8,
        n_hidden=1,
        edit_lr=edit_lr,
    ).to(lm.model.device)


# ---------------------------------------------------------------------------- the pseudo-gradient
def test_delta_is_sum_of_outer_products_and_rank_bounded_by_tokens(tiny_lm, cf_requests):
    runner, batch = _edit_batch(tiny_lm, cf_requests[:1])
    hyper = _fresh(tiny_lm, edit_lr=0.5)
    captured, _ = capture(runner, batch, hyper.targets)
    for i, (u, d) in captured.items():
        t = hyper.targets[i]
        n_tokens = u.shape[0]
        assert (
            n_tokens == int(batch.grad_mask.sum()) < min(t.d_in, t.d_out)
        )  # the rank bound can bite
        expected = -0.5 * sum(torch.outer(d[k], u[k]) for k in range(n_tokens))
        dw = hyper.delta(i, u, d).detach()
        assert dw.shape == (t.d_out, t.d_in)
        torch.testing.assert_close(dw, expected, rtol=1e-5, atol=1e-7)
        assert (
            torch.linalg.matrix_rank(dw.double(), rtol=1e-5).item() <= n_tokens
        )  # float32 noise aside
    # a non-identity network (and fitted normalisers) still sums one outer product per token
    with torch.no_grad():
        for p in hyper.nets.parameters():
            p.add_(0.1 * torch.randn_like(p))
    for i, (u, d) in captured.items():
        hyper.update_statistics(i, u, d)
        dw = hyper.delta(i, u, d).detach()
        assert torch.linalg.matrix_rank(dw.double(), rtol=1e-5).item() <= u.shape[0]


def test_hypernet_at_init_is_plain_gradient_descent(tiny_lm, cf_requests):
    """Identity network, unfitted normalisers: ΔW = −edit_lr · ∇_W Σ NLL(target_new), for every edited weight."""
    requests = cf_requests[:2]
    params = dict(tiny_lm.model.named_parameters())
    hyper = _fresh(tiny_lm, edit_lr=1e-2)
    names = [t.name for t in hyper.targets]
    leaves = {n: params[n].detach().clone().requires_grad_(True) for n in names}
    runner, batch = _edit_batch(tiny_lm, requests, split=False)
    out = functional_call(
        tiny_lm.model,
        leaves,
        args=(),
        kwargs=dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask),
    )
    logits = out.logits[batch.pred_rows, batch.pred_cols]
    grads = torch.autograd.grad(target_nll(logits, batch).sum(), [leaves[n] for n in names])
    for split in (False, True):
        runner, batch = _edit_batch(tiny_lm, requests, split=split)
        assert runner.split == split
        deltas, _ = compute_deltas(hyper, runner, batch)
        for name, g in zip(names, grads):
            assert g.abs().max() > 0
            torch.testing.assert_close(deltas[name].detach(), -1e-2 * g, rtol=1e-4, atol=1e-8)


def test_split_forward_matches_full_forward(tiny_lm, cf_requests):
    pairs = [(r.text, r.target_new) for r in cf_requests] + [
        (r.paraphrases[0], r.target_new) for r in cf_requests
    ]
    runner = PrefixRunner(tiny_lm, 2)
    assert runner.split
    batch = SequenceCache(runner).batch(pairs)
    plain = PrefixRunner(tiny_lm, 2, split=False).final_hidden(batch)
    torch.testing.assert_close(
        runner.final_hidden(batch)[batch.attention_mask.bool()],
        plain[batch.attention_mask.bool()],
        rtol=1e-4,
        atol=1e-5,
    )


# ---------------------------------------------------------------------------- training
def test_quick_training_lowers_the_loss_on_a_fixed_batch(tiny_lm, cf_requests, train_requests):
    trainer = MendTrainer(tiny_lm, _quick(lr=3e-3, edit_lr=1e-3, edit_lr_lr=1e-3))
    locality = [r.neighbours[0] for r in train_requests[:4]]
    with (
        torch.no_grad()
    ):  # fit the normalisers to this batch first, so only the networks change below
        trainer.losses(cf_requests, locality, update_statistics=True)
        before = trainer.losses(cf_requests, locality)
    rows = [trainer.step(cf_requests, locality) for _ in range(15)]
    with torch.no_grad():
        after = trainer.losses(cf_requests, locality)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert float(after["loss"]) < 0.95 * float(before["loss"]), (
        float(before["loss"]),
        float(after["loss"]),
    )
    assert float(after["edit_loss"]) < float(before["edit_loss"])


def test_train_mend_records_a_curve(trained):
    curve = trained.curve
    assert [row["step"] for row in curve] == [0, 1, 2, 3, 4]
    assert {"loss", "edit_loss", "loc_loss", "elapsed_s"} <= set(curve[1])
    assert "heldout_es" in curve[0] and "heldout_es" in curve[2] and "heldout_es" in curve[4]
    assert trained.training["steps"] == 4 and trained.training["seconds_per_step"] > 0
    assert len(trained.training["heldout_ids"]) == 8


# ---------------------------------------------------------------------------- artifact
def test_save_load_round_trip_gives_identical_delta(tiny_lm, cf_requests, trained, saved):
    meta = json.loads((saved / "mend.json").read_text())
    assert meta["format_version"] == 1 and meta["model_fingerprint"] == tiny_lm.fingerprint
    assert (
        meta["config"]["rank"] == 8 and meta["training"]["steps"] == 4 and len(meta["curve"]) == 5
    )
    assert (saved / "mend.safetensors").is_file() and (saved / "curve.csv").is_file()

    loaded = MendEditor.load(saved, tiny_lm)
    assert loaded.config == trained.config
    runner, batch = _edit_batch(tiny_lm, cf_requests)
    with torch.no_grad():
        a, _ = compute_deltas(trained.hypernet.eval(), runner, batch)
        b, _ = compute_deltas(loaded.hypernet.eval(), runner, batch)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name])
    delta = mend_edit(tiny_lm, cf_requests, _quick(artifact=str(saved)))
    for name in a:
        torch.testing.assert_close(delta.weights[name], a[name].cpu(), rtol=1e-5, atol=1e-7)


def test_fingerprint_mismatch_raises(tiny_lm, trained, tmp_path):
    other = MendEditor(trained.hypernet, trained.config, trained.model_name, "0" * 24)
    other.save(tmp_path)
    with pytest.raises(FingerprintMismatchError, match="mend-train"):
        MendEditor.load(tmp_path, tiny_lm)
    with pytest.raises(FingerprintMismatchError):
        mend_edit(
            tiny_lm, load_requests("counterfact", n=1).requests, _quick(artifact=str(tmp_path))
        )


def test_missing_editor_names_the_training_command(tiny_lm, cf_requests, tmp_path, monkeypatch):
    monkeypatch.setenv("EDITDECAY_CACHE", str(tmp_path))
    cfg = default_config("mend", tiny_lm)
    with pytest.raises(
        MendNotTrainedError, match=r"train one with `editdecay mend-train --model tiny-llama`"
    ):
        mend_edit(tiny_lm, cf_requests, cfg)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "mend" / "tiny-llama")):
        mend_edit(tiny_lm, cf_requests, cfg)


# ---------------------------------------------------------------------------- the registered editor
def test_edit_returns_a_delta_that_applies_and_reverts_exactly(tiny_lm, cf_requests, saved):
    delta = EDITORS["mend"].edit(tiny_lm, cf_requests, _quick(artifact=str(saved)))
    assert isinstance(delta, EditDelta) and delta.method == "mend"
    assert delta.request_ids == [r.case_id for r in cf_requests]
    params = dict(tiny_lm.model.named_parameters())
    assert sorted(delta.weights) == sorted(
        f"model.layers.{l}.mlp.{m}.weight" for l in LAYERS for m in ("down_proj", "up_proj")
    )
    originals = {n: params[n].detach().clone() for n in delta.weights}
    scorer = Scorer(tiny_lm.model, tiny_lm.tokenizer, tiny_lm.adapter)
    pairs = [(r.text, r.target_new) for r in cf_requests]
    before = sum(s.nll for s in scorer.score(pairs))
    handle = delta.apply(tiny_lm.model)
    try:
        for n, w in delta.weights.items():
            assert torch.equal(params[n].detach(), originals[n] + w.to(originals[n].device))
        after = sum(s.nll for s in scorer.score(pairs))
    finally:
        handle.revert()
    assert after < before
    for n in delta.weights:
        assert torch.equal(params[n].detach(), originals[n])
    assert fingerprint(tiny_lm.model) == tiny_lm.fingerprint


def test_default_config_is_the_last_three_layers(tiny_lm):
    cfg = default_config("mend", tiny_lm)
    assert isinstance(cfg, MendConfig) and cfg.layers == LAYERS
    assert MendConfig.layers_for_depth(30) == (27, 28, 29) == MendConfig().layers
    assert (
        default_config("mend", tiny_lm, {"templates.seed": 3, "rank": 4}).rank == 4
    )  # the job's seed key is ignored
    with pytest.raises(ValueError, match="unknown config field"):
        cfg.with_overrides(nope=1)
    assert MendConfig.from_dict(cfg.to_dict()) == cfg


def test_cli_trains_then_edits(tiny_lm, tmp_path):
    from typer.testing import CliRunner

    from editdecay.cli import app

    runner = CliRunner(env={"EDITDECAY_NO_PROGRESS": "1"})
    editor_dir = tmp_path / "editor"
    result = runner.invoke(
        app,
        [
            "mend-train",
            "--model",
            "tiny-llama",
            "--quick",
            "--steps",
            "3",
            "--out",
            str(editor_dir),
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert MendEditor.load(editor_dir, tiny_lm).training["steps"] == 3
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "edit",
            "--model",
            "tiny-llama",
            "--method",
            "mend",
            "--n",
            "2",
            "--ppl-tokens",
            "0",
            "--set",
            f"artifact={editor_dir}",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "mend" and summary["n_edits"] == 2 and "es" in summary["edited"]
    assert EditDelta.load(out / "delta").method == "mend"
