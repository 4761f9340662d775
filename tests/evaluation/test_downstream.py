"""Downstream accuracy on the tiny random model: answer extraction, rank classification, generation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from editdecay.data.instructions import (
    InstructionExample,
    alpaca_prompt,
    example_labels,
    load_commonsense,
)
from editdecay.data.tokenization import encode
from editdecay.evaluation.downstream import (
    downstream_accuracy,
    extract_answer,
    generate_answers,
    rank_classify,
    token_batches,
)
from editdecay.evaluation.scorer import Scorer


@pytest.mark.parametrize(
    "task, text, expected",
    [
        ("ARC-Challenge", "the correct answer is answer3", "answer3"),
        ("social_i_qa", "Answer2 is right", "answer2"),
        ("social_i_qa", "I think answer3, not answer1", "answer3"),
        ("boolq", "true.", "true"),
        ("boolq", "The answer is False", "false"),
        ("boolq", "none", None),
        ("boolq", "untrue", None),
        ("piqa", "the correct answer is Solution2\n", "solution2"),
        ("winogrande", "option1", "option1"),
        ("openbookqa", "answer5", None),  # not an OpenBookQA label
        ("ARC-Easy", "answer12", None),
        ("ARC-Easy", "", None),
    ],
)
def test_extract_answer(task, text, expected):
    assert extract_answer(task, text) == expected


def test_extract_answer_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        extract_answer("hellaswag", "ending1")


@pytest.fixture(scope="module")
def examples():
    return load_commonsense("test", tasks=("boolq", "piqa", "ARC-Easy"), n_per_task=2, seed=0)


def test_rank_classify_picks_lowest_nll(tiny_lm, examples):
    scorer = Scorer(tiny_lm.model, tiny_lm.tokenizer, tiny_lm.adapter)
    calls = []
    orig = scorer.score

    def counting(pairs, desc="scoring"):
        calls.append(len(pairs))
        return orig(pairs, desc)

    scorer.score = counting
    preds = rank_classify(scorer, examples)
    assert len(calls) == 1 and calls[0] == sum(len(example_labels(ex)) for ex in examples)
    for ex, pred in zip(examples, preds):
        labels = example_labels(ex)
        prompt = alpaca_prompt(ex) + "the correct answer is"
        nlls = [s.nll for s in orig([(prompt, lab) for lab in labels])]
        assert pred == labels[int(np.argmin(nlls))]


def test_rank_classify_tie_takes_first_label():
    class Flat:
        def score(self, pairs, desc=""):
            return [type("S", (), {"nll": 1.0})() for _ in pairs]

    ex = InstructionExample(
        "Q?\n\nAnswer format: true/false", "", "the correct answer is false", "false", "boolq"
    )
    assert rank_classify(Flat(), [ex, ex]) == ["true", "true"]
    assert rank_classify(Flat(), []) == []


def test_generate_answers_deterministic_and_batch_independent(tiny_lm, examples):
    pad_side = tiny_lm.tokenizer.padding_side
    a1 = generate_answers(tiny_lm, examples, max_new_tokens=6, batch_size=1)
    a4 = generate_answers(tiny_lm, examples, max_new_tokens=6, batch_size=4)
    again = generate_answers(tiny_lm, examples, max_new_tokens=6, batch_size=4)
    by_tokens = generate_answers(tiny_lm, examples, max_new_tokens=6)  # one batch of all
    assert all(isinstance(a, str) for a in a1) and len(a1) == len(examples)
    assert a1 == a4 == again == by_tokens
    assert tiny_lm.tokenizer.padding_side == pad_side
    assert not tiny_lm.model.training


@torch.no_grad()
def test_generate_answers_match_unpadded_greedy(tiny_lm, examples):
    """Reference: plain greedy argmax over full forward passes, one unpadded prompt at a time."""
    exs = [examples[0], examples[2]]  # different prompt lengths, so one is left-padded in the batch
    got = generate_answers(tiny_lm, exs, max_new_tokens=3, batch_size=2)
    for ex, answer in zip(exs, got):
        ids = torch.tensor(
            [encode(tiny_lm.tokenizer, alpaca_prompt(ex))], device=tiny_lm.model.device
        )
        new = []
        for _ in range(3):
            logits = tiny_lm.model(input_ids=ids).logits[0, -1]
            nxt = int(logits.argmax())
            new.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]], device=ids.device)], dim=1)
        assert answer == tiny_lm.tokenizer.decode(new, skip_special_tokens=True)


def test_downstream_accuracy_table(tiny_lm):
    summary, details = downstream_accuracy(
        tiny_lm, tasks=("boolq", "piqa"), n_per_task=3, max_new_tokens=4, details=True
    )
    assert isinstance(summary, pd.DataFrame)
    assert list(summary.columns) == ["task", "mode", "n", "accuracy"]
    assert list(zip(summary["task"], summary["mode"])) == [
        ("boolq", "rank"),
        ("piqa", "rank"),
        ("average", "rank"),
        ("boolq", "generate"),
        ("piqa", "generate"),
        ("average", "generate"),
    ]
    assert list(summary["n"]) == [3, 3, 6, 3, 3, 6]
    assert summary["accuracy"].between(0, 1).all()
    for mode in ("rank", "generate"):
        s = summary[summary["mode"] == mode].set_index("task")["accuracy"]
        assert s["average"] == pytest.approx((s["boolq"] + s["piqa"]) / 2)
    assert len(details) == 12
    rank = details[details["mode"] == "rank"]
    assert rank["prediction"].isin(["true", "false", "solution1", "solution2"]).all()
    gen = details[details["mode"] == "generate"]
    assert gen["generation"].map(lambda g: isinstance(g, str)).all()
    by_task = rank.groupby("task")["correct"].mean()
    assert summary.set_index(["task", "mode"]).loc[("piqa", "rank"), "accuracy"] == pytest.approx(
        by_task["piqa"]
    )
    only_rank = downstream_accuracy(tiny_lm, tasks=("boolq",), n_per_task=2, modes=("rank",))
    assert list(only_rank["task"]) == ["boolq", "average"]
    with pytest.raises(ValueError, match="mode"):
        downstream_accuracy(tiny_lm, tasks=("boolq",), n_per_task=2, modes=("beam",))


def test_beam_search_answers_go_through_the_same_extraction_and_one_beam_is_greedy(tiny_lm):
    from editdecay.evaluation.downstream import greedy_continuations

    prompts = ["The capital of France is", "Question: is water wet? Answer:"]
    greedy = greedy_continuations(tiny_lm, prompts, max_new_tokens=6)
    assert greedy_continuations(tiny_lm, prompts, max_new_tokens=6, num_beams=1) == greedy
    beams = greedy_continuations(tiny_lm, prompts, max_new_tokens=6, num_beams=4)
    assert len(beams) == 2 and all(isinstance(b, str) for b in beams)
    ds = downstream_accuracy(
        tiny_lm, tasks=("boolq",), n_per_task=2, modes=("generate",), max_new_tokens=4, num_beams=4
    )
    assert list(ds["task"]) == ["boolq", "average"]


def test_token_batches_cut_by_rows_times_longest():
    assert token_batches([3, 3, 4, 5, 9], 12) == [[0, 1, 2], [3], [4]]
    assert token_batches([2, 2, 2, 2], 8) == [[0, 1, 2, 3]]
    assert token_batches([20], 8) == [[0]]  # too long for the budget: alone
    assert token_batches([], 8) == []
    cut = token_batches(list(range(1, 40)), 64)
    assert [i for b in cut for i in b] == list(range(39))
    assert all(len(b) * (b[-1] + 1) <= 64 or len(b) == 1 for b in cut)
