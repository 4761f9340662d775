"""Configs check themselves: field types, choices and ranges on every path a setting comes in by
(Python, `--set`, `--config`, a study's [config], [grid] axes and [[extra]] blocks), before any
model loads; defaults are written once; and the content addresses of unchanged configs stay put."""

from __future__ import annotations

import hashlib
import pickle
import typing
from dataclasses import replace
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from editdecay.cli import app
from editdecay.config_types import (
    ConfigError,
    check_value,
    field_default,
    field_help,
    from_text,
    parse_text,
)
from editdecay.editing.config import (
    CONFIG_CLASSES,
    AlphaEditConfig,
    MemitConfig,
    MendConfig,
    RomeConfig,
    TargetConfig,
    check_overrides,
)
from editdecay.editing.statistics import StatisticSpec
from editdecay.finetuning.tuner import FinetuneConfig
from editdecay.models.registry import DEFAULT_MODEL, REGISTRY, LoadedModel
from editdecay.schema import DS_MODES, FT_METHODS, LAYER_CHOICES
from editdecay.study import stages
from editdecay.study.config import EvaluateSettings, RunConfig, Study
from editdecay.study.edit import EditJob
from editdecay.study.pipeline import make_plan
from editdecay.study.reproduce import SCALE_SETTINGS, reproduction_study

STUDIES = Path(__file__).resolve().parents[1] / "src" / "editdecay" / "study" / "studies"


# --------------------------------------------------------------------------- the checker itself


@pytest.mark.parametrize(
    "value, tp, message",
    [
        ("abc", int, "x: expected an integer, got 'abc'"),
        (True, int, "x: expected an integer, got True"),
        (2.0, int, "x: expected an integer, got 2.0"),
        (False, float, "x: expected a number, got False"),
        ("0.1", float, "x: expected a number, got '0.1'"),
        (1, bool, "x: expected true or false, got 1"),
        (3, str, "x: expected a string, got 3"),
        ("none", int | None, "x: expected an integer or none, got 'none'"),
        ([1, "b"], tuple[int, ...], "x[1]: expected an integer, got 'b'"),
        ("ab", tuple[str, ...], "x: expected a list of strings, got 'ab'"),
        ({"a": 1}, list[int], "x: expected a list of integers, got {'a': 1}"),
        ([1, 2], dict, "x: expected a table, got [1, 2]"),
    ],
)
def test_a_value_that_does_not_fit_its_type_is_named_with_what_was_expected(value, tp, message):
    with pytest.raises(ConfigError) as err:
        check_value(value, tp, "x")
    assert str(err.value) == message


def test_values_that_fit_are_kept_lists_become_tuples_tables_become_dataclasses():
    assert check_value(3, float, "x") == 3 and type(check_value(3, float, "x")) is int  # hashes
    assert check_value(None, int | None, "x") is None
    assert check_value([1, 2], tuple[int, ...], "x") == (1, 2)
    assert check_value(["a", 1], tuple[str, int], "x") == ("a", 1)
    assert check_value("all", typing.Literal["all", "edited"] | tuple[int, ...], "x") == "all"
    assert check_value([3], typing.Literal["all"] | tuple[int, ...], "x") == (3,)
    assert check_value({"steps": 3}, TargetConfig, "targets") == TargetConfig(steps=3)


def test_literal_choices_refuse_unknown_values_and_list_the_allowed_ones():
    with pytest.raises(ConfigError) as err:
        RunConfig(ft_method="qlora")
    assert str(err.value) == (
        "ft_method: unknown ft_method 'qlora'; expected one of 'none', 'lora', 'dora', 'full'"
    )
    with pytest.raises(
        ConfigError, match="precision: unknown precision 'fp16'; expected one of 'fp32', 'bf16'"
    ):
        FinetuneConfig(precision="fp16")
    with pytest.raises(ConfigError, match=r"ds_modes\[1\]: unknown DS mode 'score'"):
        EvaluateSettings(ds_modes=("rank", "score"))
    with pytest.raises(ConfigError, match="nullspace_rule: unknown nullspace_rule 'fraction'"):
        AlphaEditConfig(nullspace_rule="fraction")
    with pytest.raises(ConfigError, match="edit_method: unknown edit_method 'grace'.*'mend'"):
        RunConfig(edit_method="grace")


