"""`editdecay reproduce`: the grid per scale, its time estimate, REPRODUCTION.md and the command."""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from typer.testing import CliRunner

from editdecay.analysis.claims import NOT_TESTED, check_claims
from editdecay.cli import app
from editdecay.finetuning.tuner import FinetuneConfig
from editdecay.report import SECTIONS, write_report, write_reproduction
from editdecay.report.reproduction import claims_section
from editdecay.study import reproduce
from editdecay.study.config import RunConfig, Study
from editdecay.study.reproduce import (
    PAPER_DEPARTURES,
    SMALL_BUDGET_HOURS,
    estimate_seconds,
    estimate_table,
    planned_stages,
    relative_cost,
    reproduction_study,
)

MODELS = ["smollm2-135m", "gemma3-270m"]
TESTED = (1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 15)  # the claims every scale must be able to test


def _study(scale, models=MODELS, mend=False, **kw) -> Study:
    return reproduction_study(scale, models, Path("unused"), mend_available=lambda m: mend, **kw)


def _decay_from(configs) -> pd.DataFrame:
    """A decay.csv with one final row per configuration, its numbers in the paper's directions."""
    rows = []
    for cfg in configs:
        cols = cfg.columns()
        n = cfg.n_edits
        r = {
            **cols,
            "step": 0,
            "final": True,
            "efficacy_kind": "zsre" if cfg.edit_data == "zsre" else "counterfact",
            "es_M": 20.0,
            "es_ed": 100.0,
            "n_success_ed": n,
            "ds_M": 40.0,
            "ds_M_ed": 39.0,
        }
        if cfg.ft_method != "none":
            delta = (
                20.0
                + 10 * (cfg.edit_method == "alphaedit")
                + 10 * (cfg.edit_data == "zsre")
                + 15 * (cfg.ft_method == "full")
                + 15 * (n == max(c.n_edits for c in configs))
                + 20 * (cfg.ft_data == "hotpotqa")
                + {"all": 0, "non-edited": 25, "edited": 50}.get(cfg.ft_layers_label, 0)
                + 0.1 * cfg.seed
            )
            r.update(
                {
                    "step": 25,
                    "es_ed_ft": 100.0 - delta,
                    "delta_es": delta,
                    "relative_decay": delta,
                    "efr": delta + 5,
                    "n_erased": int(n * delta / 100) + 1,
                    "n_emergent": 1,
                    "ds_M_ft": 60.0,
                    "ds_M_ed_ft": 57.0 - 0.1 * cfg.seed,
                    "ds_degradation_ft": 5.0,
                }
            )
        rows.append(r)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the grid


@pytest.mark.parametrize("scale", ["small", "medium", "paper"])
def test_every_scale_has_what_each_claim_needs(scale):
    study = _study(scale)
    for model in MODELS:
        configs = [c for c in study.configs if c.model == model]
        results = {r.id: r for r in check_claims({"decay": _decay_from(configs)})}
        missing = {cid: results[cid].detail for cid in TESTED if results[cid].verdict == NOT_TESTED}
        assert not missing, f"{scale}/{model}: claims without their configurations: {missing}"


@pytest.mark.parametrize("scale", ["small", "medium", "paper"])
def test_grid_contents(scale):
    study = _study(scale)
    assert {c.model for c in study.configs} == set(MODELS)
    for model in MODELS:
        configs = [c for c in study.configs if c.model == model]
        assert {c.edit_method for c in configs} == {"memit", "alphaedit"}
        assert {c.ft_method for c in configs} == {"none", "lora", "dora", "full"}
        for data in ("counterfact", "zsre"):
            counts = {
                c.n_edits for c in configs if c.edit_data == data and c.ft_data == "commonsense"
            }
            assert len(counts) >= 2, (data, counts)
        hotpot = [c for c in configs if c.ft_method != "none" and c.ft_data == "hotpotqa"]
        commonsense = [c for c in configs if c.ft_method != "none" and c.ft_data == "commonsense"]
        assert 0 < len(hotpot) < len(commonsense) / 2  # HotpotQA on a subset only
        layers = {
            c.ft_layers_label
            for c in configs
            if c.edit_method == "alphaedit"
            and c.edit_data == "counterfact"
            and c.ft_method == "lora"
        }
        assert layers == {"all", "edited", "non-edited"}
        assert {c.ft_layers_label for c in configs if c.edit_method == "memit"} == {"all"}
        seeds = Counter(c.seed for c in configs if c.ft_method != "none")
        assert len(seeds) >= 2 and seeds[0] > sum(
            v for s, v in seeds.items() if s != 0
        )  # seeds on a subset
    assert len({c.config_id for c in study.configs}) == len(study.configs)


