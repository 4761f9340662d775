"""Malformed edit-request records, generated: each must give a skip reason or an error that names
the record (numbered from 1, with its line where blank lines make that differ) and the field, and
nothing but InvalidRecordError may escape load_requests (no KeyError, TypeError, AttributeError).

hypothesis is not installed here, so the cases come from an explicit table of fields and
mutations, each placed among good records by a random generator seeded with the case's name, plus a
seeded fuzz of random records.
"""

from __future__ import annotations

import copy
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from editdecay.data.formats import FORMAT_FIELDS, FORMATS
from editdecay.data.loaders import LoadResult, load_requests
from editdecay.data.requests import InvalidRecordError

GOOD: dict[str, dict] = {
    "plain": {
        "case_id": "p1",
        "subject": "Danielle Darrieux",
        "prompt": "The mother tongue of {} is",
        "target_new": "English",
        "target_true": "French",
        "paraphrases": ["Danielle Darrieux grew up speaking"],
        "neighbours": [{"prompt": "Michel Rocard is a native speaker of", "target": "French"}],
        "source": "user",
        "extra": {"note": 1},
    },
    "counterfact": {
        "case_id": 0,
        "prompt": "The mother tongue of Danielle Darrieux is",
        "target_new": "English",
        "subject": "Danielle Darrieux",
        "ground_truth": "French",
        "rephrase_prompt": "Where Danielle Darrieux is from, people speak the language of",
        "locality_prompt": "Michel Rocard is a native speaker of",
        "locality_ground_truth": "French",
    },
    "zsre": {
        "subject": "UniFirst",
        "src": "What is the product made by UniFirst?",
        "rephrase": "What will be the product of UniFirst?",
        "alt": "unmanned aircraft",
        "answers": ["uniform"],
        "loc": "nq question: john goodman's character in the big lebowski",
        "loc_ans": "Walter Sobchak",
    },
    "memit": {
        "case_id": 7,
        "requested_rewrite": {
            "prompt": "{} plays the sport of",
            "subject": "LeBron James",
            "target_new": {"str": "football"},
            "target_true": {"str": "basketball"},
        },
        "paraphrase_prompts": ["LeBron James is best known for playing"],
        "neighborhood_prompts": ["Michael Jordan plays the sport of"],
    },
}

DELETE = object()
MUTATIONS: dict[str, Any] = {
    "missing": DELETE,
    "empty": "",
    "blank": "   ",
    "list": ["English"],
    "number": 7,
    "null": None,
    "object": {},
}
ALL = tuple(MUTATIONS)
REQUIRED_STRING = ALL
REQUIRED_ID = ("missing", "empty", "blank", "list", "null", "object")  # a number is a fine id
OPTIONAL_ID = ("empty", "blank", "list", "object")
OPTIONAL_STRING = ("empty", "blank", "list", "number", "object")
OPTIONAL_STRINGS = ("empty", "blank", "number", "object")  # a list of strings is right
REQUIRED_OBJECT = ("missing", "empty", "blank", "list", "number", "null", "object")

# (format, path to the field, the mutations that must make the record invalid)
FIELD_TABLE: list[tuple[str, tuple, tuple[str, ...]]] = [
    ("plain", ("subject",), REQUIRED_STRING),
    ("plain", ("prompt",), REQUIRED_STRING),
    ("plain", ("target_new",), REQUIRED_STRING),
    ("plain", ("target_true",), OPTIONAL_STRING),
    ("plain", ("case_id",), OPTIONAL_ID),
    ("plain", ("source",), OPTIONAL_STRING),
    ("plain", ("extra",), ("empty", "blank", "list", "number")),
    ("plain", ("paraphrases",), OPTIONAL_STRINGS),
    ("plain", ("neighbours",), OPTIONAL_STRINGS + ("list",)),  # strings are not probe objects
    ("plain", ("neighbours", 0, "prompt"), REQUIRED_STRING),
    ("plain", ("neighbours", 0, "target"), REQUIRED_STRING),
    ("counterfact", ("case_id",), REQUIRED_ID),
    *[
        ("counterfact", (name,), REQUIRED_STRING)
        for name in FORMAT_FIELDS["counterfact"][""].read
        if name != "case_id"
    ],
    *[
        ("zsre", (name,), REQUIRED_STRING)
        for name in FORMAT_FIELDS["zsre"][""].read
        if name != "answers"
    ],
    ("zsre", ("answers",), ("missing", "empty", "blank", "number", "null", "object")),
    ("zsre", ("answers", 0), REQUIRED_STRING[1:]),
    ("memit", ("case_id",), OPTIONAL_ID),
    ("memit", ("requested_rewrite",), REQUIRED_OBJECT),
    ("memit", ("requested_rewrite", "prompt"), REQUIRED_STRING),
    ("memit", ("requested_rewrite", "subject"), REQUIRED_STRING),
    ("memit", ("requested_rewrite", "target_new"), REQUIRED_OBJECT),
    ("memit", ("requested_rewrite", "target_new", "str"), REQUIRED_STRING),
    # optional, but the good record's neighbour strings are scored against it
    ("memit", ("requested_rewrite", "target_true"), ALL),
    ("memit", ("requested_rewrite", "target_true", "str"), REQUIRED_STRING),
    ("memit", ("paraphrase_prompts",), OPTIONAL_STRINGS),
    ("memit", ("paraphrase_prompts", 0), REQUIRED_STRING[1:]),
    ("memit", ("neighborhood_prompts",), OPTIONAL_STRINGS),
    ("memit", ("neighborhood_prompts", 0), REQUIRED_STRING[1:]),  # {} lacks a prompt
]

