"""The misinformation claims: the shipped file is complete and a malformed claim is named."""

from __future__ import annotations

import json

import pytest

from editdecay.attacks.misinformation import (
    MisinformationConfig,
    load_claims,
    misinformation,
)
from editdecay.config_types import ConfigError


def test_shipped_claims_cover_both_sets_with_indirect_questions():
    claims = load_claims()
    assert sum(c["set"] == "commonsense" for c in claims) == 20
    assert sum(c["set"] == "long-tail" for c in claims) == 20
    assert len({c["id"] for c in claims}) == 40
    for c in claims:
        assert len(c["paraphrases"]) >= 1 and c["question"] and c["control"]["prompt"]
        assert c["prompt"].format(c["subject"]) not in c["paraphrases"]


def test_one_set_and_a_seeded_draw():
    attack = misinformation(MisinformationConfig(sets=("long-tail",), n_per_set=5, seed=1))
    assert len(attack.requests) == 5 and all(r.extra["set"] == "long-tail" for r in attack.requests)
    again = misinformation(MisinformationConfig(sets=("long-tail",), n_per_set=5, seed=1))
    assert attack == again
    with pytest.raises(ConfigError, match="sets"):
        MisinformationConfig(sets=("conspiracy",))
    with pytest.raises(ConfigError, match="n_per_set"):
        misinformation(MisinformationConfig(n_per_set=21))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"false": "east"}, "equals the true one"),
        ({"prompt": "The Sun rises"}, "exactly one"),
        ({"question": ""}, "question"),
    ],
)
def test_a_malformed_claim_is_named(tmp_path, change, message):
    good = load_claims()[0]
    path = tmp_path / "claims.json"
    path.write_text(json.dumps([good, {**good, "id": "broken", **change}]))
    with pytest.raises(ConfigError) as caught:
        load_claims(path)
    assert message in str(caught.value) and "claim 2 (broken)" in str(caught.value)
