"""Subject positions and prompt/target splitting with the real SmolLM2 tokenizer (byte-level BPE)."""

from __future__ import annotations

import pytest

from editdecay.data.tokenization import (
    Continuation,
    FilledPrompt,
    encode,
    encode_continuation,
    fill,
    subject_last_index,
)

CONTEXTS = ["{}", "Because of that. {}"]
CASES = [
    ("{} is a native speaker of", "Danielle Darrieux"),  # subject first
    ("The mother tongue of {} is", "Danielle Darrieux"),  # subject in the middle
    ("What is the product made by {}", "UniFirst"),  # subject last
    ("The official religion of {} is", "Edwin of Northumbria"),
]


@pytest.fixture(scope="module")
def tok(tiny_lm):
    return tiny_lm.tokenizer


# --------------------------------------------------------------------------- fill


def test_fill_without_context():
    f = fill("The mother tongue of {} is", "Danielle Darrieux")
    assert f == FilledPrompt("The mother tongue of Danielle Darrieux is", 21, 38)
    assert f.text[f.subject_start : f.subject_end] == "Danielle Darrieux"


def test_fill_with_context_puts_the_prompt_at_the_placeholder():
    f = fill("{} is a native speaker of", "Danielle Darrieux", "Because of that. {}")
    assert f.text == "Because of that. Danielle Darrieux is a native speaker of"
    assert f.text[f.subject_start : f.subject_end] == "Danielle Darrieux"
    assert f.subject_start == len("Because of that. ")


def test_fill_context_with_text_after_the_placeholder():
    f = fill("the capital of {}", "France", "Q: {}? A:")
    assert f.text == "Q: the capital of France? A:"
    assert f.text[f.subject_start : f.subject_end] == "France"


# --------------------------------------------------------------------------- subject_last_index


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("template,subject", CASES)
def test_subject_last_index_points_at_the_subjects_last_token(tok, template, subject, context):
    filled = fill(template, subject, context)
    ids = encode(tok, filled.text)
    i = subject_last_index(tok, filled)
    assert 0 <= i < len(ids)
    piece = tok.decode([ids[i]]).strip()
    assert piece and subject.endswith(piece), (piece, subject)
    # the text up to and including token i ends exactly where the subject ends ...
    assert tok.decode(ids[: i + 1], skip_special_tokens=True) == filled.text[: filled.subject_end]
    # ... and the token before it does not reach the subject's end
    assert len(tok.decode(ids[:i], skip_special_tokens=True)) < filled.subject_end
    # passing the ids gives the same answer
    assert subject_last_index(tok, filled, ids) == i


def test_context_shifts_the_index_by_the_context_length(tok):
    plain = fill("The mother tongue of {} is", "Danielle Darrieux")
    ctx = fill("The mother tongue of {} is", "Danielle Darrieux", "Because of that. {}")
    shift = len(encode(tok, ctx.text)) - len(encode(tok, plain.text))
    assert shift > 0
    assert subject_last_index(tok, ctx) == subject_last_index(tok, plain) + shift


def test_single_token_subject_at_the_start_is_index_zero(tok):
    filled = fill("{} is the capital of", "Paris")
    ids = encode(tok, filled.text)
    assert tok.decode([ids[0]]) == "Paris"  # one token, and no BOS in front
    assert subject_last_index(tok, filled) == 0


def test_subject_last_index_rejects_mismatched_ids(tok):
    filled = fill("The mother tongue of {} is", "Danielle Darrieux")
    ids = encode(tok, filled.text)
    with pytest.raises(ValueError, match="do not match"):
        subject_last_index(tok, filled, ids[:-1])


def test_subject_last_index_rejects_an_empty_subject(tok):
    with pytest.raises(ValueError, match="empty subject"):
        subject_last_index(tok, FilledPrompt("The mother tongue of  is", 21, 21))


# --------------------------------------------------------------------------- encode_continuation


@pytest.mark.parametrize(
    "prompt,target",
    [
        ("The mother tongue of Danielle Darrieux is", "English"),
        ("What is the twin city of Lyon? It is", "Manila"),
        ("The official religion of Edwin of Northumbria is", "Christianity"),
        ("Thomas Joannes Stieltjes was born in", "Den Haag"),
    ],
)
def test_encode_continuation_splits_at_the_prompt_boundary(tok, prompt, target):
    c = encode_continuation(tok, prompt, target)
    assert isinstance(c, Continuation)
    assert list(c.prompt_ids) == encode(tok, prompt)
    assert len(c.target_ids) >= 1
    assert tok.decode(list(c.target_ids)) == " " + target
    assert list(c.prompt_ids + c.target_ids) == encode(tok, f"{prompt} {target}")


def test_encode_continuation_strips_the_target(tok):
    prompt = "The mother tongue of Danielle Darrieux is"
    assert encode_continuation(tok, prompt, "  English \n") == encode_continuation(
        tok, prompt, "English"
    )


@pytest.mark.parametrize("target", ["", "   ", "\n"])
def test_encode_continuation_rejects_an_empty_target(tok, target):
    with pytest.raises(ValueError, match="empty target"):
        encode_continuation(tok, "The mother tongue of Danielle Darrieux is", target)


class _WordTokenizer:
    """Whitespace tokenizer that appends an end token to model inputs, so a prompt's ids are never a
    prefix of the prompt+target ids (forces encode_continuation's fallback path)."""

    END = 0

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def _id(self, word: str) -> int:
        return self.vocab.setdefault(word, len(self.vocab) + 1)

    def __call__(self, text: str, add_special_tokens: bool = True):
        ids = [self._id(w) for w in text.split()]
        return {"input_ids": ids + ([self.END] if add_special_tokens else [])}


def test_encode_continuation_falls_back_to_the_target_alone():
    t = _WordTokenizer()
    c = encode_continuation(t, "the capital of France is", "Paris Rome")
    assert list(c.prompt_ids) == t("the capital of France is")["input_ids"]
    assert list(c.target_ids) == [t.vocab["Paris"], t.vocab["Rome"]]