# records that are wrong as a whole: (format, name, change, the names the reason must carry)
PROMPT_PATH = {
    "plain": ("prompt",),
    "counterfact": ("prompt",),
    "zsre": ("src",),
    "memit": ("requested_rewrite", "prompt"),
}
TRUE_TARGET = {
    "plain": (("target_new",), ("target_true",), ("target_new", "target_true")),
    "counterfact": (("target_new",), ("ground_truth",), ("target_new", "ground_truth")),
    "memit": (
        ("requested_rewrite", "target_new", "str"),
        ("requested_rewrite", "target_true", "str"),
        ("requested_rewrite.target_new.str", "requested_rewrite.target_true.str"),
    ),
}


def _field_name(path: tuple) -> str:
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else part)
    return name


def _get(record: Any, path: tuple) -> Any:
    for part in path:
        record = record[part]
    return record


def _set(record: dict, path: tuple, value: Any) -> dict:
    record = copy.deepcopy(record)
    parent = _get(record, path[:-1])
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return record


@dataclass(frozen=True)
class Case:
    fmt: str
    bad: Any
    names: tuple[str, ...]  # what the reason must mention

    def __str__(self) -> str:
        return f"{self.fmt}:{'/'.join(self.names)}"


def _field_cases() -> list[pytest.param]:
    cases = []
    for fmt, path, invalid in FIELD_TABLE:
        for mutation in invalid:
            bad = _set(GOOD[fmt], path, MUTATIONS[mutation])
            case = Case(fmt, bad, (_field_name(path),))
            cases.append(pytest.param(case, id=f"{fmt}-{_field_name(path)}-{mutation}"))
    return cases


def _record_cases() -> list[pytest.param]:
    cases = []
    for fmt, path in PROMPT_PATH.items():
        name = _field_name(path)
        changes = {
            "subject-not-in-prompt": "Nothing to see here",
            "two-placeholders": "{} and {} are",
            "stray-brace": "{} costs {price}",
            "placeholder-only": "{}",
        }
        for label, prompt in changes.items():
            case = Case(fmt, _set(GOOD[fmt], path, prompt), (name,))
            cases.append(pytest.param(case, id=f"{fmt}-{label}"))
    for fmt, (new, true, names) in TRUE_TARGET.items():
        bad = _set(GOOD[fmt], new, _get(GOOD[fmt], true))
        cases.append(pytest.param(Case(fmt, bad, names), id=f"{fmt}-target-equals-true"))
    for fmt in FORMATS:
        for value in ([1, 2], "a string", 3, None):
            case = Case(fmt, value, ("not a JSON object",))
            cases.append(pytest.param(case, id=f"{fmt}-not-an-object-{type(value).__name__}"))
    mquake = _set(GOOD["memit"], ("requested_rewrite",), [GOOD["memit"]["requested_rewrite"]])
    cases.append(pytest.param(Case("memit", mquake, ("requested_rewrite", "MQuAKE")), id="mquake"))
    return cases


@dataclass(frozen=True)
class Written:
    path: Path
    number: int  # the bad record's number, from 1
    line: int | None  # its line in a JSON Lines file
    total: int