def test_the_choices_are_the_schemas_vocabularies():
    hints = typing.get_type_hints(RunConfig)
    assert typing.get_args(hints["ft_method"]) == FT_METHODS
    assert typing.get_args(typing.get_args(hints["ft_layers"])[0]) == LAYER_CHOICES
    ds_mode = typing.get_args(typing.get_type_hints(EvaluateSettings)["ds_modes"])[0]
    assert typing.get_args(ds_mode) == tuple(DS_MODES)
    fine_tuning = typing.get_args(typing.get_type_hints(FinetuneConfig)["method"])
    assert fine_tuning == tuple(m for m in FT_METHODS if m != "none")
    assert typing.get_args(hints["edit_method"]) == tuple(CONFIG_CLASSES)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TargetConfig(lr=-1.0), "lr: expected a number > 0, got -1.0"),
        (lambda: TargetConfig(steps=0), "steps: expected an integer >= 1, got 0"),
        (lambda: FinetuneConfig(dropout=1.5), "dropout: expected a number in [0, 1), got 1.5"),
        (
            lambda: FinetuneConfig(checkpoint_steps=(4, 0)),
            "checkpoint_steps[1]: expected an integer >= 1, got 0",
        ),
        (lambda: RunConfig(n_edits=0), "n_edits: expected an integer >= 1, got 0"),
        (lambda: RunConfig(ft_layers=(2, -1)), "ft_layers[1]: expected an integer >= 0, got -1"),
        (lambda: EvaluateSettings(ppl_tokens=-5), "ppl_tokens: expected an integer >= 0, got -5"),
        (lambda: MendConfig(rank=0), "rank: expected an integer >= 1, got 0"),
        (lambda: RomeConfig(layers=(1, 2)), "layers: expected exactly one layer"),
        (lambda: MemitConfig(layers=()), "layers: expected at least one layer, got ()"),
        (
            lambda: MemitConfig(statistic=StatisticSpec(window=1)),
            "statistic.window: expected an integer >= 2, got 1",
        ),
        (
            lambda: AlphaEditConfig(nullspace_rule="keep", nullspace_threshold=2.5),
            "nullspace_threshold: expected a whole number of directions",
        ),
        (lambda: EditJob(n=0), "n: expected an integer >= 1, got 0"),
        (lambda: TargetConfig(lr=float("nan")), "lr: expected a finite number, got nan"),
        (lambda: FinetuneConfig(lr=float("-inf")), "lr: expected a finite number, got -inf"),
        (
            lambda: FinetuneConfig(preserve={"mode": "distill", "weight": float("inf")}),
            "preserve.weight: expected a finite number, got inf",
        ),
    ],
)
def test_numbers_out_of_range_are_refused_naming_the_field(make, message):
    with pytest.raises(ConfigError) as err:
        make()
    assert str(err.value).startswith(message)


def test_a_table_for_a_nested_config_becomes_its_dataclass_with_dotted_names_in_errors():
    cfg = MemitConfig(
        targets={"steps": 3}, templates={"seed_words": ["The"]}, statistic={"window": 64}
    )
    assert cfg.targets == TargetConfig(steps=3)
    assert cfg.templates.seed_words == ("The",)
    assert cfg.statistic == StatisticSpec(window=64)
    assert MemitConfig.from_dict(cfg.to_dict()) == cfg
    assert RunConfig(evaluate={"ppl_tokens": 0, "ds_modes": ["rank"]}).evaluate == EvaluateSettings(
        ppl_tokens=0, ds_modes=("rank",)
    )
    with pytest.raises(ConfigError, match=r"^targets\.steps: expected an integer, got 'x'$"):
        MemitConfig(targets={"steps": "x"})
    with pytest.raises(
        ConfigError, match=r"^targets\.nope: unknown config field; known here: lr, steps"
    ):
        MemitConfig(targets={"nope": 1})
    with pytest.raises(
        ConfigError, match=r"^evaluate\.ds_per_task: expected an integer >= 0, got -1$"
    ):
        RunConfig.from_dict({"evaluate": {"ds_per_task": -1}})


