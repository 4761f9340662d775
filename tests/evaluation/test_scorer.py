"""The batched teacher-forced scorer and the per-edit CounterFact metrics built on it (tiny model)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from editdecay.analysis.decay import efficacy_kind
from editdecay.data.loaders import load_requests
from editdecay.data.tokenization import encode_continuation
from editdecay.evaluation.edit_metrics import HEADLINE, evaluate_requests, summarise
from editdecay.evaluation.scorer import Scorer, TargetScore

PAIRS = [
    ("The mother tongue of Danielle Darrieux is", "English"),
    ("Paris is the capital of", "France"),
    (
        "Regarding individual vitamin and mineral supplementation, research shows mixed results. "
        "Edwin of Northumbria is affiliated with the religion",
        "Islam",
    ),
    ("Lyon", "Manila"),
    ("What is the twin city of Lyon? It is", "Beirut"),
    ("Thomas Joannes Stieltjes was born in", "Den Haag"),
    ("The official religion of Edwin of Northumbria is", "Christianity"),
]


def _scorer(lm, max_batch_tokens=8192):
    return Scorer(lm.model, lm.tokenizer, lm.adapter, max_batch_tokens=max_batch_tokens)


class _ForwardCounter:
    """Counts backbone forward passes (= batches) while active."""

    def __init__(self, lm):
        self.module = lm.adapter.backbone(lm.model)
        self.calls = 0

    def __enter__(self):
        self.handle = self.module.register_forward_pre_hook(self._hook)
        return self

    def _hook(self, *_):
        self.calls += 1

    def __exit__(self, *exc):
        self.handle.remove()


def _manual(lm, prompt, target):
    """NLL and argmax from the full model's logits on the concatenated ids, one unpadded row."""
    c = encode_continuation(lm.tokenizer, prompt, target)
    ids = list(c.prompt_ids) + list(c.target_ids)
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids], device=lm.model.device)).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    start = len(c.prompt_ids) - 1
    nll = -sum(float(logp[start + j, t]) for j, t in enumerate(c.target_ids)) / len(c.target_ids)
    pred = tuple(int(logp[start + j].argmax()) for j in range(len(c.target_ids)))
    return nll, pred, tuple(c.target_ids)


@pytest.fixture(scope="module")
def alone(tiny_lm):
    scorer = _scorer(tiny_lm)
    return {p: scorer.score([p])[0] for p in PAIRS}


def test_lengths_differ_so_batches_are_padded(tiny_lm):
    scorer = _scorer(tiny_lm)
    lengths = {len(scorer.encode(*p).prompt_ids) + len(scorer.encode(*p).target_ids) for p in PAIRS}
    assert len(lengths) >= 4 and max(lengths) > 2 * min(lengths)


@pytest.mark.parametrize("max_batch_tokens,min_batches", [(100_000, 1), (40, 3)])
def test_scores_do_not_depend_on_padding_or_batching(tiny_lm, alone, max_batch_tokens, min_batches):
    scorer = _scorer(tiny_lm, max_batch_tokens)
    with _ForwardCounter(tiny_lm) as counter:
        scores = scorer.score(PAIRS)
    if min_batches == 1:
        assert counter.calls == 1  # all pairs in one padded batch
    else:
        assert (
            min_batches <= counter.calls < len(PAIRS)
        )  # several batches, some with more than one row
    assert len(scores) == len(PAIRS)
    for pair, s in zip(PAIRS, scores):
        ref = alone[pair]
        assert s.target_ids == ref.target_ids
        assert abs(s.nll - ref.nll) < 1e-4, pair
        assert s.predicted == ref.predicted, pair


def test_nll_matches_a_manual_log_softmax(tiny_lm):
    scores = _scorer(tiny_lm).score(PAIRS)
    for pair, s in zip(PAIRS, scores):
        nll, pred, target_ids = _manual(tiny_lm, *pair)
        assert s.target_ids == target_ids
        assert abs(s.nll - nll) < 1e-4, pair
        assert s.predicted == pred, pair
        assert math.isfinite(s.nll) and s.nll > 0