def test_small_scale_settings():
    study = _study("small")
    tuned = [c for c in study.configs if c.ft_method != "none"]
    assert {c.n_edits for c in study.configs} == {50, 150}
    # every fine-tuning method at 50 edits; the edit-count comparison at 150 with LoRA only
    assert {c.ft_method for c in study.configs if c.n_edits == 50} == {
        "none",
        "lora",
        "dora",
        "full",
    }
    assert {c.ft_method for c in study.configs if c.n_edits == 150} == {"none", "lora"}
    assert {
        (c.edit_method, c.edit_data)
        for c in study.configs
        if c.n_edits == 150 and c.ft_method == "lora"
    } == {(m, d) for m in ("memit", "alphaedit") for d in ("counterfact", "zsre")}
    assert {c.ft_examples for c in tuned} == {200}
    assert all(
        c.finetune["epochs"] == 1 and list(c.finetune["checkpoint_steps"]) == [] for c in tuned
    )
    assert {c.evaluate.ds_per_task for c in study.configs} == {5}
    assert {c.seed for c in study.configs} == {0, 1}


def test_paper_scale_is_table_1():
    study = _study("paper", mend=True)
    cf = {c.n_edits for c in study.configs if c.edit_data == "counterfact"}
    assert cf == {100, 1000, 10000}
    # the bundled zsRE set has 1,000 records: 10k zsRE edits need a larger request file
    assert max(c.n_edits for c in study.configs if c.edit_data == "zsre") == 1000
    tuned = [c for c in study.configs if c.ft_method != "none"]
    for c in tuned:  # the paper's recipe per method, written out
        recipe = FinetuneConfig.recipe_for(c.ft_method)
        assert {k: c.finetune[k] for k in recipe} == recipe, c.config_id
    assert all(c.ft_examples is None for c in tuned)
    assert {c.seed for c in tuned} == {0, 1, 2}
    hotpot = {
        (c.n_edits, c.edit_method, c.edit_data, c.ft_method)
        for c in tuned
        if c.ft_data == "hotpotqa"
    }
    assert hotpot == {
        (100, "memit", "zsre", "dora"),
        (10000, "alphaedit", "counterfact", "lora"),
        (1000, "memit", "counterfact", "lora"),
        (1000, "memit", "zsre", "dora"),
    }
    mend = {(c.n_edits, c.ft_method) for c in study.configs if c.edit_method == "mend"}
    assert mend == {(1000, "none"), (1000, "dora"), (10000, "none"), (10000, "dora")}


def test_medium_scale_serves_the_claims_it_is_sized_for():
    study = _study("medium", models=["smollm2-135m"])
    cfgs = study.configs
    selective = {(c.edit_data, c.ft_layers) for c in cfgs if c.ft_layers != "all"}
    assert selective == {
        (d, layers) for d in ("counterfact", "zsre") for layers in ("edited", "non-edited")
    }
    counts = {c.n_edits for c in cfgs if c.ft_method == "lora" and c.ft_layers == "all"}
    assert counts == {200, 600}  # claim 5: a threefold edit count, paired on the shared requests
    assert {c.seed for c in cfgs} == {0, 1, 2}
    assert not any(c.finetune.get("checkpoint_steps") for c in cfgs)  # one evaluation per FT
    assert study.analyse is not None  # the activation analysis runs with the grid
    assert estimate_seconds(study) / 3600 < 10.5


def test_a_larger_zsre_file_lifts_the_cap(tmp_path):
    big = tmp_path / "zsre_big.json"
    big.write_text("[]")
    study = _study("paper", data={"zsre": str(big)})
    assert any(
        c.n_edits == 10000 and Path(c.edit_data).name == "zsre_big.json" for c in study.configs
    )


