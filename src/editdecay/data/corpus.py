"""Plain text for second-moment statistics and held-out perplexity: WikiText-2 articles and token windows.

The bundled file is WikiText-2 raw, test split (see ``bundled/README.md``). An article starts at a
top-level heading, a line of the form ``" = Title = "`` (exactly one ``=`` on each side);
``" = = Section = = "`` and deeper headings stay inside the article. The bundled copy has 62 such
headings. (Two table-legend lines in it, ``" = Qualified for the next round "`` and
``" = National record "``, start like a heading but do not end like one, and are body text.)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editdecay.data.files import read_text

log = logging.getLogger(__name__)

BUNDLED_WIKITEXT = Path(__file__).resolve().parent / "bundled" / "wiki.test.raw.gz"
MIN_WINDOW_TOKENS = 16

_TOP_HEADING = re.compile(r"=\s+(?!=)(.*?)(?<!=)\s+=")
_SUB_HEADING = re.compile(r"(=\s+){2,}(.*?)(\s+=){2,}")


@dataclass(frozen=True)
class Article:
    """One article: its title and its body (one stripped line per paragraph; section headings as plain lines)."""

    title: str
    text: str


def _finish(title: str | None, body: list[str], out: list[Article]) -> None:
    text = "\n".join(body)
    if title is None and not text:
        return
    out.append(Article(title or "", text))


def wikitext_articles(path: Path | None = None) -> list[Article]:
    """Split a WikiText raw file (the bundled test split by default; ``.gz`` is read transparently) into articles.

    Lines are stripped; blank lines are dropped; a subsection heading such as ``" = = Career = = "``
    becomes the line ``"Career"``. Text before the first top-level heading, if any, becomes an
    article with an empty title.
    """
    path = BUNDLED_WIKITEXT if path is None else Path(path)
    articles: list[Article] = []
    title: str | None = None
    body: list[str] = []
    for raw in read_text(path).splitlines():
        line = raw.strip()
        if not line:
            continue
        top = _TOP_HEADING.fullmatch(line)
        if top and top.group(1).strip():
            _finish(title, body, articles)
            title, body = top.group(1).strip(), []
            continue
        sub = _SUB_HEADING.fullmatch(line)
        body.append(sub.group(2).strip() if sub else line)
    _finish(title, body, articles)
    log.debug("%s: %d articles", path, len(articles))
    return articles


def split_articles(
    articles: Sequence[Article], heldout_every: int = 8
) -> tuple[list[Article], list[Article]]:
    """Deterministic disjoint split into (statistic articles, held-out articles).

    Article ``i`` (0-based, in file order) is held out when ``i % heldout_every == heldout_every - 1``,
    i.e. every ``heldout_every``-th article; all others go to the statistic set. Every article lands in
    exactly one of the two lists, order preserved. With 62 articles and the default 8 that is 55 / 7.
    """
    if heldout_every < 2:
        raise ValueError(f"heldout_every must be >= 2, got {heldout_every}")
    statistic: list[Article] = []
    heldout: list[Article] = []
    for i, article in enumerate(articles):
        (heldout if i % heldout_every == heldout_every - 1 else statistic).append(article)
    return statistic, heldout


def _ids(tokenizer: Any, text: str) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    return [int(t) for t in ids]


def token_windows(
    tokenizer: Any,
    texts: list[str],
    window: int = 512,
    max_tokens: int | None = None,
    min_window: int = MIN_WINDOW_TOKENS,
) -> list[list[int]]:
    """Cut each text's tokens into consecutive windows of at most ``window`` tokens.

    Each text (an article) is tokenised on its own without special tokens, so no window spans two
    texts. Windows shorter than ``min_window`` tokens (16; capped at ``window``) are dropped (these
    are article tails). Collection stops once ``max_tokens`` tokens are gathered: the window that
    crosses the budget is truncated to fit (and dropped if that leaves fewer than ``min_window``), so
    the total never exceeds ``max_tokens``. The result is deterministic.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if max_tokens is not None and max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0 or None, got {max_tokens}")
    shortest = max(1, min(min_window, window))
    windows: list[list[int]] = []
    total = 0

    def room() -> int | None:
        return None if max_tokens is None else max_tokens - total

    for text in texts:
        left = room()
        if left is not None and left < shortest:
            break
        ids = _ids(tokenizer, text)
        for start in range(0, len(ids), window):
            chunk = ids[start : start + window]
            left = room()
            if left is not None:
                if left < shortest:
                    break
                chunk = chunk[:left]
            if len(chunk) < shortest:  # only an article's tail can be this short
                continue
            windows.append(chunk)
            total += len(chunk)
    log.debug("token_windows: %d windows, %d tokens from %d texts", len(windows), total, len(texts))
    return windows


__all__ = [
    "Article",
    "BUNDLED_WIKITEXT",
    "MIN_WINDOW_TOKENS",
    "split_articles",
    "token_windows",
    "wikitext_articles",
]