def test_results_follow_the_input_order_and_allow_duplicates(tiny_lm):
    scorer = _scorer(tiny_lm)
    pairs = [PAIRS[2], PAIRS[0], PAIRS[2], PAIRS[1], PAIRS[0]]
    scores = scorer.score(pairs)
    assert len(scores) == len(pairs)
    assert scores[0] == scores[2] and scores[1] == scores[4]
    for (prompt, target), s in zip(pairs, scores):
        assert s.target_ids == tuple(
            encode_continuation(tiny_lm.tokenizer, prompt, target).target_ids
        )
    assert scores[0].nll != scores[1].nll


def test_empty_input_gives_empty_output(tiny_lm):
    assert _scorer(tiny_lm).score([]) == []


def test_target_score_properties():
    s = TargetScore(nll=0.5, predicted=(1, 2, 3, 4), target_ids=(1, 9, 3, 9))
    assert s.correct == (True, False, True, False)
    assert s.accuracy == 0.5
    assert s.prob == pytest.approx(math.exp(-0.5))


# --------------------------------------------------------------------------- evaluate_requests / summarise


@pytest.fixture(scope="module")
def unedited(tiny_lm, cf_requests):
    return evaluate_requests(_scorer(tiny_lm), cf_requests)


def test_table_has_one_row_per_request_with_binary_scores(unedited, cf_requests):
    assert list(unedited["case_id"]) == [r.case_id for r in cf_requests]
    for col in ("es", "ps", "ns"):
        assert set(unedited[col].unique()) <= {0.0, 1.0}, col
    for col in ("rewrite_acc", "paraphrase_acc", "neighbour_acc"):
        assert unedited[col].between(0, 1).all(), col
    assert unedited["locality"].isna().all()  # no reference given
    assert (unedited["nll_new"] > 0).all() and (unedited["nll_true"] > 0).all()


def test_zsre_alt_rows_carry_their_source_and_are_judged_as_zsre(tiny_lm):
    reqs = load_requests("zsre", n=2).requests
    assert all(r.target_true for r in reqs)  # edited toward `alt`, the original answer kept
    table = evaluate_requests(_scorer(tiny_lm), reqs)
    assert list(table["source"]) == ["zsre", "zsre"]
    assert table["es"].notna().all()
    assert efficacy_kind(table) == "zsre"
    assert efficacy_kind(table.assign(case_id=["a", "b"])) == "zsre"  # by source alone


def test_scores_agree_with_the_scorer(tiny_lm, unedited, cf_requests):
    scorer = _scorer(tiny_lm)
    for req, (_, row) in zip(cf_requests, unedited.iterrows()):
        new, true = scorer.score([(req.text, req.target_new), (req.text, req.target_true)])
        assert row["es"] == float(new.nll < true.nll)
        assert row["em"] == pytest.approx(new.prob - true.prob, abs=1e-6)
        assert row["nll_new"] == pytest.approx(new.nll, abs=1e-5)
        assert row["rewrite_acc"] == new.accuracy
        (para,) = req.paraphrases
        pn, pt = scorer.score([(para, req.target_new), (para, req.target_true)])
        assert row["ps"] == float(pn.nll < pt.nll)
        (nb,) = req.neighbours
        assert nb.target == req.target_true  # CounterFact layout: ns is defined
        nn_, nt = scorer.score([(nb.prompt, req.target_new), (nb.prompt, nb.target)])
        assert row["ns"] == float(nt.nll < nn_.nll)
        assert row["neighbour_pred"] == ",".join(map(str, nt.predicted))


def test_locality_is_one_against_the_same_models_table(tiny_lm, unedited, cf_requests):
    again = evaluate_requests(_scorer(tiny_lm), cf_requests, reference=unedited)
    assert (again["locality"] == 1.0).all()
    pd.testing.assert_series_equal(again["es"], unedited["es"])
    s = summarise(again)
    assert s["locality"] == 100.0
    assert set(HEADLINE) <= set(s)


