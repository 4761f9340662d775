"""The four edit-request record formats: validating one record and turning it into an EditRequest.

The fields of each format (``counterfact``: the MEND/EasyEdit layout; ``zsre``: MEND's; ``memit``:
the ROME/MEMIT JSON layout; ``plain``: what :func:`~editdecay.data.loaders.save_requests_jsonl`
writes) are documented with an example each in docs/data-files.md. **zsRE convention:** by default
(``zsre_target="alt"``) the edit is toward ``alt``, a counterfactual answer, with ``answers[0]`` as
``target_true`` (EasyEdit); ``zsre_target="answer"`` edits toward ``answers[0]`` with no true
target (MEMIT's ``MENDQADataset``). The neighbour is ``Probe(loc + "?", loc_ans)``, MEMIT's
``"nq question: "`` prefix kept.

Every record is validated (object, required fields present and of the right type, non-empty
targets and subject, subject found in its prompt, at most one ``"{}"``, no other braces that would
break ``str.format``, a new target different from the true one except in zsRE, whose upstream file
has 17 such records). An optional field that is ``null`` counts as absent. Targets are stripped:
they are stored without a leading space. A record that fails raises :class:`BadRecord` with the
reason; :mod:`editdecay.data.loaders` names the record and skips it, or raises
:class:`~editdecay.data.requests.InvalidRecordError` with ``strict=True``.

:data:`FORMAT_FIELDS` lists, per format and per nested object, the fields a converter reads and the
fields upstream files carry that are deliberately not read; :func:`unknown_fields` finds the others
in a record (a misspelt ``paraphrase`` would otherwise silently disable the paraphrase metric) and
:func:`field_hint` suggests the nearest accepted name.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from editdecay.data.requests import EditRequest, Probe

log = logging.getLogger(__name__)

FORMATS = ("counterfact", "zsre", "plain", "memit")
ZSRE_TARGETS = ("alt", "answer")
MEMIT_DUMMY_TARGET = "<|endoftext|>"


class BadRecord(Exception):
    """One record failed validation; the message is the reason (the loader adds where it is)."""


# --------------------------------------------------------------------------- accepted fields


@dataclass(frozen=True)
class FieldSet:
    """The fields one JSON object of a format may carry: those the converter reads, and those
    upstream datasets carry that the converter deliberately ignores (they never warn)."""

    read: tuple[str, ...]
    ignored: tuple[str, ...] = ()

    @property
    def accepted(self) -> tuple[str, ...]:
        return self.read + self.ignored


_PROBE = FieldSet(("prompt", "target"))

# Per format: where an object sits ("" the record itself, "a.b" the object in field b of field a,
# "a[]" every object in the list a) -> its fields. Ignored fields: zsRE (MEND) carries the unedited
# model's prediction `pred` and a `cond` string; MEMIT's CounterFact carries `pararel_idx`,
# `attribute_prompts`, `generation_prompts` (fluency/consistency prompts this project does not
# score), a `relation_id` per rewrite and Wikidata `id`s beside each target's `str`.
FORMAT_FIELDS: dict[str, dict[str, FieldSet]] = {
    "counterfact": {
        "": FieldSet(
            (
                "case_id",
                "prompt",
                "subject",
                "target_new",
                "ground_truth",
                "rephrase_prompt",
                "locality_prompt",
                "locality_ground_truth",
            )
        ),
    },
    "zsre": {
        "": FieldSet(
            ("subject", "src", "rephrase", "alt", "answers", "loc", "loc_ans"), ("pred", "cond")
        ),
    },
    "memit": {
        "": FieldSet(
            ("case_id", "requested_rewrite", "paraphrase_prompts", "neighborhood_prompts"),
            ("pararel_idx", "attribute_prompts", "generation_prompts"),
        ),
        "requested_rewrite": FieldSet(
            ("prompt", "subject", "target_new", "target_true"), ("relation_id",)
        ),
        "requested_rewrite.target_new": FieldSet(("str",), ("id",)),
        "requested_rewrite.target_true": FieldSet(("str",), ("id",)),
        "neighborhood_prompts[]": _PROBE,
    },
    "plain": {
        "": FieldSet(
            (
                "case_id",
                "subject",
                "prompt",
                "target_new",
                "target_true",
                "paraphrases",
                "neighbours",
                "source",
                "extra",
            )
        ),
        "neighbours[]": _PROBE,
    },
}


def _objects_at(record: dict, where: str) -> Iterator[dict]:
    """The JSON objects at ``where`` (a FORMAT_FIELDS key) inside a record; none when absent."""
    objects = [record]
    for part in where.split(".") if where else ():
        key, many = part.removesuffix("[]"), part.endswith("[]")
        values = [obj.get(key) for obj in objects]
        if many:
            values = [item for value in values if isinstance(value, list) for item in value]
        objects = [value for value in values if isinstance(value, dict)]
    return iter(objects)


def unknown_fields(record: dict, fmt: str) -> list[str]:
    """The fields of ``record`` (nested ones dotted, list items as ``name[].field``) that ``fmt``
    neither reads nor deliberately ignores, in the order met, each once."""
    found: dict[str, None] = {}
    for where, fields in FORMAT_FIELDS[fmt].items():
        prefix = f"{where}." if where else ""
        for obj in _objects_at(record, where):
            for key in obj:
                if key not in fields.accepted:
                    found[prefix + str(key)] = None
    return list(found)


def field_hint(name: str, fmt: str) -> str:
    """``"; did you mean 'x'?"`` with the nearest accepted field of ``fmt`` at the same place, or a
    note that another format has this field, or ``""``."""
    where, _, key = name.rpartition(".")
    fields = FORMAT_FIELDS[fmt].get(where)
    if fields is not None:
        match = difflib.get_close_matches(key, fields.accepted, n=1)
        if match:
            return f"; did you mean '{where + '.' if where else ''}{match[0]}'?"
    others = [f for f in FORMATS if f != fmt and name in FORMAT_FIELDS[f][""].read]
    if others:
        return f" (it is a field of the {' and '.join(others)} format)"
    return ""


# --------------------------------------------------------------------------- field helpers


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _require(rec: dict, key: str, where: str = "") -> Any:
    if key not in rec:
        raise BadRecord(f"missing field '{where}{key}'")
    return rec[key]


def _string(rec: dict, key: str, where: str = "", *, required: bool = True) -> str | None:
    if not required and rec.get(key) is None:
        return None
    value = _require(rec, key, where)
    if not isinstance(value, str):
        raise BadRecord(f"field '{where}{key}' must be a string, got {type_name(value)}")
    return value


def _target(value: Any, name: str) -> str:
    """A non-empty target, stripped of surrounding whitespace."""
    if not isinstance(value, str):
        raise BadRecord(f"field '{name}' must be a string, got {type_name(value)}")
    value = value.strip()
    if not value:
        raise BadRecord(f"field '{name}' is empty")
    return value


def _subject(rec: dict, key: str = "subject", where: str = "") -> str:
    subject = _string(rec, key, where)
    if not subject.strip():
        raise BadRecord(f"field '{where}{key}' is empty")
    return subject


def _template(prompt: str, subject: str, name: str = "prompt") -> str:
    """A prompt with exactly one "{}": kept as is, or made by replacing the subject's first occurrence."""
    placeholders = prompt.count("{}")
    if placeholders > 1:
        raise BadRecord(
            f"field '{name}' has {placeholders} '{{}}' placeholders; exactly one is allowed"
        )
    if placeholders == 0:
        if subject not in prompt:
            raise BadRecord(f"subject {subject!r} not found in {name} {prompt!r}")
        prompt = prompt.replace(subject, "{}", 1)
    rest = prompt.replace("{}", "")
    if "{" in rest or "}" in rest:
        raise BadRecord(
            f"field '{name}' contains a brace other than the '{{}}' placeholder: {prompt!r}"
        )
    if not prompt.replace("{}", "").strip():
        raise BadRecord(f"field '{name}' has no text besides the subject")
    return prompt