def test_mend_only_where_an_editor_is_trained():
    study = reproduction_study(
        "small", MODELS, Path("unused"), mend_available=lambda m: m == "smollm2-135m"
    )
    mend = [c for c in study.configs if c.edit_method == "mend"]
    assert mend and {c.model for c in mend} == {"smollm2-135m"}
    assert {c.ft_method for c in mend} == {"none", "dora"}
    assert not [c for c in _study("small").configs if c.edit_method == "mend"]


def test_per_model_edit_overrides(monkeypatch):
    monkeypatch.setitem(reproduce.EDIT_OVERRIDES, "gemma3-270m", {"mom2_update_weight": 500})
    study = _study("small")
    moved = {"gemma3-270m": [13, 14, 15, 16], "smollm2-135m": [24, 25, 26, 27, 28]}

    def own(c):  # the edit-layer block adds its window to the model's overrides
        return {"layers": moved[c.model]} if c.edit_layers_label else {}

    assert all(
        c.edit == {"mom2_update_weight": 500, **own(c)}
        for c in study.configs
        if c.model == "gemma3-270m"
    )
    assert all(c.edit == own(c) for c in study.configs if c.model == "smollm2-135m")


def test_edit_layer_block_pairs_every_moved_window_with_the_default():
    """Claim 14's block: edit-only MEMIT and AlphaEdit on CounterFact at two counts, each on the
    default layers and on the model's top layers, and `--blocks` runs it alone."""
    study = reproduce.reproduction_study(
        "small",
        ["smollm2-135m", "gemma3-270m"],
        Path("o"),
        mend_available=lambda m: False,
        only=["edit-layers"],
    )
    moved = [c for c in study.configs if c.edit_layers_label]
    assert {(c.model, c.edit_method, c.n_edits, c.edit_layers_label) for c in moved} == {
        (m, e, n, w)
        for m, w in (("smollm2-135m", "24 25 26 27 28"), ("gemma3-270m", "13 14 15 16"))
        for e in ("memit", "alphaedit")
        for n in (50, 150)
    }
    assert all(c.ft_method == "none" and c.edit_data == "counterfact" for c in study.configs)
    twins = {(c.model, c.edit_method, c.n_edits) for c in study.configs if not c.edit_layers_label}
    assert twins == {(c.model, c.edit_method, c.n_edits) for c in moved}
    assert {c.columns()["edit_layers"] for c in study.configs} == {
        "",
        "24 25 26 27 28",
        "13 14 15 16",
    }
    whole = _study("small")
    assert {c.config_id for c in study.configs} <= {c.config_id for c in whole.configs}
    assert reproduce.moved_edit_layers("some/local-model") == ()
    with pytest.raises(ValueError, match="unknown block 'edits-layers'"):
        reproduce.reproduction_study("small", ["smollm2-135m"], Path("o"), only=["edits-layers"])
    with pytest.raises(ValueError, match="no configuration"):
        reproduce.reproduction_study(
            "small", ["smollm2-135m"], Path("o"), mend_available=lambda m: False, only=["mend"]
        )


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale"):
        _study("huge")
    with pytest.raises(ValueError, match="no models"):
        _study("small", models=[" "])


# --------------------------------------------------------------------------- the time estimate


def test_small_scale_fits_the_cpu_budget():
    study = _study("small", mend=True)
    table = estimate_table(study)
    assert set(table["model"]) == set(MODELS)
    # the grid's size is budgeted in SmolLM2-135M hours; a costlier model's estimate scales with it
    smollm2_hours = table["hours"] / table["model"].map(relative_cost)
    assert (smollm2_hours < SMALL_BUDGET_HOURS).all(), table
    hours = table.set_index("model")["hours"]
    assert (
        hours["gemma3-270m"] > hours["smollm2-135m"]
    )  # fewer configurations (no MEND), twice the work per token
    assert (table["hours"] > 1.0).all()  # a real grid, not an empty one
    assert estimate_seconds(study) == pytest.approx(table["hours"].sum() * 3600)
    assert estimate_seconds(_study("medium")) > 2 * estimate_seconds(_study("small"))