def test_locality_is_zero_when_every_reference_token_differs(tiny_lm, unedited, cf_requests):
    ref = unedited.copy()
    ref["neighbour_pred"] = [
        " ".join(",".join(str(int(t) + 1) for t in part.split(",")) for part in preds.split(" "))
        for preds in unedited["neighbour_pred"]
    ]
    table = evaluate_requests(_scorer(tiny_lm), cf_requests, reference=ref)
    assert (table["locality"] == 0.0).all()


def test_summarise_is_percent_and_leaves_out_nan_columns(unedited):
    s = summarise(unedited)
    assert "locality" not in s
    for col in ("es", "ps", "ns", "rewrite_acc", "paraphrase_acc", "neighbour_acc"):
        assert s[col] == pytest.approx(100 * float(np.mean(unedited[col])))
        assert 0 <= s[col] <= 100


# --------------------------------------------------------------------------- shared rows

LABEL_PROMPT = "Question: which option fits best? Answer format: answer1/answer2/answer3\n\nthe correct answer is"


def _single_token_targets(lm, prompt, n=3):
    """`n` words that encode to one token after `prompt`."""
    words = []
    for w in ("the", "a", "of", "and", "to", "in", "is", "it", "on", "at", "by", "or", "as", "be"):
        if len(encode_continuation(lm.tokenizer, prompt, w).target_ids) == 1:
            words.append(w)
        if len(words) == n:
            return words
    pytest.skip("the tiny tokenizer has too few single-token words")


@pytest.mark.parametrize("kind", ["labels", "single-token"])
def test_targets_of_one_prompt_share_a_row_and_score_as_alone(tiny_lm, kind):
    scorer = _scorer(tiny_lm)
    if kind == "labels":
        targets = ["answer1", "answer2", "answer3"]
        prefixes = {
            encode_continuation(tiny_lm.tokenizer, LABEL_PROMPT, t).target_ids[:-1] for t in targets
        }
        assert len(prefixes) == 1  # the labels differ in their last token only
    else:
        targets = _single_token_targets(tiny_lm, LABEL_PROMPT)
    pairs = [(LABEL_PROMPT, t) for t in targets]
    alone = [scorer.score([pair])[0] for pair in pairs]
    shared = []
    original = scorer._score_batch
    scorer._score_batch = lambda rows: shared.append([len(r.conts) for r in rows]) or original(rows)
    scores = scorer.score(pairs)
    assert shared == [[len(targets)]]  # one batch of one row holding every target
    for s, a in zip(scores, alone):
        assert s.target_ids == a.target_ids
        assert abs(s.nll - a.nll) < 1e-5
        assert s.predicted == a.predicted
    for (prompt, target), s in zip(pairs, scores):
        nll, pred, _ = _manual(tiny_lm, prompt, target)
        assert abs(s.nll - nll) < 1e-4 and s.predicted == pred


def test_targets_differing_earlier_get_rows_of_their_own(tiny_lm):
    scorer = _scorer(tiny_lm)
    prompt = PAIRS[5][0]
    targets = ["Den Haag", "Christianity", "answer1"]
    conts = [encode_continuation(tiny_lm.tokenizer, prompt, t) for t in targets]
    assert len({c.target_ids[:-1] for c in conts}) > 1
    seen = []
    original = scorer._score_batch
    scorer._score_batch = lambda rows: seen.extend(len(r.conts) for r in rows) or original(rows)
    scores = scorer.score([(prompt, t) for t in targets])
    assert seen == [1, 1, 1]
    for t, s in zip(targets, scores):
        nll, pred, target_ids = _manual(tiny_lm, prompt, t)
        assert s.target_ids == target_ids and abs(s.nll - nll) < 1e-4 and s.predicted == pred
