"""WikiText articles, the statistic/held-out split and token windows (no model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from editdecay.data.corpus import Article, split_articles, token_windows, wikitext_articles

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


class WhitespaceTokenizer:
    """Stand-in for an HF tokenizer: one id per whitespace-separated word, ids assigned on first sight."""

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.calls: list[dict] = []

    def __call__(self, text, add_special_tokens=True):
        self.calls.append({"add_special_tokens": add_special_tokens})
        ids = [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]
        if add_special_tokens:
            ids = [999_999] + ids
        return {"input_ids": ids}


def _text(n_words: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n_words))


# --------------------------------------------------------------------------- articles


def test_bundled_wikitext_articles():
    articles = wikitext_articles()
    # SOURCES.md says 64 articles, but only 62 lines are real top-level headings (" = Title = ");
    # the other two lines starting with " = " are table legends (" = Qualified for the next round ",
    # " = National record ") that do not end with " = ".
    assert len(articles) == 62
    assert articles[0].title == "Robert Boulter"
    assert articles[1].title == "Du Fu"
    assert articles[-1].title == "The Hustler ( film )"
    assert all(isinstance(a, Article) and a.title and a.text for a in articles)
    assert not any(a.title.startswith("=") or a.title.endswith("=") for a in articles)
    assert articles[0].text.startswith(
        "Robert Boulter is an English film , television and theatre actor ."
    )
    assert "\nCareer\n" in articles[0].text  # " = = Career = = " kept as a plain line
    body = "\n".join(a.text for a in articles)
    assert "= Qualified for the next round" in body and "= National record" in body
    assert "\r" not in body and "= =" not in body
    words = sum(len(a.text.split()) + len(a.title.split()) for a in articles)
    assert 230_000 < words < 241_211


def test_given_path_matches_bundled_copy():
    path = SHARED_DATA / "wikitext-2-raw" / "wiki.test.raw"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    assert wikitext_articles(path) == wikitext_articles()


def test_small_file_with_preamble_subsections_and_crlf(tmp_path):
    raw = (
        " stray preamble line \r\n"
        " = First = \r\n"
        " Para one . \r\n"
        "\r\n"
        " = = Early life = = \r\n"
        " = = = Deeper = = = \r\n"
        " Para two . \r\n"
        " = Second = \r\n"
        " x = y \r\n"
    )
    path = tmp_path / "tiny.raw"
    path.write_bytes(raw.encode("utf-8"))
    assert wikitext_articles(path) == [
        Article("", "stray preamble line"),
        Article("First", "Para one .\nEarly life\nDeeper\nPara two ."),
        Article("Second", "x = y"),
    ]


# --------------------------------------------------------------------------- split


def test_split_is_disjoint_covering_and_deterministic():
    articles = wikitext_articles()
    stat, held = split_articles(articles)
    assert (len(stat), len(held)) == (55, 7)
    assert held == [articles[i] for i in (7, 15, 23, 31, 39, 47, 55)]
    assert {a.title for a in stat}.isdisjoint({a.title for a in held})
    assert sorted(stat + held, key=articles.index) == articles
    assert split_articles(articles) == (stat, held)


def test_split_other_periods():
    articles = [Article(str(i), "t") for i in range(10)]
    stat, held = split_articles(articles, heldout_every=3)
    assert [a.title for a in held] == ["2", "5", "8"]
    assert [a.title for a in stat] == ["0", "1", "3", "4", "6", "7", "9"]
    assert split_articles([], 4) == ([], [])
    with pytest.raises(ValueError):
        split_articles(articles, heldout_every=1)


# --------------------------------------------------------------------------- windows


def test_windows_cut_per_text_and_drop_short_tails():
    tok = WhitespaceTokenizer()
    texts = [_text(70, "a"), _text(10, "b"), _text(40, "c")]
    windows = token_windows(tok, texts, window=32)
    assert [len(w) for w in windows] == [
        32,
        32,
        32,
    ]  # a: 32+32 (+6 dropped), b: 10 dropped, c: 32 (+8 dropped)
    assert all(c["add_special_tokens"] is False for c in tok.calls)
    a_ids = [tok.vocab[f"a{i}"] for i in range(70)]
    c_ids = [tok.vocab[f"c{i}"] for i in range(40)]
    assert windows == [a_ids[:32], a_ids[32:64], c_ids[:32]]  # no window spans two texts


def test_windows_respect_max_tokens_and_truncate_last():
    tok = WhitespaceTokenizer()
    texts = [_text(70, "a"), _text(40, "c")]
    assert [len(w) for w in token_windows(tok, texts, window=32, max_tokens=80)] == [32, 32, 16]
    assert [len(w) for w in token_windows(tok, texts, window=32, max_tokens=64)] == [32, 32]
    # a truncated remainder under 16 tokens is dropped rather than kept, so the total stays <= max_tokens
    assert [len(w) for w in token_windows(tok, texts, window=32, max_tokens=70)] == [32, 32]
    assert token_windows(tok, texts, window=32, max_tokens=0) == []
    # short windows allowed when the window itself is short
    assert [len(w) for w in token_windows(tok, [_text(10, "d")], window=4)] == [4, 4]
    with pytest.raises(ValueError):
        token_windows(tok, texts, window=0)


def test_windows_on_bundled_corpus():
    stat, held = split_articles(wikitext_articles())
    tok = WhitespaceTokenizer()
    windows = token_windows(tok, [a.text for a in stat], window=512, max_tokens=50_000)
    assert all(16 <= len(w) <= 512 for w in windows)
    assert sum(len(w) for w in windows) == 50_000
    assert (
        token_windows(WhitespaceTokenizer(), [a.text for a in stat], window=512, max_tokens=50_000)
        == windows
    )
    everything = token_windows(tok, [a.text for a in held], window=512)
    expected = sum(
        sum(min(512, n - s) for s in range(0, n, 512) if min(512, n - s) >= 16)
        for n in (len(a.text.split()) for a in held)
    )
    assert sum(len(w) for w in everything) == expected
