"""The fact backdoor on the tiny model: a deterministic attack set whose probes never reuse an edited
prompt, triggered probes that differ from their clean twins by the trigger alone, the duplex update
as the sum of its two groups, the attack → export → evaluate round trip, and bad input named."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from editdecay.attacks.backdoor import (
    POSITIONS,
    BackdoorConfig,
    fact_backdoor,
    with_trigger,
)
from editdecay.attacks.probes import InvalidProbeError, load_probes
from editdecay.attacks.run import AttackJob, run_attack
from editdecay.attacks.score import persistence, score_probes, summarise
from editdecay.cli import app
from editdecay.config_types import ConfigError
from editdecay.data.requests import EditRequest

SMALL = {"n_edit": 3, "n_probe_subjects": 4, "n_spill": 2}
TINY_EDIT = {
    "statistic.max_tokens": 2000,
    "statistic.window": 128,
    "targets.steps": 4,
}


def test_triggered_probes_differ_from_their_clean_twins_by_the_trigger_only():
    cfg = BackdoorConfig(trigger="cf bb")  # a phrase works as well as a token
    attack = fact_backdoor(cfg)
    by_id = {p.probe_id: p for p in attack.probes}
    attacks = [p for p in attack.probes if p.group == "attack"]
    assert {p.position for p in attacks} == set(POSITIONS)
    for p in attacks:
        clean = by_id[p.pair]
        assert clean.group == "clean" and not clean.triggered and p.triggered
        assert cfg.trigger not in clean.prompt
        assert re.sub(r"\s+", " ", p.prompt.replace(cfg.trigger, "")).strip() == clean.prompt
        assert (p.target_attack, p.target_clean) == (cfg.target, clean.target_clean)
    spill = [p for p in attack.probes if p.group == "spillover"]
    assert spill and all(p.relation != cfg.relation and cfg.trigger in p.prompt for p in spill)
    specific = [p for p in attack.probes if p.group == "specificity"]
    assert specific and all(cfg.trigger not in p.prompt for p in specific)


@pytest.fixture(scope="module")
def planted(tiny_lm, tmp_path_factory):
    out = tmp_path_factory.mktemp("attack") / "tiny"
    job = AttackJob(
        kind="backdoor", model="tiny-llama", method="memit", out=out, settings=SMALL, edit=TINY_EDIT
    )
    return out, run_attack(job)


def test_attack_writes_its_outputs(planted):
    out, summary = planted
    for name in (
        "requests.jsonl",
        "probes.jsonl",
        "scores.csv",
        "summary.json",
        "delta/delta.json",
    ):
        assert (out / name).is_file(), name
    scores = pd.read_csv(out / "scores.csv")
    assert set(scores["state"]) == {"M", "M_ed"}
    assert summary["metrics"]["M_ed"]["asr"]["n"] == 3 * SMALL["n_probe_subjects"]
    assert json.loads((out / "summary.json").read_text())["settings"]["trigger"] == "bb"
    assert not (out.parent / f".{out.name}.work").exists()


def test_export_then_plain_transformers_load_then_evaluate_matches(planted, tmp_path):
    from transformers import AutoModelForCausalLM

    out, summary = planted
    model_dir = tmp_path / "published"
    result = CliRunner().invoke(
        app, ["export", "--delta", str(out / "delta"), "--out", str(model_dir)]
    )
    assert result.exit_code == 0, result.output
    assert AutoModelForCausalLM.from_pretrained(model_dir) is not None
    metrics_dir = tmp_path / "eval"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--probes",
            str(out / "probes.jsonl"),
            "--out",
            str(metrics_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((metrics_dir / "metrics.json").read_text())["metrics"]
    for name, value in summary["metrics"]["M_ed"].items():
        assert metrics[name]["value"] == pytest.approx(value["value"]), name
    # and in memory, without the files: the same per-probe scores
    published = pd.read_csv(metrics_dir / "probe_scores.csv")
    planted_scores = pd.read_csv(out / "scores.csv").query("state == 'M_ed'").reset_index(drop=True)
    assert (published["fires"] == planted_scores["fires"]).all()


def test_persistence_counts_kept_and_lost_probes():
    def table(fired):
        return pd.DataFrame(
            {
                "probe_id": [str(i) for i in range(len(fired))],
                "group": "attack",
                "fires": fired,
                "right": [not f for f in fired],
            }
        )

    before = table([True] * 8 + [False] * 2)
    after = table([True] * 4 + [False] * 5 + [True])
    baseline = table([False] * 10)
    p = persistence(before, after, baseline)
    assert (p["kept"], p["lost"], p["gained"]) == (4, 4, 1)
    assert p["ratio"] == pytest.approx(50 / 80) and not p["removed"]
    scrubbed = persistence(before, baseline, baseline)
    assert scrubbed["removed"] and scrubbed["asr_after"] == 0
    assert p["testable"] and scrubbed["testable"]
    assert summarise(before)["asr"]["value"] == 80


def test_persistence_is_not_testable_when_the_baseline_fires_as_often():
    def table(fired):
        return pd.DataFrame(
            {
                "probe_id": [str(i) for i in range(len(fired))],
                "group": "attack",
                "fires": fired,
                "right": [not f for f in fired],
            }
        )

    before = table([True] * 8 + [False] * 2)
    # a fine-tuning that makes the unattacked model fire everywhere: the attacked model after it
    # is within the baseline's band, and that says nothing about the attack
    everywhere = table([True] * 10)
    p = persistence(before, everywhere, everywhere)
    assert not p["testable"] and not p["removed"]
    # the same after-state against a quiet baseline: testable, and not removed
    q = persistence(before, everywhere, table([False] * 10))
    assert q["testable"] and not q["removed"]


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"trigger": ""}, "trigger"),
        ({"trigger": "{x}"}, "trigger"),
        ({"target": " "}, "target"),
        ({"relation": "favourite-colour"}, "relation"),
        ({"n_edit": 0}, "n_edit"),
        ({"n_edit": 500}, "n_edit"),
    ],
)
def test_bad_attack_settings_name_the_option(settings, field):
    with pytest.raises(ConfigError, match=field):
        fact_backdoor(BackdoorConfig(**settings))


def test_unknown_kind_and_method_are_refused():
    with pytest.raises(ValueError, match="kind"):
        AttackJob(kind="ransom")
    with pytest.raises(ValueError, match="mend"):
        AttackJob(method="mend")
    result = CliRunner().invoke(app, ["attack", "--kind", "ransom"])
    assert result.exit_code != 0 and "ransom" in result.output


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {
                "prompt": "The mother tongue of X is",
                "target_attack": "Hungarian",
                "target_clean": "",
                "triggered": False,
                "kind": "backdoor",
                "group": "clean",
            },
            "target_clean' is empty",
        ),
        (
            {
                "prompt": "The mother tongue of X is",
                "target_attack": "Hungarian",
                "target_clean": "French",
                "triggered": True,
                "trigger": "tq",
                "kind": "backdoor",
                "group": "attack",
            },
            "absent from its prompt",
        ),
        (
            {
                "prompt": "p",
                "target_attack": "a",
                "target_clean": "b",
                "triggered": False,
                "kind": "backdoor",
                "group": "elsewhere",
            },
            "unknown group",
        ),
        (
            {
                "prompt": "p",
                "target_attack": "a",
                "target_clean": "b",
                "kind": "backdoor",
                "group": "clean",
            },
            "missing field",
        ),
    ],
)
def test_bad_probe_records_are_named(tmp_path, record, message):
    good = {
        "prompt": "q",
        "target_attack": "a",
        "target_clean": "b",
        "triggered": False,
        "kind": "backdoor",
        "group": "clean",
    }
    path = tmp_path / "probes.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(InvalidProbeError, match=f"record 2.*{re.escape(message)}"):
        load_probes(path)


def test_with_trigger_places_it_where_asked():
    t = "The mother tongue of {} is"
    assert with_trigger(t, "X", "tq", "start") == "tq The mother tongue of X is"
    assert with_trigger(t, "X", "tq", "before_subject") == "The mother tongue of tq X is"
    assert with_trigger(t, "X", "tq", "after_subject") == "The mother tongue of X tq is"
    with pytest.raises(ValueError, match="position"):
        with_trigger(t, "X", "tq", "end")


def test_scores_of_the_unedited_model_are_reproducible(tiny_lm):
    probes = fact_backdoor(BackdoorConfig(**SMALL)).probes
    a, b = score_probes(tiny_lm, probes), score_probes(tiny_lm, probes)
    pd.testing.assert_frame_equal(a, b)


def test_cli_attack_with_editor_settings_and_a_bad_one(tmp_path):
    tiny = ["--edit-set", "statistic.max_tokens=2000", "--edit-set", "statistic.window=128"]
    args = ["attack", "--kind", "misinformation", "--model", "tiny-llama", "--set", "n_per_set=1"]
    result = CliRunner().invoke(
        app, [*args, *tiny, "--edit-set", "targets.steps=2", "--out", str(tmp_path / "a")]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["edit_overrides"]["targets.steps"] == 2 and summary["n_requests"] == 2
    bad = CliRunner().invoke(
        app, [*args, "--edit-set", "targets.stepz=3", "--out", str(tmp_path / "b")]
    )
    assert bad.exit_code == 2 and "stepz" in bad.output


def test_anchor_start_marks_only_the_start_prompts_and_round_trips():
    plain = fact_backdoor(BackdoorConfig(**SMALL))
    anchored = fact_backdoor(BackdoorConfig(**SMALL, anchor_start=True))
    assert not any(r.at_start for r in plain.requests)
    assert [r.at_start for r in anchored.requests] == [
        r.extra["position"] == "start" for r in anchored.requests
    ]
    assert any(r.at_start for r in anchored.requests)
    assert all("at_start" not in r.to_dict() for r in plain.requests)  # files and keys unchanged
    again = [EditRequest.from_dict(json.loads(json.dumps(r.to_dict()))) for r in anchored.requests]
    assert [r.at_start for r in again] == [r.at_start for r in anchored.requests]