def _write_among_good(tmp_path: Path, fmt: str, bad: Any, seed: str) -> Written:
    """The bad record among 0-3 good ones before and after, as JSON or JSON Lines (with blank
    lines), chosen by a generator seeded with the case's name."""
    rng = random.Random(seed)
    before, after = rng.randint(0, 3), rng.randint(0, 3)
    records = [GOOD[fmt]] * before + [bad] + [GOOD[fmt]] * after
    if rng.random() < 0.3:
        path = tmp_path / "requests.json"
        path.write_text(json.dumps(records, indent=rng.choice([None, 2])), encoding="utf-8")
        return Written(path, before + 1, None, len(records))
    lines, bad_line = [], None
    for number, record in enumerate(records, start=1):
        lines += [""] * rng.choice([0, 0, 1, 2])
        lines.append(json.dumps(record))
        bad_line = len(lines) if number == before + 1 else bad_line
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Written(path, before + 1, bad_line, len(records))


def _label(written: Written) -> str:
    if written.line is None or written.line == written.number:
        return f"record {written.number}"
    return f"record {written.number} (line {written.line}"


def _load(written: Written, fmt: str, **kw) -> LoadResult:
    # the first record decides the format; a bad first record may not show it, so name it then
    return load_requests(written.path, fmt=fmt if written.number == 1 else None, **kw)


def _assert_names(text: str, names: tuple[str, ...]) -> None:
    for name in names:
        assert name in text, (name, text)


@pytest.mark.parametrize("case", _field_cases() + _record_cases())
def test_a_bad_record_is_skipped_with_its_number_and_field(tmp_path, case, request):
    written = _write_among_good(tmp_path, case.fmt, case.bad, request.node.name)
    if written.total == 1:  # nothing else in the file: an error that gives the reason
        with pytest.raises(InvalidRecordError) as err:
            _load(written, case.fmt)
        message = str(err.value)
        assert "its only record was skipped" in message
        assert f"({_label(written)}" in message
        _assert_names(message, case.names)
    else:
        res = _load(written, case.fmt)
        assert len(res.requests) == written.total - 1
        [skip] = res.skipped
        assert (skip.index, skip.line) == (written.number, written.line)
        _assert_names(skip.reason, case.names)
    with pytest.raises(InvalidRecordError) as err:
        _load(written, case.fmt, strict=True)
    message = str(err.value)
    assert message.startswith(_label(written)), message
    _assert_names(message, case.names)


def test_the_zsre_exception_a_new_target_may_equal_the_answer(tmp_path):
    rec = dict(GOOD["zsre"], alt="uniform")
    path = tmp_path / "z.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    assert load_requests(path, strict=True).requests[0].target_new == "uniform"


@pytest.mark.parametrize("fmt", FORMATS)
def test_good_records_survive_every_allowed_mutation(tmp_path, fmt):
    """The mutations the table does not list as invalid leave a record valid."""
    for table_fmt, path, invalid in FIELD_TABLE:
        if table_fmt != fmt:
            continue
        for mutation in sorted(set(ALL) - set(invalid)):
            if mutation == "missing" and isinstance(path[-1], int):
                continue  # deleting a list's only item is a different record
            rec = _set(GOOD[fmt], path, MUTATIONS[mutation])
            file = tmp_path / "ok.jsonl"
            file.write_text(json.dumps(rec) + "\n")
            assert len(load_requests(file, fmt=fmt, strict=True)) == 1, (path, mutation)


# --------------------------------------------------------------------------- unknown fields


def _misspell(name: str, rng: random.Random) -> str:
    i = rng.randrange(len(name))
    return name[:i] + name[i + 1 :] if len(name) > 3 else name + "s"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_misspelt_field_is_named_with_its_count_and_the_nearest_name(tmp_path, fmt, caplog):
    rng = random.Random(f"misspelt:{fmt}")
    optional = [n for n in FORMAT_FIELDS[fmt][""].read if n in GOOD[fmt]]
    field = rng.choice(optional)
    typo = _misspell(field, rng)
    bad = dict(GOOD[fmt])
    bad[typo] = bad.pop(field)
    written = _write_among_good(tmp_path, fmt, bad, f"misspelt:{fmt}")
    with caplog.at_level(logging.WARNING, logger="editdecay"):
        try:
            res = _load(written, fmt)
            assert res.unknown_fields == {typo: 1}
        except InvalidRecordError as err:  # the only record, and the field was required
            assert "its only record was skipped" in str(err)
    warnings = [r.getMessage() for r in caplog.records if "is not a field" in r.getMessage()]
    assert warnings == [
        f"{written.path}: field '{typo}' in 1 record is not a field of the {fmt} format; "
        f"did you mean '{field}'?"
    ]
    with pytest.raises(InvalidRecordError) as err:
        _load(written, fmt, strict=True)
    assert str(err.value).startswith(_label(written))
    assert f"field '{typo}'" in str(err.value) and f"'{field}'" in str(err.value)


