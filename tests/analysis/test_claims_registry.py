"""The claim registry: each PAPER §4 claim declared once, checked on tables prepared once."""

from __future__ import annotations

import pandas as pd
import pytest

from editdecay.analysis import claims
from editdecay.analysis.claims import registry
from editdecay.analysis.claims.registry import (
    CLAIMS,
    HOLDS,
    NOT_TESTED,
    Finding,
    check_claim,
    check_claims,
    claim,
)


def test_every_paper_claim_is_registered_once_with_its_text():
    assert sorted(CLAIMS) == list(range(1, 16))
    for claim_id, declared in CLAIMS.items():
        assert declared.id == claim_id
        assert declared.text and declared.paper
        assert declared.check.__doc__ is None or declared.check.__name__ != f"claim_{claim_id}"


def test_a_second_claim_with_a_registered_id_is_refused():
    with pytest.raises(ValueError, match="claim 1 is registered twice"):

        @claim(1, "again", paper="—")
        def again(data):  # pragma: no cover - never registered
            return Finding(HOLDS, "", "")

    assert CLAIMS[1].check.__name__ == "edits_decay"


def test_a_finding_must_carry_a_known_verdict():
    with pytest.raises(ValueError, match="verdict"):
        Finding("probably", "", "")


def test_unknown_claim_id_names_the_registered_ones():
    with pytest.raises(KeyError, match="no claim 99"):
        check_claim(99, {"decay": pd.DataFrame()})


def test_tables_are_prepared_once_for_all_claims(monkeypatch):
    calls = []
    original = registry.prepare

    def counting(tables):
        calls.append(1)
        return original(tables)

    monkeypatch.setattr(registry, "prepare", counting)
    results = check_claims({"decay": pd.DataFrame()})
    assert len(calls) == 1
    assert [r.id for r in results] == list(range(1, 16))
    assert {r.verdict for r in results} == {NOT_TESTED}


def test_missing_decay_table_is_a_clear_error():
    with pytest.raises(ValueError, match=r"tables\['decay'\]"):
        claims.check_claims({})
