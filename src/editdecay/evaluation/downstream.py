"""Downstream (DS) accuracy on the LLM-Adapters commonsense test sets, two ways.

``generate``
    The LLM-Adapters protocol: decoding after the Alpaca prompt (greedy, or beam search with
    ``num_beams`` beams: the paper's protocol is 4, PAPER §2.6), then the first label-shaped word of
    the answer (:func:`extract_answer`) is compared with the gold label. An answer with no label
    counts as wrong.
``rank``
    Rank classification: each label offered for the item (``instructions.example_labels``; normally
    the task's whole label set, narrowed by the item's ``Answer format:`` line for the few ARC items
    with 3 or 5 options) is scored teacher-forced as the continuation of
    ``alpaca_prompt(ex) + "the correct answer is"`` (the scorer inserts the space), and the label with
    the lowest mean per-token NLL wins (ties: the first label). This never fails to produce a label, so
    it is informative for small models that do not follow the answer format.

DS for a mode is the unweighted mean of the per-task accuracies (row ``task="average"``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from functools import cache

import pandas as pd
import torch

from ..data.instructions import (
    COMMONSENSE_TASKS,
    LABELS,
    InstructionExample,
    alpaca_prompt,
    example_labels,
    load_commonsense,
)
from ..data.tokenization import encode
from ..models.adapter import model_device
from ..progress import progress
from .scorer import Scorer

log = logging.getLogger(__name__)

MODES = ("rank", "generate")
ANSWER_PREFIX = "the correct answer is"


@cache
def _label_pattern(task: str) -> re.Pattern:
    labels = LABELS.get(task)
    if labels is None:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(COMMONSENSE_TASKS)}")
    alts = "|".join(re.escape(lab) for lab in sorted(labels, key=len, reverse=True))
    return re.compile(r"(?<![A-Za-z0-9])(" + alts + r")(?![A-Za-z0-9])", re.IGNORECASE)


def extract_answer(task: str, text: str) -> str | None:
    """The first label of ``task`` appearing as a whole word in ``text`` (case-insensitive), in canonical
    (lower-case) form, or None. ``"Answer2 is right"`` -> ``"answer2"``; ``"answer12"`` matches nothing."""
    m = _label_pattern(task).search(text)
    return m.group(1).lower() if m else None


def rank_prompt(ex: InstructionExample) -> str:
    return alpaca_prompt(ex) + ANSWER_PREFIX


def rank_classify(scorer: Scorer, examples: Sequence[InstructionExample]) -> list[str]:
    """The lowest-NLL label per example, from one batched ``scorer.score`` call over all (example, label)."""
    pairs: list[tuple[str, str]] = []
    spans: list[tuple[int, tuple[str, ...]]] = []
    for ex in examples:
        labels = example_labels(ex)
        spans.append((len(pairs), labels))
        prompt = rank_prompt(ex)
        pairs.extend((prompt, lab) for lab in labels)
    scores = scorer.score(pairs, desc="rank classification") if pairs else []
    out: list[str] = []
    for start, labels in spans:
        nlls = [scores[start + j].nll for j in range(len(labels))]
        out.append(
            labels[min(range(len(labels)), key=nlls.__getitem__)]
        )  # min keeps the first of ties
    return out


def generate_answers(
    lm,
    examples: Sequence[InstructionExample],
    max_new_tokens: int = 32,
    batch_size: int | None = None,
    show_progress: bool = False,
    num_beams: int = 1,
) -> list[str]:
    """Continuations of ``alpaca_prompt(ex)`` (decoded, special tokens dropped), one per example:
    greedy, or the best of a ``num_beams``-beam search."""
    return greedy_continuations(
        lm,
        [alpaca_prompt(ex) for ex in examples],
        max_new_tokens,
        batch_size,
        show_progress,
        num_beams=num_beams,
    )


GENERATE_BATCH_TOKENS = 4096  # prompt + new tokens × rows × beams per generation batch


def token_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Positions 0..n-1 of ascending `lengths` cut into consecutive batches whose rows × longest
    length stays within `max_tokens` (a row longer than that is a batch of its own)."""
    batches: list[list[int]] = []
    batch: list[int] = []
    for i, n in enumerate(lengths):
        if batch and (len(batch) + 1) * n > max_tokens:
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    return batches


