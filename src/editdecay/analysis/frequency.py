"""How frequent an edit's target tokens are in a corpus, by flip category (PAPER Table 6, claim 13).

The paper reads Table 6 as "erased targets are rare tokens, stable and emergent ones frequent"
without counting anything; here the counts come from the model's own tokenizer over the corpora a
study has at hand (the bundled WikiText text, the fine-tuning instruction data), and
`frequency_test` puts a rank test on "stable targets are more frequent than erased ones". No model:
only a tokenizer object (anything callable like a Hugging Face tokenizer).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from ..data.corpus import wikitext_articles
from ..data.instructions import InstructionExample, training_text
from ..data.tokenization import encode_continuation
from .rank_tests import GroupComparison, mann_whitney_u

log = logging.getLogger(__name__)

TOKENIZE_CHUNK = 256  # texts per tokenizer call


def token_frequencies(tokenizer, texts: Iterable[str]) -> Counter:
    """Count of every token id over `texts`, tokenised with no special tokens (no BOS/EOS)."""
    counts: Counter = Counter()
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == TOKENIZE_CHUNK:
            _count_chunk(tokenizer, chunk, counts)
            chunk = []
    if chunk:
        _count_chunk(tokenizer, chunk, counts)
    return counts


def _count_chunk(tokenizer, texts: list[str], counts: Counter) -> None:
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        counts.update(ids)


def corpus_counts(
    tokenizer,
    finetune_examples: Sequence[InstructionExample] = (),
    wikitext: bool = True,
) -> dict[str, Counter]:
    """Token counts of the bundled WikiText text ("wikitext") and of fine-tuning examples as trained
    on, prompt plus response ("finetune"; e.g. `data.instructions.load_finetune_data(...)`)."""
    corpora: dict[str, Counter] = {}
    if wikitext:
        corpora["wikitext"] = token_frequencies(tokenizer, (a.text for a in wikitext_articles()))
    if finetune_examples:
        corpora["finetune"] = token_frequencies(
            tokenizer, (training_text(ex) for ex in finetune_examples)
        )
    for name, counts in corpora.items():
        log.info("%s: %d tokens, %d distinct", name, counts.total(), len(counts))
    return corpora


def target_ids(tokenizer, target: str, prompt: str | None = None) -> tuple[int, ...]:
    """The target's token ids as scored after a prompt (pitfall P14: one leading space).

    With `prompt`, exactly `encode_continuation`'s split; without, the target tokenised alone
    after a space, which is encode_continuation's own fallback and, for byte-level BPE, the same ids
    whenever prompt and target do not merge at the boundary.
    """
    if prompt is not None:
        return encode_continuation(tokenizer, prompt, target).target_ids
    target = target.strip()
    if not target:
        raise ValueError("empty target")
    return tuple(tokenizer(" " + target, add_special_tokens=False)["input_ids"])


def target_frequency(tokenizer, counts: Counter, target: str, prompt: str | None = None) -> dict:
    """Frequency of a target's tokens in a corpus counted by `token_frequencies`.

    Keys: token_ids, token_counts (per token), mean_count, min_count (the rarest token), and
    log10_per_million = log10((mean_count + 1) / total · 10⁶), the mean count per million corpus
    tokens, add-one smoothed so that unseen targets stay finite (and rank lowest).
    """
    ids = target_ids(tokenizer, target, prompt)
    token_counts = tuple(int(counts.get(i, 0)) for i in ids)
    mean_count = sum(token_counts) / len(token_counts)
    total = max(counts.total(), 1)
    return {
        "token_ids": ids,
        "token_counts": token_counts,
        "mean_count": mean_count,
        "min_count": min(token_counts),
        "log10_per_million": math.log10((mean_count + 1) / total * 1e6),
    }


FREQUENCY_MEASURES = ("mean_count", "min_count", "log10_per_million")


def frequency_by_category(
    flips: pd.DataFrame, counts_by_corpus: Mapping[str, Counter], tokenizer
) -> pd.DataFrame:
    """The flips table (schema FLIPS: case_id, target_new, category, …) with its targets' frequencies.

    Adds n_target_tokens and, per corpus name c, the columns c_mean_count, c_min_count and
    c_log10_per_million (see `target_frequency`). Rows are kept as they are: a table with several
    configurations or steps repeats a case, so filter to one before testing.
    """
    missing = {"case_id", "target_new", "category"} - set(flips.columns)
    if missing:
        raise ValueError(f"flips table lacks columns {sorted(missing)}")
    table = flips.copy()
    targets = table["target_new"].astype(str)
    unique = targets.unique()
    ids = {t: target_ids(tokenizer, t) for t in unique}
    table["n_target_tokens"] = targets.map(lambda t: len(ids[t]))
    for corpus, counts in counts_by_corpus.items():
        freq = {t: target_frequency(tokenizer, counts, t) for t in unique}
        for measure in FREQUENCY_MEASURES:
            table[f"{corpus}_{measure}"] = targets.map({t: f[measure] for t, f in freq.items()})
    return table


def frequency_test(
    table: pd.DataFrame,
    corpus: str,
    measure: str = "log10_per_million",
    first: str = "stable",
    second: str = "erased",
) -> GroupComparison:
    """Rank test of a frequency column between two flip categories (claim 13: stable targets are
    more frequent than erased ones, i.e. effect > ½ with a small p). `table` is a
    `frequency_by_category` result."""
    column = f"{corpus}_{measure}"
    if column not in table.columns:
        raise ValueError(f"no column {column!r}; corpora and measures: {FREQUENCY_MEASURES}")
    if table["case_id"].duplicated().any():
        log.warning("the table repeats cases (several configurations or steps?); each row counts")
    category = table["category"].astype(str).str.lower()
    a = table.loc[category == first, column].to_numpy(dtype=float)
    b = table.loc[category == second, column].to_numpy(dtype=float)
    return GroupComparison(column, first, second, _mean(a), _mean(b), mann_whitney_u(a, b))


def _mean(values) -> float:
    return float(values.mean()) if len(values) else math.nan