def _prompt_text(rec: dict, key: str) -> str:
    """A required, non-empty prompt string (a paraphrase or a neighbour prompt), kept as written."""
    value = _string(rec, key)
    if not value.strip():
        raise BadRecord(f"field '{key}' is empty")
    return value


def _string_list(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise BadRecord(f"field '{name}' must be a list, got {type_name(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise BadRecord(f"field '{name}[{i}]' must be a string, got {type_name(item)}")
        if not item.strip():
            raise BadRecord(f"field '{name}[{i}]' is empty")
    return tuple(value)


def _probe_object(item: Any, name: str) -> Probe:
    if not isinstance(item, dict):
        raise BadRecord(
            f"field '{name}' must be an object with 'prompt' and 'target', got {type_name(item)}"
        )
    prompt = _string(item, "prompt", f"{name}.")
    if not prompt.strip():
        raise BadRecord(f"field '{name}.prompt' is empty")
    return Probe(prompt, _target(_require(item, "target", f"{name}."), f"{name}.target"))


def _optional(rec: dict, key: str, default: Any) -> Any:
    """An optional field's value; ``default`` when it is absent or null."""
    value = rec.get(key)
    return default if value is None else value


def _distinct_targets(target_new: str, target_true: str | None, true_name: str) -> None:
    if target_true is not None and target_new == target_true:
        raise BadRecord(
            f"field 'target_new' equals field '{true_name}' ({target_new!r}): "
            "the edit would not change anything"
        )


def _case_id_value(rec: dict, key: str = "case_id", *, required: bool = True) -> str | None:
    if key not in rec or rec[key] is None:
        if required:
            raise BadRecord(f"missing field '{key}'")
        return None
    value = rec[key]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadRecord(f"field '{key}' must be an integer or string, got {type_name(value)}")
    if isinstance(value, str) and not value.strip():
        raise BadRecord(f"field '{key}' is empty")
    return str(value)


# --------------------------------------------------------------------------- record converters


def _from_counterfact(
    rec: dict, index: int, *, prefix: str = "counterfact", **_: Any
) -> EditRequest:
    case_id = _case_id_value(rec)
    subject = _subject(rec)
    prompt = _template(_string(rec, "prompt"), subject)
    target_new = _target(_require(rec, "target_new"), "target_new")
    target_true = _target(_require(rec, "ground_truth"), "ground_truth")
    _distinct_targets(target_new, target_true, "ground_truth")
    paraphrases = (_prompt_text(rec, "rephrase_prompt"),)
    loc_prompt = _prompt_text(rec, "locality_prompt")
    loc_target = _target(_require(rec, "locality_ground_truth"), "locality_ground_truth")
    return EditRequest(
        case_id=f"{prefix}:{case_id}",
        prompt=prompt,
        subject=subject,
        target_new=target_new,
        target_true=target_true,
        paraphrases=paraphrases,
        neighbours=(Probe(loc_prompt, loc_target),),
        source="counterfact",
        extra={"upstream_case_id": rec["case_id"]},
    )


def _from_zsre(rec: dict, index: int, *, zsre_target: str = "alt", **_: Any) -> EditRequest:
    subject = _subject(rec)
    prompt = _template(_string(rec, "src"), subject, "src")
    answers = _require(rec, "answers")
    if not isinstance(answers, list):
        raise BadRecord(f"field 'answers' must be a list, got {type_name(answers)}")
    if not answers:
        raise BadRecord("field 'answers' is empty")
    answer = _target(answers[0], "answers[0]")
    if zsre_target == "alt":
        target_new, target_true = _target(_require(rec, "alt"), "alt"), answer
    else:
        target_new, target_true = answer, None
    paraphrases = (_prompt_text(rec, "rephrase"),)
    loc = _prompt_text(rec, "loc")
    loc_ans = _target(_require(rec, "loc_ans"), "loc_ans")
    return EditRequest(
        case_id=f"zsre:{index}",
        prompt=prompt,
        subject=subject,
        target_new=target_new,
        target_true=target_true,
        paraphrases=paraphrases,
        neighbours=(Probe(loc + "?", loc_ans),),
        source="zsre",
        extra={"answers": [a for a in answers if isinstance(a, str)], "zsre_target": zsre_target},
    )


def _memit_str(value: Any, name: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, dict):
        raise BadRecord(f"field '{name}' must be an object with 'str', got {type_name(value)}")
    if "str" not in value:
        raise BadRecord(f"missing field '{name}.str'")
    text = value["str"]
    if not required and isinstance(text, str) and text.strip() == MEMIT_DUMMY_TARGET:
        return None
    return _target(text, f"{name}.str")


def _from_memit(rec: dict, index: int, *, default_id: str = "", **_: Any) -> EditRequest:
    case_id = _case_id_value(rec, required=False)
    rw = _require(rec, "requested_rewrite")
    if isinstance(rw, list):
        raise BadRecord(
            "field 'requested_rewrite' is a list (a multi-hop MQuAKE case?); the memit format "
            "takes one rewrite object per record"
        )
    if not isinstance(rw, dict):
        raise BadRecord(f"field 'requested_rewrite' must be an object, got {type_name(rw)}")
    where = "requested_rewrite."
    subject = _subject(rw, "subject", where)
    prompt = _template(_string(rw, "prompt", where), subject, where + "prompt")
    target_new = _memit_str(_require(rw, "target_new", where), where + "target_new", required=True)
    target_true = _memit_str(rw.get("target_true"), where + "target_true", required=False)
    if target_true is not None and target_new == target_true:
        raise BadRecord(
            f"field '{where}target_new.str' equals field '{where}target_true.str' "
            f"({target_new!r}): the edit would not change anything"
        )
    paraphrases = _string_list(_optional(rec, "paraphrase_prompts", []), "paraphrase_prompts")
    raw_neighbours = _optional(rec, "neighborhood_prompts", [])
    if not isinstance(raw_neighbours, list):
        raise BadRecord(
            f"field 'neighborhood_prompts' must be a list, got {type_name(raw_neighbours)}"
        )
    neighbours = []
    for i, item in enumerate(raw_neighbours):
        name = f"neighborhood_prompts[{i}]"
        if isinstance(item, dict):
            neighbours.append(_probe_object(item, name))
        elif isinstance(item, str):
            if not item.strip():
                raise BadRecord(f"field '{name}' is empty")
            if target_true is None:
                raise BadRecord(
                    f"field '{name}' is a string, scored against "
                    "'requested_rewrite.target_true', which the record lacks"
                )
            neighbours.append(Probe(item, target_true))
        else:
            raise BadRecord(
                f"field '{name}' must be a string or an object with 'prompt' and 'target', "
                f"got {type_name(item)}"
            )
    return EditRequest(
        case_id=case_id if case_id is not None else f"{default_id}:{index}",
        prompt=prompt,
        subject=subject,
        target_new=target_new,
        target_true=target_true,
        paraphrases=paraphrases,
        neighbours=tuple(neighbours),
        source="memit",
    )


def _from_plain(rec: dict, index: int, *, default_id: str = "", **_: Any) -> EditRequest:
    case_id = _case_id_value(rec, required=False)
    subject = _subject(rec)
    prompt = _template(_string(rec, "prompt"), subject)
    target_new = _target(_require(rec, "target_new"), "target_new")
    target_true = rec.get("target_true")
    if target_true is not None:
        target_true = _target(target_true, "target_true")
    _distinct_targets(target_new, target_true, "target_true")
    paraphrases = _string_list(_optional(rec, "paraphrases", []), "paraphrases")
    raw_neighbours = _optional(rec, "neighbours", [])
    if not isinstance(raw_neighbours, list):
        raise BadRecord(f"field 'neighbours' must be a list, got {type_name(raw_neighbours)}")
    neighbours = tuple(
        _probe_object(item, f"neighbours[{i}]") for i, item in enumerate(raw_neighbours)
    )
    source = _optional(rec, "source", "user")
    if not isinstance(source, str):
        raise BadRecord(f"field 'source' must be a string, got {type_name(source)}")
    if not source.strip():
        raise BadRecord("field 'source' is empty")
    extra = _optional(rec, "extra", {})
    if not isinstance(extra, dict):
        raise BadRecord(f"field 'extra' must be an object, got {type_name(extra)}")
    return EditRequest(
        case_id=case_id if case_id is not None else f"{default_id}:{index}",
        prompt=prompt,
        subject=subject,
        target_new=target_new,
        target_true=target_true,
        paraphrases=paraphrases,
        neighbours=neighbours,
        source=source,
        extra=dict(extra),
    )


CONVERTERS: dict[str, Callable[..., EditRequest]] = {
    "counterfact": _from_counterfact,
    "zsre": _from_zsre,
    "memit": _from_memit,
    "plain": _from_plain,
}


def detect_format(record: dict) -> str:
    """Guess the record format from its keys; raise ValueError when no format fits."""
    keys = set(record)
    if "requested_rewrite" in keys:
        return "memit"
    if "src" in keys and ("alt" in keys or "answers" in keys or "loc" in keys):
        return "zsre"
    if keys & {"ground_truth", "rephrase_prompt", "locality_prompt", "locality_ground_truth"}:
        return "counterfact"
    if "prompt" in keys or "subject" in keys or "target_new" in keys:
        return "plain"
    raise ValueError(
        f"cannot tell the format of a record with keys {sorted(keys)}{_detection_hint(keys)}; "
        f"pass fmt= one of {', '.join(FORMATS)}"
    )


def _detection_hint(keys: set[str]) -> str:
    known = {name for fields in FORMAT_FIELDS.values() for name in fields[""].read}
    guesses = [
        f"'{key}' for '{match[0]}'"
        for key in sorted(keys - known)
        if (match := difflib.get_close_matches(key, sorted(known), n=1))
    ]
    return f" (misspelt? {', '.join(guesses)})" if guesses else ""


__all__ = [
    "CONVERTERS",
    "FORMATS",
    "FORMAT_FIELDS",
    "MEMIT_DUMMY_TARGET",
    "ZSRE_TARGETS",
    "BadRecord",
    "FieldSet",
    "detect_format",
    "field_hint",
    "type_name",
    "unknown_fields",
]
