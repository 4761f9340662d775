"""`editdecay finetune` on the tiny model: adapter and merged directory, preserved edits applied
and kept off the projected subspace, resumable outputs, and the errors that name the option."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from editdecay.cli import app
from editdecay.data.loaders import save_requests_jsonl
from editdecay.editing.delta import EditDelta
from editdecay.finetuning.job import FinetuneJob, load_edits

MODULE = "model.layers.2.mlp.down_proj"
TINY = ["--examples", "12", "--steps", "2", "--set", "batch_size=4", "--set", "micro_batch_size=2"]
TINY += ["--set", "cutoff_len=64", "--set", "r=4", "--set", "alpha=8", "--set", "warmup_steps=1"]


@pytest.fixture(scope="module")
def runner():
    return CliRunner(env={"EDITDECAY_NO_PROGRESS": "1"})


def _invoke(runner, args):
    result = runner.invoke(app, ["finetune", *[str(a) for a in args]])
    return result, " ".join(result.output.split())


@pytest.fixture()
def edit_dir(tmp_path, tiny_lm, cf_requests):
    """An edit output directory: a small random delta on layer 2's down projection + its requests."""
    weight = dict(tiny_lm.model.named_parameters())[MODULE + ".weight"]
    gen = torch.Generator().manual_seed(0)
    delta = EditDelta(
        weights={MODULE + ".weight": 0.01 * torch.randn(weight.shape, generator=gen)},
        method="memit",
        config={"layers": [2]},
        request_ids=[r.case_id for r in cf_requests],
        model_fingerprint=tiny_lm.fingerprint,
        info={"context_templates": ["{}", "Once upon a time. {}"]},
    )
    delta.save(tmp_path / "edit" / "delta")
    save_requests_jsonl(cf_requests, tmp_path / "edit" / "requests.jsonl")
    return tmp_path / "edit"


def test_lora_writes_an_adapter_a_merged_model_and_the_record(runner, tmp_path, edit_dir):
    out = tmp_path / "ft"
    args = ["--model", "tiny-llama", "--out", out, *TINY, "--merge", "--seed", "3"]
    args += ["--preserve-edits", edit_dir, "--preserve", "subspace", "--apply-edits"]
    args += ["--set", "preserve.energy=1.0", "--set", "preserve.max_rank_share=1.0"]
    result, text = _invoke(runner, args)
    assert result.exit_code == 0, (text, result.exception)
    record = json.loads((out / "finetune.json").read_text())
    assert record["steps"] == 2 and record["written"] == ["adapter", "model"]
    assert record["config"]["seed"] == 3 and record["preserve"]["mode"] == "subspace"
    assert (out / "adapter" / "adapter_config.json").exists()
    assert (out / "losses.csv").read_text().count("\n") == 3
    assert not (out / ".snapshot").exists()
    merged = AutoModelForCausalLM.from_pretrained(out / "model")
    delta, _ = load_edits(edit_dir)
    from editdecay.models.registry import load_model

    base = load_model("tiny-llama").model
    edited = base.get_submodule(MODULE).weight + delta.weights[MODULE + ".weight"]
    # the delta was applied, and what fine-tuning added to that module spares the edit keys
    change = merged.get_submodule(MODULE).weight.detach() - edited.detach()
    assert change.norm() > 0
    from editdecay.data.tokenization import fill
    from editdecay.editing.keys import read_at_subject

    edits = load_edits(edit_dir)[1]
    prompts = [fill(r.prompt, r.subject) for r in edits]
    lm = load_model("tiny-llama")
    delta.apply(lm.model)
    keys = read_at_subject(lm, prompts, MODULE, inputs=True)
    assert float((keys @ change.T).norm() / (keys.norm() * change.norm())) < 1e-5


def test_full_fine_tuning_writes_the_model(runner, tmp_path):
    out = tmp_path / "full"
    result, text = _invoke(
        runner, ["--model", "tiny-llama", "--out", out, "--method", "full", *TINY, "--lr", "1e-4"]
    )
    assert result.exit_code == 0, text
    record = json.loads((out / "finetune.json").read_text())
    assert record["written"] == ["model"] and record["config"]["learning_rate"] == 1e-4
    assert (out / "model" / "config.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preserve", "subspace"], "preserve"),
        (["--preserve", "scrub", "--preserve-edits", "EDIT"], "preserve"),
        (["--method", "adapterx"], "method"),
        (["--apply-edits"], "apply_edits"),
        (["--set", "preserve.mode=freeze"], "ft_preserve"),
        (["--layers", "9"], "out of range"),
        (["--data", "no-such-data"], "no-such-data"),
        (["--preserve-edits", "MISSING", "--preserve", "freeze"], "no delta"),
    ],
)
def test_bad_options_exit_2_naming_the_option(runner, tmp_path, edit_dir, args, message):
    args = [
        str(edit_dir) if a == "EDIT" else str(tmp_path / "x") if a == "MISSING" else a for a in args
    ]
    result, text = _invoke(runner, ["--model", "tiny-llama", "--out", tmp_path / "o", *TINY, *args])
    assert result.exit_code == 2, text
    assert message in text


def test_job_config_carries_the_preserve_settings():
    job = FinetuneJob(
        model="m", out="o", preserve="activation", preserve_edits="e",
        finetune={"preserve": {"weight": 5.0}, "lr": 1e-3},
    )  # fmt: skip
    cfg = job.config()
    assert cfg.preserve.mode == "activation" and cfg.preserve.weight == 5.0
    assert cfg.learning_rate == 1e-3