# --------------------------------------------------------------------------- whole-file errors


@pytest.mark.parametrize("seed", range(6))
def test_a_truncated_line_is_named_by_line_and_record(tmp_path, seed):
    rng = random.Random(f"truncated:{seed}")
    good = json.dumps(GOOD["plain"])
    records = [good] * rng.randint(0, 4)
    bad_number = len(records) + 1
    records.append(good[: rng.randint(1, len(good) - 1)])
    records += [good] * rng.randint(0, 2)
    lines, bad_line = [], None
    for number, text in enumerate(records, start=1):
        lines += [""] * rng.choice([0, 1])
        lines.append(text)
        bad_line = len(lines) if number == bad_number else bad_line
    path = tmp_path / "cut.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InvalidRecordError) as err:
        load_requests(path)
    where = f"line {bad_line}" + ("" if bad_line == bad_number else f" (record {bad_number})")
    assert str(err.value).startswith(f"{path}, {where}: malformed JSON ("), str(err.value)


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_text_that_is_not_utf8_names_the_line(tmp_path, suffix):
    good = json.dumps(GOOD["plain"])
    latin = json.dumps(dict(GOOD["plain"], subject="Gödel"), ensure_ascii=False)
    body = (good + "\n\n" + latin + "\n").encode("utf-8").replace("ö".encode(), b"\xf6")
    if suffix == ".json":
        body = b"[\n" + body.replace(b"\n\n", b",\n").rstrip(b"\n") + b"\n]"
    path = tmp_path / f"latin{suffix}"
    path.write_bytes(body)
    with pytest.raises(InvalidRecordError) as err:
        load_requests(path)
    assert str(err.value).startswith(f"{path}, line 3: not UTF-8 text (byte 0xf6"), str(err.value)


# --------------------------------------------------------------------------- fuzz

VALUES = [
    "",
    "  ",
    "x",
    "{}",
    "{} is",
    "The {} of",
    0,
    1.5,
    True,
    None,
    [],
    ["x"],
    [1],
    {},
    {"str": "y"},
]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    if depth < 2 and rng.random() < 0.15:
        return {"prompt": _random_value(rng, depth + 1), "target": _random_value(rng, depth + 1)}
    if depth < 2 and rng.random() < 0.1:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 2))]
    return rng.choice(VALUES)


def _random_record(rng: random.Random, fmt: str) -> Any:
    if rng.random() < 0.05:
        return _random_value(rng)
    record = copy.deepcopy(GOOD[fmt])
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(list(record) + ["paraphrase", "neighbors"])
        record[name] = _random_value(rng)
        if (
            fmt == "memit"
            and rng.random() < 0.5
            and isinstance(record.get("requested_rewrite"), dict)
        ):
            inner = rng.choice(["prompt", "subject", "target_new", "target_true", "relation"])
            record["requested_rewrite"][inner] = _random_value(rng)
    return record


@pytest.mark.parametrize("fmt", FORMATS)
def test_random_records_give_reasons_never_tracebacks(tmp_path, fmt):
    rng = random.Random(f"fuzz:{fmt}")
    for attempt in range(40):
        records = [_random_record(rng, fmt) for _ in range(rng.randint(1, 8))]
        path = tmp_path / f"fuzz{attempt}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        for strict in (False, True):
            try:
                res = load_requests(path, fmt=fmt, strict=strict)
            except InvalidRecordError as err:
                assert "record " in str(err), str(err)
                continue
            assert len(res.requests) + len(res.skipped) == len(records)
            for skip in res.skipped:
                assert 1 <= skip.index <= len(records) and skip.reason
                if isinstance(records[skip.index - 1], dict):
                    assert "field" in skip.reason or "subject" in skip.reason, skip.reason