def test_edit_overrides_are_checked_against_the_editor_configs():
    cross = {"nullspace_threshold": 16, "alphaedit": {"nullspace_rule": "keep"}}
    assert RunConfig(edit_method="alphaedit", edit=cross).editor_overrides() == {
        "nullspace_threshold": 16,
        "nullspace_rule": "keep",
    }
    with pytest.raises(ConfigError, match=r"^edit\.mom2_update_weigth: unknown config field"):
        RunConfig(edit={"mom2_update_weigth": 500})
    with pytest.raises(ConfigError, match=r"^edit\.mom2_update_weight: expected a number >= 0"):
        RunConfig(edit={"mom2_update_weight": -1})
    with pytest.raises(ConfigError, match=r"^edit\.rome\.layers: expected exactly one layer"):
        RunConfig(edit={"rome": {"layers": [1, 2]}})
    with pytest.raises(ConfigError, match=r"^edit\.mend: expected a table of mend settings"):
        RunConfig(edit={"mend": 3})
    # a plain key only another editor has is refused when the configuration is planned, as before
    RunConfig(edit_method="alphaedit", edit={"mom2_update_weight": 500})


def test_command_line_text_is_converted_by_the_fields_type():
    assert parse_text(MemitConfig, "targets.steps", "40") == 40
    assert parse_text(MemitConfig, "targets.lr", "1") == 1.0
    assert parse_text(MemitConfig, "targets.reuse_prefix", "false") is False
    assert parse_text(MemitConfig, "layers", "4,5,6") == (4, 5, 6)
    assert parse_text(MemitConfig, "layers", "[4, 5]") == (4, 5)
    assert parse_text(MemitConfig, "templates.seed_words", "The, A") == ("The", "A")
    assert parse_text(MemitConfig, "statistic.max_tokens", "none") is None
    assert parse_text(MemitConfig, "statistic.max_tokens", "2000") == 2000
    assert parse_text(MendConfig, "artifact", "123") == "123"  # a str field keeps the text
    assert parse_text(AlphaEditConfig, "nullspace_rule", "keep") == "keep"
    assert from_text("full", typing.get_type_hints(FinetuneConfig)["method"], "method") == "full"
    with pytest.raises(ConfigError) as err:
        parse_text(MemitConfig, "targets.steps", "abc")
    assert str(err.value) == "targets.steps: expected an integer, got 'abc'"
    with pytest.raises(ConfigError, match=r"^layers\[1\]: expected an integer, got 'x'$"):
        parse_text(MemitConfig, "layers", "4,x")
    with pytest.raises(ConfigError, match="targets.nope: unknown config field"):
        parse_text(MemitConfig, "targets.nope", "1")
    with pytest.raises(ConfigError, match="unknown nullspace_rule 'fraction'"):
        parse_text(AlphaEditConfig, "nullspace_rule", "fraction")


def test_config_errors_survive_pickling():  # Ray sends a stage's exception back by pickle
    err = ConfigError("targets.steps", "expected an integer, got 'abc'", "[grid]")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) == "targets.steps: expected an integer, got 'abc' (in [grid])"
    assert isinstance(back, ValueError)


# --------------------------------------------------------------------------- study files