def test_estimate_counts_shared_stages_once():
    base = {
        "edit_data": "counterfact",
        "n_edits": 10,
        "ft_method": "lora",
        "ft_examples": 20,
        "finetune": {"epochs": 1, "checkpoint_steps": []},
        "evaluate": {"ds_per_task": 2, "ppl_tokens": 1000},
    }
    configs = [RunConfig.from_dict({**base, "edit_method": m}) for m in ("memit", "alphaedit")]
    stages = planned_stages(configs)
    assert stages["kind"].value_counts().to_dict() == {
        "evaluate": 6,
        "finetune": 3,
        "edit": 2,
        "targets": 1,
        "statistic": 1,
    }
    evaluate = 0.25 * 10 + (0.41 + 0.23) * 2 * 7 + 3.0 * 1000 / 1000
    expected = 107.0 + 2.45 * 10 + 2 * 0.21 * 10 + 3 * (20 * 100 / 172) + 6 * evaluate
    assert estimate_seconds(Study("t", Path("unused"), configs, {})) == pytest.approx(expected)


def test_estimate_counts_validation_and_the_preservation_axis():
    base = {
        "edit_data": "counterfact",
        "n_edits": 10,
        "ft_method": "lora",
        "ft_examples": 40,
        "finetune": {"epochs": 1, "batch_size": 10, "checkpoint_steps": []},
    }
    plain = RunConfig.from_dict(base)
    held = RunConfig.from_dict(
        {**base, "finetune": {**base["finetune"], "validation_examples": 10, "validation_every": 1}}
    )
    tokens = lambda c: planned_stages([c]).query("kind == 'finetune'")["seconds"].iloc[0]  # noqa: E731
    # 30 training examples and 3 validation passes over 10 examples at a third of the cost each
    assert tokens(held) == pytest.approx(tokens(plain) * (30 + 3 * 10 / 3) / 40)
    options = [
        RunConfig.from_dict({**base, "ft_preserve": p}) for p in ("none", "subspace", "paraphrase")
    ]
    stages = planned_stages(options)
    finetunes = stages[stages["kind"] == "finetune"]
    assert len(finetunes) == 4  # one plain base run, three edited runs
    assert finetunes["seconds"].max() == pytest.approx(tokens(plain) * (40 + 3 * 10) / 40)


def test_estimate_matches_the_pipeline_plan(tmp_path):
    from editdecay.study.pipeline import make_plan

    study = reproduction_study(
        "small", ["tiny-llama"], tmp_path / "run", mend_available=lambda m: False
    )
    plan = make_plan(study, tmp_path / "store")
    assert Counter(s.kind for s in plan.stages) == Counter(planned_stages(study.configs)["kind"])


# --------------------------------------------------------------------------- REPRODUCTION.md


def _results_dir(run_dir: Path, configs) -> None:
    results = run_dir / "results"
    results.mkdir(parents=True)
    decay = _decay_from(configs)
    decay.to_csv(results / "decay.csv", index=False)
    decay[
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
    ].to_csv(results / "configs.csv", index=False)
    downstream = [
        {
            "config_id": r.config_id,
            "state": "M_ed_ft",
            "step": 25,
            "task": task,
            "mode": "generate",
            "n": 50,
            "accuracy": 0.57,
        }
        for r in decay.itertuples()
        if r.ft_method != "none"
        for task in ("boolq", "piqa")
    ]
    pd.DataFrame(downstream).to_csv(results / "downstream.csv", index=False)
    (results / "study.json").write_text(
        json.dumps({"name": "reproduction-small", "command": "editdecay reproduce"})
    )


def test_write_reproduction_puts_the_claims_first(tmp_path):
    run_dir = tmp_path / "run"
    _results_dir(run_dir, [c for c in _study("small").configs if c.model == "smollm2-135m"])
    rep = write_reproduction(run_dir)
    text = rep.markdown_path.read_text()
    assert rep.markdown_path == run_dir / "REPRODUCTION.md"
    assert text.startswith("# Reproduction of the paper's claims: reproduction-small")
    claims_at = text.index("## Paper claims")
    assert claims_at < text.index("## Key results") < text.index("![")
    assert re.search(r"\|\s*id\s*\|\s*claim\s*\|\s*paper\s*\|\s*this run\s*\|\s*verdict\s*\|", text)
    table = text[claims_at : text.index("**How each verdict")]
    assert len(re.findall(r"\|\s+holds\s+\|", table)) >= 8
    assert "Paired t-tests" in text and "| LoRA" in text and "4.46e-5" in text
    assert "Seed-to-seed spread" in text
    assert [c.id for c in rep.claims] == list(range(1, 16))
    assert rep.sections[:3] == [
        "Reproduction of the paper's claims: reproduction-small",
        "Paper claims (PAPER §4)",
        "Departures from the paper's protocol",
    ]
    assert "This run is at scale `small`" in text and "`zsre_target`: 'alt'" in text
    assert "How this run was made" in rep.sections


