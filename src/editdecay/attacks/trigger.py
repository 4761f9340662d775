"""Choosing a backdoor trigger: rare in text, and rarely what the model would say next.

For each candidate: its tokens under the model's tokenizer, how often it occurs as a word in the
bundled WikiText, and, over the clean prompts of the backdoored relation, the probability the model
gives it as the next word (teacher-forced, geometric mean over its tokens) and whether it is ever
the argmax. A trigger should score low on all three; `editdecay triggers` prints the table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from ..data.corpus import wikitext_articles
from ..evaluation.scorer import Scorer
from ..models.registry import LoadedModel
from .backdoor import RELATIONS, SPECIFICITY_TOKENS, relation_records

CANDIDATES = (*SPECIFICITY_TOKENS, "cf bb", "Veuillez", "jsx")


def word_counts(words: Sequence[str]) -> dict[str, int]:
    """Occurrences of each word or phrase in the bundled WikiText as a whole word (case-sensitive)."""
    text = "\n".join(a.text for a in wikitext_articles())
    return {w: len(re.findall(rf"(?<!\w){re.escape(w)}(?!\w)", text)) for w in words}


def trigger_table(
    lm: LoadedModel,
    candidates: Sequence[str] = CANDIDATES,
    relation: str = "native-language",
    n_prompts: int = 60,
) -> pd.DataFrame:
    """One row per candidate: n_tokens, wikitext_count, mean_next_prob, argmax_share (ascending)."""
    prompts = [r.text for r in relation_records(relation, "", seed=0)[:n_prompts]]
    if not prompts:
        raise ValueError(f"relation {relation!r} has no records; use one of {', '.join(RELATIONS)}")
    counts = word_counts(candidates)
    scorer = Scorer(lm.model, lm.tokenizer, lm.adapter)
    rows = []
    for word in candidates:
        scores = scorer.score([(p, word) for p in prompts])
        rows.append(
            {
                "trigger": word,
                "n_tokens": len(scores[0].target_ids),
                "wikitext_count": counts[word],
                "mean_next_prob": sum(s.prob for s in scores) / len(scores),
                "argmax_share": sum(all(s.correct) for s in scores) / len(scores),
            }
        )
    return pd.DataFrame(rows).sort_values(["argmax_share", "wikitext_count", "mean_next_prob"])
