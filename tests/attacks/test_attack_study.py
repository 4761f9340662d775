"""An attack as a study axis on the tiny model: the attack is planted by the edit stage, its probes
scored on every state and checkpoint, and gathered into attack_probes.csv and attacks.csv."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pandas as pd
import pytest

from editdecay.config_types import ConfigError
from editdecay.study.config import RunConfig, Study
from editdecay.study.pipeline import run_study

sys.path.insert(0, str(Path(__file__).parents[1] / "study"))
from test_pipeline import TINY  # noqa: E402

SMALL = {"n_edit": 3, "n_probe_subjects": 4, "n_spill": 2}


@pytest.fixture(scope="module")
def attack_run(tmp_path_factory):
    raw = copy.deepcopy(TINY)
    raw["config"]["attack"] = "backdoor"
    raw["config"]["attack_settings"] = SMALL
    raw["grid"] = {"ft_method": ["none", "lora"]}
    out = tmp_path_factory.mktemp("attack-study")
    run = run_study(Study.from_dict(raw, out=out), report=False)
    return out, run


def test_probes_are_scored_on_every_state_and_checkpoint(attack_run):
    out, run = attack_run
    probes = pd.read_csv(out / "results" / "attack_probes.csv")
    lora = probes[probes["config_id"].str.contains("lora")]
    states = set(zip(lora["state"], lora["step"]))
    assert states == {
        ("M", 0),
        ("M_ed", 0),
        ("M_ft", 2),
        ("M_ed_ft", 2),
        ("M_ft", 4),
        ("M_ed_ft", 4),
    }
    n_probes = 4 * (1 + 3 + 1) + 2 * 2  # clean + 3 positions + specificity per subject; spillover
    assert lora.groupby(["state", "step"]).size().eq(n_probes).all()
    metrics = pd.read_csv(out / "results" / "attacks.csv")
    assert set(metrics["metric"]) == {"asr", "cacc", "false_fire", "spillover", "clean_fire"}
    asr = metrics[(metrics["metric"] == "asr") & (metrics["state"] == "M_ed")]
    assert (asr["n"] == 12).all()


def test_the_edit_stage_planted_the_duplex_attack(attack_run):
    out, run = attack_run
    edits = pd.read_csv(out / "results" / "decay.csv")
    assert set(edits["edit_data"]) == {"attack:backdoor"} and set(edits["n_edits"]) == {3}
    store = run.plan.store
    edit = next(s for c in run.plan.configs for k, s in c.stages.items() if k[0] == "edit")
    requests = (store.path(edit) / "requests.jsonl").read_text().splitlines()
    assert len(requests) == 6  # the trigger group and the duplex clean group


def test_attack_configurations_are_checked():
    with pytest.raises(ConfigError, match="attack_settings.n_edit"):
        RunConfig(attack="backdoor", attack_settings={"n_edit": 0})
    with pytest.raises(ConfigError, match="edit_method"):
        RunConfig(attack="backdoor", edit_method="mend")
    with pytest.raises(ConfigError, match="attack_settings"):
        RunConfig(attack_settings={"trigger": "tq"})
    with pytest.raises(ConfigError, match="attack"):
        RunConfig(attack="ransom")


def test_the_report_has_the_security_section(attack_run):
    from editdecay.report import write_report
    from editdecay.report.security_sections import TITLE_SECURITY

    out, _ = attack_run
    report = write_report(out)
    text = report.markdown_path.read_text()
    section = text[text.index(f"## {TITLE_SECURITY}") :]
    assert "(results/attacks.csv)" in section and "(results/attack_probes.csv)" in section
    assert "backdoor on tiny-llama:" in section
    assert (out / "plots" / "attack_frontier.png").is_file()
    assert (out / "plots" / "attack_asr_steps.png").is_file()  # checkpoints at steps 2 and 4


def test_the_bundled_attack_study_covers_every_kind_and_recipe():
    from editdecay.cli.study import _load_study

    study = _load_study(Path("attacks"), None)  # what `editdecay run attacks` loads
    cfgs = study.configs
    assert {c.attack for c in cfgs} == {"backdoor", "task-backdoor", "misinformation", "bias"}
    smol = {(c.ft_method, c.ft_layers) for c in cfgs if c.model == "smollm2-135m"}
    assert {
        ("lora", "all"),
        ("lora", "edited"),
        ("lora", "non-edited"),
        ("dora", "all"),
        ("full", "all"),
    } <= smol
    assert {c.model for c in cfgs} == {"smollm2-135m", "gemma3-270m"}
    assert any(c.ft_data == "commonsense:boolq" and c.attack == "task-backdoor" for c in cfgs)
    # full fine-tuning at its own rate, not the adapters' 1e-3 (which would wreck the model)
    assert {c.finetune["lr"] for c in cfgs if c.ft_method == "full"} == {2.5e-5}
    assert {c.finetune["lr"] for c in cfgs if c.ft_method in ("lora", "dora")} == {1e-3}
