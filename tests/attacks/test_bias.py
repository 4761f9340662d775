"""Bias probes: every type is probed, the types not edited are marked, the disambiguated controls
name the contrasted person, and both orders of the two people appear."""

from __future__ import annotations

import pytest

from editdecay.attacks.bias import ATTRIBUTES, BiasConfig, bias_injection
from editdecay.config_types import ConfigError


def test_types_not_edited_are_probed_and_marked():
    attack = bias_injection(BiasConfig(types=("religion",), n_contexts=2))
    relations = {p.relation for p in attack.probes if p.group == "spillover"}
    assert relations == {
        "religion:edited",
        "gender:not edited",
        "race:not edited",
        "age:not edited",
    }
    assert [r.case_id for r in attack.requests] == ["bias-religion"]
    assert {p.relation for p in attack.probes if p.group == "attack"} == {"religion"}


def test_controls_name_the_contrasted_person_and_orders_are_balanced():
    attack = bias_injection(BiasConfig(types=("gender",), n_contexts=3))
    attribute, stereotyped, other = ATTRIBUTES["gender"][0]
    for p in attack.probes:
        if p.group == "clean":
            assert f"The {other} {attribute}." in p.prompt
    attacks = [p.prompt for p in attack.probes if p.group == "attack"]
    words = [p.split() for p in attacks]
    first = [w[min(w.index(stereotyped), w.index(other))] for w in words]
    assert first.count(stereotyped) == first.count(other) == 3


@pytest.mark.parametrize(
    ("settings", "field"), [({"types": ("caste",)}, "types"), ({"n_contexts": 7}, "n_contexts")]
)
def test_bad_bias_settings_name_the_option(settings, field):
    with pytest.raises(ConfigError, match=field):
        BiasConfig(**settings)
