"""Token-level bookkeeping shared by editors and scorers: prompt/target boundaries and subject positions.

Positions are computed per row from the token ids themselves, never from padding arithmetic
(pitfall P1), and BOS tokens are whatever the tokenizer adds to a plain prompt (pitfall P2).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Continuation:
    """`prompt_ids + target_ids` is the teacher-forced sequence; the target starts at len(prompt_ids)."""

    prompt_ids: tuple[int, ...]
    target_ids: tuple[int, ...]


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of a text used as a model input (special tokens as the tokenizer adds them)."""
    return list(tokenizer(text)["input_ids"])


def encode_continuation(tokenizer, prompt: str, target: str) -> Continuation:
    """Tokenise `prompt + " " + target` and split it at the prompt/target boundary (pitfall P14).

    The joint tokenisation is used when the prompt's own tokens are a prefix of it (always for
    byte-level BPE); otherwise the target is tokenised on its own with a leading space.
    """
    target = target.strip()
    if not target:
        raise ValueError(f"empty target for prompt {prompt!r}")
    p = encode(tokenizer, prompt)
    full = encode(tokenizer, f"{prompt} {target}")
    if full[: len(p)] == p and len(full) > len(p):
        return Continuation(tuple(p), tuple(full[len(p) :]))
    t = list(tokenizer(" " + target, add_special_tokens=False)["input_ids"])
    log.debug(
        "prompt %r and target %r merge across the boundary; tokenising the target alone",
        prompt,
        target,
    )
    return Continuation(tuple(p), tuple(t))


@dataclass(frozen=True)
class FilledPrompt:
    """A prompt text with the character span of its subject."""

    text: str
    subject_start: int
    subject_end: int


def fill(template: str, subject: str, context: str = "{}") -> FilledPrompt:
    """`context` with `template` (holding one "{}" for the subject) put at its "{}", subject filled in."""
    ci = context.index("{}")
    ti = template.index("{}")
    before = context[:ci] + template[:ti]
    text = before + subject + template[ti + 2 :] + context[ci + 2 :]
    return FilledPrompt(text, len(before), len(before) + len(subject))


def subject_last_index(tokenizer, filled: FilledPrompt, ids: list[int] | None = None) -> int:
    """Index of the token holding the subject's last character in `encode(filled.text)`."""
    if not filled.subject_end > filled.subject_start:
        raise ValueError(f"empty subject in prompt {filled.text!r}")
    enc = tokenizer(filled.text, return_offsets_mapping=True)
    if ids is not None and list(enc["input_ids"]) != list(ids):
        raise ValueError("ids do not match the tokenisation of the prompt")
    last_char = filled.subject_end - 1
    for i, (a, b) in enumerate(enc["offset_mapping"]):
        if a <= last_char < b:
            return i
    raise ValueError(f"no token covers the subject's last character in {filled.text!r}")


def pad_right(
    seqs: Sequence[Sequence[int]], pad_id: int, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask, (len(seqs), width) each; width defaults to the longest row."""
    width = width or max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[r, : len(s)] = 1
    return ids, mask
