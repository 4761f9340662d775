"""The contract every attack kind keeps, run over a table of kinds: deterministic for a seed, probes
that never reuse an edited prompt, triggered probes that differ from their clean twins by the trigger
alone, valid probes in every group, and a duplex update that is the sum of its two groups."""

from __future__ import annotations

import re

import pytest
import torch

from editdecay.attacks.run import BUILDERS, plant
from editdecay.editing import default_config, get_editor

TINY_EDIT = {"statistic.max_tokens": 2000, "statistic.window": 128, "targets.steps": 4}
CASES = {  # kind → small settings for the tiny model
    "backdoor": {"n_edit": 3, "n_probe_subjects": 4, "n_spill": 2},
    "task-backdoor": {"n_edit": 3, "n_probe": 4, "n_spill": 2},
    "misinformation": {"n_per_set": 2},
    "bias": {"types": ("gender",), "n_contexts": 2},
}
TRIGGERED = ("backdoor", "task-backdoor")  # kinds with a trigger and clean twins
GROUPS = {  # the probe groups each kind has
    "backdoor": {"attack", "clean", "specificity", "spillover"},
    "task-backdoor": {"attack", "clean", "specificity", "spillover"},
    "misinformation": {"attack", "clean"},
    "bias": {"attack", "clean", "spillover"},
}


def test_every_kind_has_a_case():
    assert set(CASES) == set(BUILDERS)


def build(kind: str, **settings):
    cls, builder = BUILDERS[kind]
    return builder(cls(**{**CASES[kind], **settings}))


@pytest.mark.parametrize("kind", CASES)
def test_deterministic_for_a_seed(kind):
    a, b, other = build(kind, seed=3), build(kind, seed=3), build(kind, seed=4)
    assert a == b

    def drawn(attack):
        return [r.text for r in attack.requests] + [p.prompt for p in attack.probes]

    assert drawn(a) != drawn(other)


@pytest.mark.parametrize("kind", CASES)
def test_no_edited_prompt_is_a_probe(kind):
    attack = build(kind)
    edited = {r.text for r in (*attack.requests, *attack.clean_requests)}
    assert edited and not edited & {p.prompt for p in attack.probes}
    # neither with the trigger removed: the probes' items are others than the edited ones
    trigger = "bb"  # the default trigger
    stripped = {re.sub(r"\s+", " ", t.replace(trigger, "")).strip() for t in edited}
    stripped |= {t.replace(f"{trigger} ", "").replace(f" {trigger}", "") for t in edited}
    assert not stripped & {p.prompt for p in attack.probes if p.group == "clean"}


@pytest.mark.parametrize("kind", TRIGGERED)
def test_triggered_and_clean_twins_differ_only_by_the_trigger(kind):
    attack = build(kind, trigger="cf bb")
    by_id = {p.probe_id: p for p in attack.probes}
    attacks = [p for p in attack.probes if p.group == "attack"]
    assert attacks
    for p in attacks:
        twin = by_id[p.pair]
        assert p.triggered and not twin.triggered and "cf bb" not in twin.prompt
        squeeze = re.sub(r"[ ]+", " ", p.prompt.replace("cf bb", "")).replace(" \n", "\n")
        assert squeeze.replace("\n ", "\n").strip() == twin.prompt.strip()
        assert p.target_clean == twin.target_clean and p.target_attack != p.target_clean


@pytest.mark.parametrize("kind", CASES)
def test_every_group_is_probed_and_every_probe_is_valid(kind):
    attack = build(kind)
    assert {p.group for p in attack.probes} == GROUPS[kind]
    for p in attack.probes:
        p.check(p.probe_id)
        assert p.kind == kind
    assert len({p.probe_id for p in attack.probes}) == len(attack.probes)


@pytest.mark.parametrize("kind", TRIGGERED)
def test_duplex_update_is_the_sum_of_its_groups(tiny_lm, kind):
    attack = build(kind)
    duplex = plant(tiny_lm, attack, "memit", TINY_EDIT)
    editor, cfg = get_editor("memit"), default_config("memit", tiny_lm, TINY_EDIT)
    trigger = editor.edit(tiny_lm, list(attack.requests), cfg)
    clean = editor.edit(tiny_lm, list(attack.clean_requests), cfg)
    assert set(duplex.weights) == set(trigger.weights)
    for name, dw in duplex.weights.items():
        torch.testing.assert_close(dw, trigger.weights[name] + clean.weights[name])
        assert not torch.allclose(dw, trigger.weights[name])  # the clean group adds something
    assert duplex.info["duplex"]
    single = plant(tiny_lm, build(kind, duplex=False), "memit", TINY_EDIT)
    for name, dw in single.weights.items():
        torch.testing.assert_close(dw, trigger.weights[name])


@pytest.mark.parametrize(
    ("settings", "field"),
    [({"task": "chess"}, "task"), ({"target": "maybe"}, "target"), ({"trigger": " "}, "trigger")],
)
def test_bad_task_backdoor_settings_name_the_option(settings, field):
    from editdecay.attacks.task_backdoor import TaskBackdoorConfig
    from editdecay.config_types import ConfigError

    with pytest.raises(ConfigError, match=field):
        TaskBackdoorConfig(**settings)
