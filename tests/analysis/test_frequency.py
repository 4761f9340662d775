"""analysis/frequency.py: token counts by hand, target frequencies after a prompt, flip categories."""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd
import pytest

from editdecay.analysis.frequency import (
    corpus_counts,
    frequency_by_category,
    frequency_test,
    target_frequency,
    target_ids,
    token_frequencies,
)
from editdecay.data.instructions import InstructionExample
from editdecay.data.tokenization import encode_continuation

TEXTS = ["the cat and the dog and the bird", "the dog"]


@pytest.fixture(scope="module")
def tokenizer(tiny_lm):
    return tiny_lm.tokenizer


def _one_token(tokenizer, piece: str) -> int:
    ids = tokenizer.encode(piece, add_special_tokens=False)
    assert len(ids) == 1, f"{piece!r} is not one token"
    return ids[0]


def test_counts_match_a_hand_count(tokenizer):
    # by hand: "the" opens both texts (no space); then " cat", " and" ×2, " the" ×2, " dog" ×2, " bird"
    by_hand = {"the": 2, " cat": 1, " and": 2, " the": 2, " dog": 2, " bird": 1}
    expected = Counter({_one_token(tokenizer, piece): n for piece, n in by_hand.items()})
    counts = token_frequencies(tokenizer, TEXTS)
    assert counts == expected
    assert counts.total() == 10


class _BosTokenizer:
    """Wraps a tokenizer so that special tokens, when asked for, add a BOS id 0."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, texts, add_special_tokens=True):
        enc = self.inner(texts, add_special_tokens=False)
        if add_special_tokens:
            enc = {"input_ids": [[0, *ids] for ids in enc["input_ids"]]}
        return enc


def test_special_tokens_are_not_counted(tokenizer):
    assert token_frequencies(_BosTokenizer(tokenizer), TEXTS) == token_frequencies(tokenizer, TEXTS)


def test_counts_do_not_depend_on_chunking(tokenizer, monkeypatch):
    import editdecay.analysis.frequency as frequency

    whole = token_frequencies(tokenizer, TEXTS * 5)
    monkeypatch.setattr(frequency, "TOKENIZE_CHUNK", 3)
    assert token_frequencies(tokenizer, iter(TEXTS * 5)) == whole


def test_target_tokens_carry_the_leading_space(tokenizer):
    """Pitfall P14: a target is scored as " the", not "the"; the same ids as after a prompt."""
    counts = token_frequencies(tokenizer, TEXTS)
    freq = target_frequency(tokenizer, counts, "the")
    assert freq["token_ids"] == (_one_token(tokenizer, " the"),)
    assert freq["token_counts"] == (2,) and freq["mean_count"] == 2 and freq["min_count"] == 2
    assert freq["log10_per_million"] == pytest.approx(math.log10(3 / 10 * 1e6))
    prompt = "The animal is"
    assert (
        target_ids(tokenizer, "dog", prompt)
        == encode_continuation(tokenizer, prompt, "dog").target_ids
    )
    assert target_ids(tokenizer, "dog") == target_ids(tokenizer, "dog", prompt)


def test_multi_token_and_unseen_targets(tokenizer):
    counts = token_frequencies(tokenizer, TEXTS)
    pair = target_frequency(tokenizer, counts, "dog and")
    assert pair["token_counts"] == (2, 2)
    rare = target_frequency(tokenizer, counts, "Lecanorales")
    assert len(rare["token_ids"]) > 1 and rare["min_count"] == 0 and rare["mean_count"] == 0
    assert rare["log10_per_million"] == pytest.approx(math.log10(1 / 10 * 1e6))  # finite: add-one
    with pytest.raises(ValueError):
        target_frequency(tokenizer, counts, "  ")


def _flips():
    return pd.DataFrame(
        {
            "case_id": ["1", "2", "3", "4", "5", "6"],
            "target_new": ["the", "dog", "and", "Lecanorales", "Poshtdarband", "bird"],
            "category": ["stable", "stable", "emergent", "erased", "erased", "impossible"],
        }
    )


def test_frequency_by_category_and_the_rank_test(tokenizer):
    corpora = {"wiki": token_frequencies(tokenizer, TEXTS), "ft": Counter()}
    table = frequency_by_category(_flips(), corpora, tokenizer)
    assert len(table) == 6 and list(table["case_id"]) == ["1", "2", "3", "4", "5", "6"]
    assert list(table["wiki_mean_count"]) == [2, 2, 2, 0, 0, 1]
    assert (table["ft_mean_count"] == 0).all()
    assert table.loc[3, "n_target_tokens"] == len(target_ids(tokenizer, "Lecanorales"))
    result = frequency_test(table, "wiki")
    assert (result.first, result.second) == ("stable", "erased")
    assert result.test.effect == 1.0 and result.mean_first > result.mean_second
    assert frequency_test(table, "ft").test.p == 1.0  # an empty corpus tells nothing apart
    with pytest.raises(ValueError, match="no column"):
        frequency_test(table, "books")
    with pytest.raises(ValueError, match="lacks columns"):
        frequency_by_category(_flips().drop(columns="category"), corpora, tokenizer)


def test_corpus_counts_reads_wikitext_and_finetune_data(tokenizer):
    example = InstructionExample("Is the sky blue?", "", "the answer is true", "true", "boolq")
    corpora = corpus_counts(tokenizer, [example])
    assert set(corpora) == {"wikitext", "finetune"}
    assert corpora["wikitext"].total() > 100_000
    assert corpora["wikitext"][_one_token(tokenizer, " the")] > 1000
    assert corpora["finetune"][_one_token(tokenizer, " the")] >= 1
    assert set(corpus_counts(tokenizer, wikitext=False)) == set()