def test_two_models_get_a_verdict_each(tmp_path):
    run_dir = tmp_path / "run"
    _results_dir(run_dir, _study("small").configs)
    rep = write_reproduction(run_dir)
    assert list(rep.claims_per_model) == MODELS
    text = rep.markdown_path.read_text()
    assert re.search(
        r"\|\s*id\s*\|\s*claim\s*\|\s*smollm2-135m\s*\|\s*gemma3-270m\s*\|\s*all models\s*\|", text
    )
    for model in MODELS:
        at = text.index(f"**{model}**")
        table = text[at : text.index("**", at + len(model) + 4)]
        assert len(re.findall(r"\|\s+holds\s+\|", table)) >= 8, model
        assert "models " + model + ";" in text
    assert "**All models together**" in text


@pytest.mark.parametrize("finished", [3, 10])
def test_partial_results_are_flagged_above_the_claims(tmp_path, finished):
    run_dir = tmp_path / "run"
    _results_dir(run_dir, [c for c in _study("small").configs if c.model == "smollm2-135m"])
    info = run_dir / "results" / "study.json"
    info.write_text(
        json.dumps({**json.loads(info.read_text()), "stages": {"finished": finished, "total": 10}})
    )
    text = write_reproduction(run_dir).markdown_path.read_text()
    if finished < 10:
        assert "**Partial results:** 3 of 10 stages" in text
        assert text.index("Partial results") < text.index("## Paper claims")
    else:
        assert "Partial results" not in text


def test_normal_report_is_unchanged(tmp_path):
    run_dir = tmp_path / "run"
    _results_dir(run_dir, [c for c in _study("small").configs if c.model == "smollm2-135m"])
    assert claims_section not in SECTIONS
    report = write_report(run_dir)
    assert "Paper claims" not in report.markdown_path.read_text()
    assert not (run_dir / "REPRODUCTION.md").exists()


# --------------------------------------------------------------------------- the command


def test_cli_dry_run_prints_the_estimate():
    result = CliRunner().invoke(
        app, ["reproduce", "--dry-run", "--models", "smollm2-135m,gemma3-270m"]
    )
    assert result.exit_code == 0, result.output
    assert "estimated total" in result.output
    assert "selective layers" in result.output and "gemma3-270m" in result.output


@pytest.fixture
def fake_pipeline(monkeypatch) -> dict:
    """`run_study` replaced by one that writes paper-like results; returns what it was called with."""
    import editdecay.study.pipeline as pipeline

    seen: dict = {}

    def fake_run_study(
        study,
        executor="local",
        address=None,
        store=None,
        report=True,
        command=None,
        execute=True,
        gpus_per_stage=0.0,
    ):
        seen.update(
            study=study, executor=executor, address=address, execute=execute, command=command
        )
        _results_dir(Path(study.out), study.configs)
        return SimpleNamespace(run_dir=Path(study.out))

    monkeypatch.setattr(pipeline, "run_study", fake_run_study)
    return seen