def _study(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n' + text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '[config]\nn_edits = "forty"\n',
            "n_edits: expected an integer, got 'forty' (in [config] of",
        ),
        ("[config]\nn_edits = -4\n", "n_edits: expected an integer >= 1, got -4 (in [config] of"),
        (
            "[config.finetune]\nlr = -1.0\n",
            "finetune.lr: expected a number > 0, got -1.0 (in [config] of",
        ),
        (
            '[config.finetune]\nepochs = "3"\n',
            "finetune.epochs: expected an integer, got '3' (in [config]",
        ),
        (
            "[config.finetune]\nmethod = 'full'\n",
            "finetune.method: set it through the configuration's ft_method",
        ),
        (
            "[config.finetune]\nnope = 1\n",
            "finetune.nope: unknown finetune setting; known here: method, layers",
        ),
        (
            '[config.evaluate]\nds_modes = ["generate", "score"]\n',
            "evaluate.ds_modes[1]: unknown DS mode 'score'",
        ),
        (
            '[config.edit]\n"targets.steps" = "x"\n',
            "edit.targets.steps: expected an integer, got 'x'",
        ),
        ('[config.edit]\n"targets.lr" = 0\n', "edit.targets.lr: expected a number > 0, got 0"),
        (
            '[config.edit.alphaedit]\nnullspace_rule = "fraction"\n',
            "edit.alphaedit.nullspace_rule: unknown nullspace_rule 'fraction'",
        ),
        ('[grid]\nn_edits = [10, "x"]\n', "n_edits: expected an integer, got 'x' (in [grid] of"),
        (
            '[grid]\n"finetune.lr" = [1e-3, -1.0]\n',
            "finetune.lr: expected a number > 0, got -1.0 (in [grid]",
        ),
        (
            '[grid]\nft_layers = ["all", "middle"]\n',
            "ft_layers: expected one of 'all', 'edited', 'non-edited'",
        ),
        (
            '[[extra]]\nft_method = "lora"\n[[extra]]\nft_method = "qlora"\n',
            "ft_method: unknown ft_method 'qlora'; expected one of 'none', 'lora', 'dora', "
            "'full' (in [[extra]] 2 of",
        ),
        (
            "[[extra]]\nft_examples = 0\n",
            "ft_examples: expected an integer >= 1, got 0 (in [[extra]] 1",
        ),
        ('snapshot_every = "often"\n', "snapshot_every: expected an integer, got 'often'"),
        ("snapshot_every = -1\n", "snapshot_every: expected an integer >= 0, got -1"),
        (
            "[config]\nn_edit = 40\n",
            "n_edit: unknown configuration field; known here: model, edit_method",
        ),
        (
            "[config.evaluate]\nnope = 1\n",
            "evaluate.nope: unknown evaluate setting; known here: ds_per_task",
        ),
    ],
)
def test_a_study_file_is_checked_when_it_is_loaded(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        Study.load(_study(tmp_path, text))
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_a_study_file_converts_tables_and_keeps_values_as_written(tmp_path):
    study = Study.load(
        _study(
            tmp_path,
            '[config]\nmodel = "tiny-llama"\nft_layers = [1, 2]\n'
            '[config.evaluate]\nds_modes = ["rank"]\n'
            "[config.finetune]\nlr = 1\ncheckpoint_steps = [4, 2]\n",
        )
    )
    (cfg,) = study.configs
    assert cfg.ft_layers == (1, 2) and cfg.evaluate.ds_modes == ("rank",)
    assert cfg.finetune == {"lr": 1, "checkpoint_steps": [4, 2]}  # hashed as written
    assert type(cfg.finetune["lr"]) is int
    assert study.snapshot_every == field_default(Study, "snapshot_every") == stages.SNAPSHOT_EVERY


# --------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def runner():
    return CliRunner(env={"EDITDECAY_NO_PROGRESS": "1"})


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any model load fails the test: these errors must come before one."""

    def refuse(*a, **kw):
        raise AssertionError("a model was loaded")

    for module in (
        "editdecay.study.edit_run",
        "editdecay.study.stages",
        "editdecay.models.registry",
    ):
        monkeypatch.setattr(f"{module}.load_model", refuse)


def _one_line_error(result) -> str:
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize(
    "sets, message",
    [
        (["targets.steps=abc"], "error: targets.steps: expected an integer, got 'abc'"),
        (["targets.steps=0"], "error: targets.steps: expected an integer >= 1, got 0"),
        (["templates.top_k=1.5"], "error: templates.top_k: expected an integer, got '1.5'"),
        (
            ["targets.reuse_prefix=maybe"],
            "error: targets.reuse_prefix: expected true or false, got 'maybe'",
        ),
        (["targets.nope=1"], "error: targets.nope: unknown config field; known here: lr, steps"),
    ],
)
def test_edit_set_is_checked_before_the_model_loads(
    runner, no_model_loads, tmp_path, sets, message
):
    args = ["edit", "--model", "tiny-llama", "--out", str(tmp_path / "o")]
    for item in sets:
        args += ["--set", item]
    line = _one_line_error(runner.invoke(app, args))
    assert line.startswith(message), line


def test_edit_config_file_and_options_are_checked_before_the_model_loads(
    runner, no_model_loads, tmp_path
):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[targets]\nsteps = "many"\n')
    base = ["edit", "--model", "tiny-llama", "--out", str(tmp_path / "o")]
    line = _one_line_error(runner.invoke(app, [*base, "--config", str(cfg)]))
    assert line == "error: targets.steps: expected an integer, got 'many'"
    line = _one_line_error(runner.invoke(app, [*base, "--method", "grace"]))
    assert line.startswith("error: method: unknown edit method 'grace'; expected one of 'memit'")
    line = _one_line_error(runner.invoke(app, [*base, "--n", "0"]))
    assert line == "error: n: expected an integer >= 1, got 0"
    line = _one_line_error(runner.invoke(app, [*base, "--method", "rome", "--layers", "1,2"]))
    assert line.startswith("error: layers: expected exactly one layer")


def test_mend_train_set_is_checked_before_the_model_loads(runner, no_model_loads):
    line = _one_line_error(
        runner.invoke(app, ["mend-train", "--model", "tiny-llama", "--set", "rank=abc"])
    )
    assert line == "error: rank: expected an integer, got 'abc'"
    line = _one_line_error(
        runner.invoke(app, ["mend-train", "--model", "tiny-llama", "--steps", "0"])
    )
    assert line == "error: steps: expected an integer >= 1, got 0"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '[config]\nn_edits = "forty"\n',
            "error: n_edits: expected an integer, got 'forty' (in [config] of",
        ),
        (
            "[config.finetune]\nlr = -1.0\n",
            "error: finetune.lr: expected a number > 0, got -1.0 (in [config] of",
        ),
        (
            '[grid]\nedit_method = ["memit", "grace"]\n',
            "error: edit_method: unknown edit_method 'grace'",
        ),
        (
            '[[extra]]\nseed = "one"\n',
            "error: seed: expected an integer, got 'one' (in [[extra]] 1 of",
        ),
    ],
)
def test_grid_dry_run_refuses_a_wrong_study_before_any_model_loads(
    runner, no_model_loads, tmp_path, text, message
):
    line = _one_line_error(runner.invoke(app, ["grid", str(_study(tmp_path, text)), "--dry-run"]))
    assert line.startswith(message), line


def test_one_helper_turns_user_errors_into_exit_code_2():
    from editdecay.cli import _user_errors

    for error in (ValueError("v"), KeyError("k"), FileNotFoundError("f"), RuntimeError("r")):
        with pytest.raises(typer.Exit) as exit_:
            with _user_errors():
                raise error
        assert exit_.value.exit_code == 2
    with pytest.raises(typer.Exit) as exit_:  # a deliberate exit passes unchanged
        with _user_errors():
            raise typer.Exit(0)
    assert exit_.value.exit_code == 0
    package = Path(__file__).resolve().parents[1] / "src" / "editdecay" / "cli"
    exits = sum(path.read_text().count("typer.Exit(2)") for path in package.glob("*.py"))
    assert exits == 1


# --------------------------------------------------------------------------- defaults written once


def _options(command: str) -> dict:
    click_app = typer.main.get_command(app)
    return {p.name: p for p in click_app.commands[command].params}


def test_edit_options_take_their_defaults_and_help_from_edit_job():
    options = _options("edit")
    for name in (
        "model",
        "method",
        "data",
        "n",
        "offset",
        "batch_size",
        "ppl_tokens",
        "strict",
        "seed",
    ):
        assert options[name].default == field_default(EditJob, name), name
        assert options[name].help == field_help(EditJob, name), name
    assert Path(options["out"].default) == field_default(EditJob, "out")
    assert (
        options["ppl_tokens"].default == 8192
        and field_default(EvaluateSettings, "ppl_tokens") == 4096
    )
    # the two perplexity budgets differ on purpose, and each field says why
    assert "study" in field_help(EditJob, "ppl_tokens")
    assert "`editdecay edit`" in field_help(EvaluateSettings, "ppl_tokens")


def test_other_commands_and_configs_share_the_defaults():
    from editdecay.study.reproduce import DEFAULT_MODELS, DEFAULT_OUT, DEFAULT_SCALE

    mend = _options("mend-train")
    assert mend["model"].default == DEFAULT_MODEL == field_default(EditJob, "model")
    assert mend["data"].default == ",".join(field_default(MendConfig, "data"))
    reproduce = _options("reproduce")
    assert reproduce["scale"].default == DEFAULT_SCALE and DEFAULT_SCALE in SCALE_SETTINGS
    assert reproduce["models"].default == ",".join(DEFAULT_MODELS)
    assert Path(reproduce["out"].default) == DEFAULT_OUT
    assert field_default(RunConfig, "model") == DEFAULT_MODEL
    assert stages.SNAPSHOT_EVERY == field_default(Study, "snapshot_every")
    assert Study.from_dict({}).snapshot_every == stages.SNAPSHOT_EVERY


def test_no_fine_tuning_resets_the_fine_tuning_fields_to_their_declared_defaults():
    cfg = RunConfig(ft_method="none", ft_data="hotpotqa", ft_examples=5, seed=3, finetune={"r": 4})
    for name in ("ft_data", "ft_examples", "ft_layers", "seed", "finetune"):
        assert getattr(cfg, name) == field_default(RunConfig, name), name


def test_registry_editor_defaults_fit_the_editor_configs():
    for spec in REGISTRY.values():
        for method, overrides in spec.edit_defaults.items():
            check_overrides(method, overrides)


def test_scale_settings_fit_the_configs_they_fill():
    for settings in SCALE_SETTINGS.values():
        FinetuneConfig.check_overrides(settings.finetune)
        EvaluateSettings(**settings.evaluate)


# --------------------------------------------------------------------------- content addresses


class _Adapter:
    def __init__(self, n_layers: int):
        self._n = n_layers

    def n_layers(self, model) -> int:
        return self._n

    def check_layer(self, model, layer: int) -> None:
        if not 0 <= layer < self._n:
            raise ValueError(f"layer {layer} out of range")


class _StubPool:
    """Planning only reads a model's name, depth and fingerprint: no weights are loaded."""

    LAYERS = {"smollm2-135m": 30, "gemma3-270m": 18}

    def get(self, name: str) -> LoadedModel:
        return LoadedModel(name, None, None, _Adapter(self.LAYERS[name]), f"fp-{name}", "stub")

    def spoil(self, name: str) -> None:
        pass


# Computed before the configs validated themselves (same stub fingerprints); they must never move.
DEFAULT_STUDY_STAGE_KEYS = {
    "smollm2-135m.memit-counterfact40.lora-commonsense-all.s0.50ad0a": {
        "edit@None": "5c5b86f822a89d32",
        "M@0": "adaa762e14c658b5",
        "M_ed@0": "cbb09ca61120b384",
        "finetune:M@None": "d41a0e01cf8fda49",
        "finetune:M_ed@None": "af3b7854a2005720",
        "M_ft@6": "aa7140d7f3fdbffc",
        "M_ed_ft@6": "4f54c904b5967c75",
        "M_ft@final": "0d80c5000b705c56",
        "M_ed_ft@final": "54c73bd8ed469375",
    },
    "smollm2-135m.alphaedit-counterfact40.lora-commonsense-all.s0.efc5e9": {
        "edit@None": "a70cda761c3eff7f",
        "M@0": "adaa762e14c658b5",
        "M_ed@0": "604c62bd69ddf518",
        "finetune:M@None": "d41a0e01cf8fda49",
        "finetune:M_ed@None": "8fc3116765adc66f",
        "M_ft@6": "aa7140d7f3fdbffc",
        "M_ed_ft@6": "9a6293fba5809961",
        "M_ft@final": "0d80c5000b705c56",
        "M_ed_ft@final": "25d3a18fe8c50421",
    },
}
# sha256[:16] of the newline-joined config ids (in study order) and of the sorted stage keys
CONFIG_ID_DIGESTS = {
    "default": (2, "2873a14ba7fbb2e9"),
    "ft-methods": (8, "8842563de8e950da"),
    "selective-layers": (3, "6dba8106ca4e29ab"),
}
STAGE_KEY_DIGESTS = {
    "ft-methods": (41, "3ad607484194e545"),
    "selective-layers": (27, "65a1344dcbc30dab"),
}
REPRODUCTION_ID_DIGESTS = {
    "small": (80, "c9a4985f6dbdfbe9"),
    "medium": (88, "4f3ad62c1965550b"),  # re-sized for the paired bands (reproduce.MEDIUM)
    "paper": (140, "2fadd1c8e71ef569"),
}


def _digest(items) -> tuple[int, str]:
    items = list(items)
    return len(items), hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def _as_before(study: Study, **changed: str) -> Study:
    """The study as every run before `batching` and `adamw` existed fine-tuned it (padded batches, a
    torch-default AdamW), less the settings named in `changed`."""
    earlier = {"batching": "padded", "adamw": "torch-default"} | changed
    configs = [replace(c, finetune={**c.finetune, **earlier}) for c in study.configs]
    return replace(study, configs=configs)


def _stage_keys(study: Study, store: Path) -> list[dict[str, str]]:
    plan = make_plan(study, store, _StubPool())
    return [{f"{k[0]}@{k[1]}": s.key for k, s in c.stages.items()} for c in plan.configs]


def test_stage_keys_of_the_bundled_default_study_are_unchanged(tmp_path):
    study = Study.load(STUDIES / "default.toml")
    assert [c.config_id for c in study.configs] == list(DEFAULT_STUDY_STAGE_KEYS)
    assert _stage_keys(_as_before(study), tmp_path) == list(DEFAULT_STUDY_STAGE_KEYS.values())


@pytest.mark.parametrize("changed", [{"batching": "by-length"}, {"adamw": "fused"}])
def test_new_fine_tuning_settings_move_the_keys_of_fine_tuned_stages_only(tmp_path, changed):
    study = Study.load(STUDIES / "default.toml")
    new_keys = _stage_keys(_as_before(study, **changed), tmp_path)
    for new, earlier in zip(new_keys, _stage_keys(_as_before(study), tmp_path)):
        moved = {name for name in new if new[name] != earlier[name]}
        assert moved == {name for name in new if "ft" in name or name.startswith("finetune")}


@pytest.mark.parametrize("name", sorted(CONFIG_ID_DIGESTS))
def test_config_ids_and_stage_keys_of_the_bundled_studies_are_unchanged(tmp_path, name):
    study = Study.load(STUDIES / f"{name}.toml")
    assert _digest(c.config_id for c in study.configs) == CONFIG_ID_DIGESTS[name]
    if name in STAGE_KEY_DIGESTS:
        plan = make_plan(_as_before(study), tmp_path / "store", _StubPool())
        keys = sorted({s.key for c in plan.configs for s in c.stages.values()})
        assert _digest(keys) == STAGE_KEY_DIGESTS[name]


@pytest.mark.parametrize("scale", sorted(REPRODUCTION_ID_DIGESTS))
def test_config_ids_of_the_reproduction_grid_are_unchanged(tmp_path, scale):
    study = reproduction_study(
        scale, ["smollm2-135m", "gemma3-270m"], tmp_path, mend_available=lambda m: True
    )
    # the edit-layer block (claim 14) only adds configurations: its default-layer twins are the
    # main grid's own edit-only configurations
    kept = [c for c in study.configs if not c.edit_layers_label]
    assert _digest(c.config_id for c in kept) == REPRODUCTION_ID_DIGESTS[scale]