@torch.no_grad()
def greedy_continuations(
    lm,
    prompts: Sequence[str],
    max_new_tokens: int = 32,
    batch_size: int | None = None,
    show_progress: bool = False,
    num_beams: int = 1,
    max_batch_tokens: int = GENERATE_BATCH_TOKENS,
) -> list[str]:
    """Greedy continuations of plain-text prompts (decoded, special tokens dropped), one per prompt;
    with ``num_beams`` > 1 the highest-scoring sequence of a beam search (no sampling) instead.

    Prompts are left-padded here by hand (the tokenizer's own padding settings are not used or
    changed), with an attention mask, so each answer is independent of its batch mates. Batches are
    cut from the prompts sorted by length by tokens: a batch holds as many prompts as keep
    rows × (longest prompt + ``max_new_tokens``) × beams within ``max_batch_tokens`` (and at most
    ``batch_size`` prompts when given); answers come back in input order.
    """
    tok = lm.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    device = model_device(lm.model)
    encoded = [encode(tok, p) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    answers: list[str] = [""] * len(encoded)
    batches = token_batches(
        [len(encoded[i]) + max_new_tokens for i in order], max_batch_tokens // max(num_beams, 1)
    )
    batches = [
        [order[i] for i in batch[j : j + (batch_size or len(batch))]]
        for batch in batches
        for j in range(0, len(batch), batch_size or len(batch))
    ]
    was_training = lm.model.training
    lm.model.eval()
    try:
        for batch in progress(batches, desc="generating", disable=not show_progress):
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                n = len(encoded[i])
                ids[r, width - n :] = torch.tensor(encoded[i], dtype=torch.long)
                mask[r, width - n :] = 1
            out = lm.model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=num_beams,
                num_return_sequences=1,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=pad_id,
                eos_token_id=tok.eos_token_id,
            )
            for r, i in enumerate(batch):
                answers[i] = tok.decode(out[r, width:].tolist(), skip_special_tokens=True)
    finally:
        lm.model.train(was_training)
    return answers


def downstream_accuracy(
    lm,
    tasks: Iterable[str] | None = None,
    n_per_task: int | None = 50,
    seed: int = 0,
    modes: Sequence[str] = MODES,
    details: bool = False,
    max_new_tokens: int = 32,
    batch_size: int | None = None,
    scorer: Scorer | None = None,
    num_beams: int = 1,
):
    """DS accuracy on the bundled commonsense test sets (a seeded sample of ``n_per_task`` per task;
    None = the whole test split). ``num_beams`` > 1 decodes mode ``generate`` by beam search.

    Returns a DataFrame with columns ``task, mode, n, accuracy`` (accuracy in [0, 1]): one row per
    (task, mode) in task order, then one ``task="average"`` row per mode (the unweighted mean over
    tasks, the paper's DS; its ``n`` is the total). With ``details=True`` returns ``(summary, per_example)``
    where ``per_example`` has one row per (example, mode): ``task, mode, index, answer, prediction,
    correct`` and, for mode ``generate``, the raw ``generation``; ``index`` is the position within the
    task's sample.
    """
    modes = tuple(modes)
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"unknown mode(s) {bad}; known: {', '.join(MODES)}")
    examples = load_commonsense("test", tasks=tasks, n_per_task=n_per_task, seed=seed)
    index_in_task: list[int] = []
    counts: dict[str, int] = {}
    for ex in examples:
        index_in_task.append(counts.get(ex.task, 0))
        counts[ex.task] = counts.get(ex.task, 0) + 1
    rows: list[dict] = []
    for mode in modes:
        if mode == "rank":
            sc = scorer or Scorer(lm.model, lm.tokenizer, lm.adapter)
            preds: list[str | None] = list(rank_classify(sc, examples))
            gens: list[str | None] = [None] * len(examples)
        else:
            gens = list(
                generate_answers(
                    lm,
                    examples,
                    max_new_tokens=max_new_tokens,
                    batch_size=batch_size,
                    num_beams=num_beams,
                )
            )
            preds = [extract_answer(ex.task, g) for ex, g in zip(examples, gens)]
        for ex, i, p, g in zip(examples, index_in_task, preds, gens):
            rows.append(
                {
                    "task": ex.task,
                    "mode": mode,
                    "index": i,
                    "answer": ex.answer,
                    "prediction": p,
                    "correct": p is not None and p == (ex.answer or "").lower(),
                    "generation": g,
                }
            )
    per_example = pd.DataFrame(
        rows, columns=["task", "mode", "index", "answer", "prediction", "correct", "generation"]
    )
    summary_rows: list[dict] = []
    task_order = list(counts)
    for mode in modes:
        sub = per_example[per_example["mode"] == mode]
        accs = []
        for task in task_order:
            t = sub[sub["task"] == task]
            acc = float(t["correct"].mean())
            accs.append(acc)
            summary_rows.append({"task": task, "mode": mode, "n": len(t), "accuracy": acc})
        summary_rows.append(
            {
                "task": "average",
                "mode": mode,
                "n": len(sub),
                "accuracy": float(sum(accs) / len(accs)) if accs else float("nan"),
            }
        )
        log.info(
            "downstream %s accuracy: %s",
            mode,
            ", ".join(
                f"{r['task']}={r['accuracy']:.3f}" for r in summary_rows if r["mode"] == mode
            ),
        )
    summary = pd.DataFrame(summary_rows, columns=["task", "mode", "n", "accuracy"])
    if details:
        return summary, per_example
    return summary