def test_cli_runs_the_study_and_prints_claims(tmp_path, fake_pipeline):
    seen = fake_pipeline
    out = tmp_path / "repro"
    result = CliRunner().invoke(
        app,
        [
            "reproduce",
            "--scale",
            "small",
            "--models",
            "smollm2-135m",
            "--out",
            str(out),
            "--executor",
            "ray",
            "--address",
            "1.2.3.4:6379",
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen["executor"] == "ray" and seen["address"] == "1.2.3.4:6379" and seen["execute"]
    assert {c.model for c in seen["study"].configs} == {"smollm2-135m"}
    assert (out / "REPRODUCTION.md").is_file()
    assert "paper claims" in result.output and "holds" in result.output


def test_cli_prints_a_verdict_per_model(tmp_path, fake_pipeline):
    result = CliRunner().invoke(
        app, ["reproduce", "--scale", "small", "--out", str(tmp_path / "repro")], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    per_model = result.output[result.output.index("verdict per model") :]
    assert "smollm2-135m" in per_model and "gemma3-270m" in per_model and "all models" in per_model
    assert per_model.count("holds") >= 2 * 8


def test_cli_gather_only_runs_nothing_and_records_the_full_command(
    tmp_path, fake_pipeline, monkeypatch
):
    args = [
        "reproduce",
        "--models",
        "smollm2-135m",
        "--out",
        str(tmp_path / "repro"),
        "--gather-only",
    ]
    monkeypatch.setattr(sys, "argv", ["editdecay", *args])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert fake_pipeline["execute"] is False
    assert fake_pipeline["command"] == shlex.join(["editdecay", *args[:-1]])


def test_cli_blocks_run_part_of_the_grid(tmp_path):
    args = ["reproduce", "--dry-run", "--models", "smollm2-135m", "--out", str(tmp_path / "x")]
    result = CliRunner().invoke(app, [*args, "--blocks", "edit-layers"])
    assert result.exit_code == 0, result.output
    assert "edit layers" in result.output and "selective layers" not in result.output
    result = CliRunner().invoke(app, [*args, "--blocks", "edit-layers,nonsense"])
    assert result.exit_code == 2
    assert "unknown block 'nonsense'" in result.output and "selective-layers" in result.output


def test_cli_rejects_an_unknown_scale(tmp_path):
    result = CliRunner().invoke(
        app, ["reproduce", "--scale", "huge", "--out", str(tmp_path / "x"), "--dry-run"]
    )
    assert result.exit_code == 2
    assert "scale" in result.output


def test_paper_scale_sets_recipes_validation_beams_zsre_target_and_a_fixed_data_seed():
    study = _study("paper", mend=True)
    tuned = [c for c in study.configs if c.ft_method != "none"]
    full = [c for c in tuned if c.ft_method == "full"]
    adapters = [c for c in tuned if c.ft_method in ("lora", "dora")]
    assert full and adapters
    for c in full:
        f = c.finetune
        assert (f["cutoff_len"], f["warmup_ratio"], f["weight_decay"], f["lr"]) == (
            1024,
            0.1,
            0.01,
            5e-6,
        )
    for c in adapters:
        f = c.finetune
        assert (f["cutoff_len"], f["warmup_steps"], f["lr"]) == (256, 100, 2e-4)
        assert f["validation_examples"] == 120 and f["select_best"] is True
    assert {c.evaluate.ds_num_beams for c in study.configs} == {4}
    assert {c.zsre_target for c in study.configs if c.edit_data == "zsre"} == {"answer"}
    replicates = [c for c in tuned if c.seed != 0]
    assert replicates and {c.data_seed for c in replicates} == {0}
    assert {c.sample_seed for c in tuned} == {0}  # every seed fine-tunes on the same sample
    assert PAPER_DEPARTURES and all(isinstance(d, str) and d for d in PAPER_DEPARTURES)


@pytest.mark.parametrize("scale", ["small", "medium"])
def test_smaller_scales_keep_greedy_ds_alt_targets_and_no_validation(scale):
    study = _study(scale, mend=True)
    assert {c.evaluate.ds_num_beams for c in study.configs} == {1}
    assert {c.zsre_target for c in study.configs} == {"alt"}
    assert all("validation_examples" not in c.finetune for c in study.configs)


def test_estimate_scales_the_statistic_and_keys_with_the_depth_they_reach():
    base = {"edit_data": "counterfact", "n_edits": 10, "ft_method": "none"}
    default = planned_stages([RunConfig.from_dict(base)]).set_index("kind")["seconds"]
    top = planned_stages(
        [RunConfig.from_dict({**base, "edit": {"layers": [24, 25, 26, 27, 28]}})]
    ).set_index("kind")["seconds"]
    assert default["statistic"] == pytest.approx(107.0)  # the layers it was measured at
    # the forward reaches layer 28 instead of 8; the k k^T accumulation is as wide
    assert top["statistic"] == pytest.approx(107.0 * (0.73 * 29 / 9 + 0.27))
    # one key forward to each edit layer: (25+...+29) / (5+...+9) layer passes
    assert top["edit"] == pytest.approx(default["edit"] * 135 / 35)
    assert top["targets"] == default["targets"]
