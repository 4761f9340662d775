"""Loading bundled and user edit-request files into validated EditRequests."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from pathlib import Path

import pytest

from editdecay.data.loaders import (
    BUNDLED_DIR,
    DATASETS,
    DEFAULT_DATASET,
    DatasetInfo,
    LoadResult,
    SkippedRecord,
    detect_format,
    list_datasets,
    load_requests,
    save_requests_jsonl,
)
from editdecay.data.requests import EditRequest, InvalidRecordError, Probe

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# sha256 of the uncompressed upstream files (also in bundled/README.md and shared/data/SOURCES.md)
UPSTREAM_SHA256 = {
    "counterfact-edit.json.gz": (
        "counterfact_mend/counterfact-edit.json",
        "bfe31a7081932739406e282bb625d74222549c3386c15b1df3dfbc3978c69eec",
    ),
    "counterfact-train.json.gz": (
        "counterfact_mend/counterfact-train.json",
        "f7d443ffb0c5da6cbe816cdac45281ccb3f204b8a840f00d07a4aafa949bcd76",
    ),
    "zsre_mend_train-1k.json.gz": (
        "zsre/zsre_mend_train-1k.json",
        "e62596101d8ed551889c26c0d2a5277f92eaef3b14416d8eaee39b04a244ab60",
    ),
    "wiki.test.raw.gz": (
        "wikitext-2-raw/wiki.test.raw",
        "4f3e427e4aff23acff917a8a51aeae21bf12832256e26914c8fc250dcef4103c",
    ),
}


def _cf(case_id=0, **over):
    rec = {
        "case_id": case_id,
        "prompt": "The mother tongue of Danielle Darrieux is",
        "target_new": "English",
        "subject": "Danielle Darrieux",
        "ground_truth": "French",
        "rephrase_prompt": "Where Danielle Darrieux is from, people speak the language of",
        "locality_prompt": "Michel Rocard is a native speaker of",
        "locality_ground_truth": "French",
    }
    rec.update(over)
    return rec


def _write_json(path: Path, records) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- bundled files


@pytest.mark.parametrize("name", sorted(UPSTREAM_SHA256))
def test_bundled_file_is_reproducible_gzip_of_upstream(name):
    blob = (BUNDLED_DIR / name).read_bytes()
    assert blob[:2] == b"\x1f\x8b"
    assert blob[4:8] == b"\x00\x00\x00\x00"  # gzip mtime field is 0
    raw = gzip.decompress(blob)
    rel, sha = UPSTREAM_SHA256[name]
    assert hashlib.sha256(raw).hexdigest() == sha
    if SHARED_DATA.is_dir():
        assert raw == (SHARED_DATA / rel).read_bytes()


def test_bundled_readme_lists_every_file_with_its_checksum():
    readme = (BUNDLED_DIR / "README.md").read_text(encoding="utf-8")
    for name, (_, sha) in UPSTREAM_SHA256.items():
        assert name in readme and sha in readme
    assert "CC BY-SA 3.0" in readme and "MIT" in readme


# --------------------------------------------------------------------------- registry


def test_registry_lists_three_datasets_default_first():
    infos = list_datasets()
    assert [i.name for i in infos] == ["counterfact", "counterfact-train", "zsre"]
    assert DEFAULT_DATASET == "counterfact"
    assert all(
        isinstance(i, DatasetInfo) and i.path.is_file() and callable(i.loader) for i in infos
    )
    assert DATASETS["counterfact"].default_file == "counterfact-edit.json.gz"
    assert DATASETS["zsre"].default_file == "zsre_mend_train-1k.json.gz"


def test_unknown_name_lists_known_datasets():
    with pytest.raises(ValueError) as err:
        load_requests("no-such-dataset")
    for name in ("counterfact", "counterfact-train", "zsre"):
        assert name in str(err.value)


def test_bundled_name_rejects_conflicting_format():
    with pytest.raises(ValueError, match="format"):
        load_requests("counterfact", n=1, fmt="zsre")
    assert len(load_requests("counterfact", n=1, fmt="counterfact").requests) == 1


# --------------------------------------------------------------------------- CounterFact


def test_first_counterfact_record():
    res = load_requests("counterfact", n=1)
    assert isinstance(res, LoadResult) and res.source == "counterfact" and res.skipped == []
    assert res.requests == [
        EditRequest(
            case_id="counterfact:0",
            prompt="The mother tongue of {} is",
            subject="Danielle Darrieux",
            target_new="English",
            target_true="French",
            paraphrases=("Where Danielle Darrieux is from, people speak the language of",),
            neighbours=(Probe("Michel Rocard is a native speaker of", "French"),),
            source="counterfact",
        )
    ]
    assert res.requests[0].text == "The mother tongue of Danielle Darrieux is"


def test_counterfact_counts_all_valid():
    # Verified by running it: all 10,000 records of each split are valid (every subject occurs in its prompt).
    edit = load_requests("counterfact")
    train = load_requests("counterfact-train")
    assert (len(edit.requests), len(edit.skipped)) == (10_000, 0)
    assert (len(train.requests), len(train.skipped)) == (10_000, 0)
    assert train.requests[0].case_id == "counterfact-train:2"
    assert train.requests[0].prompt == "{}, the"
    ids_edit = {r.extra["upstream_case_id"] for r in edit.requests}
    ids_train = {r.extra["upstream_case_id"] for r in train.requests}
    assert len(ids_edit) == len(ids_train) == 10_000 and not ids_edit & ids_train
    for r in edit.requests:
        assert r.prompt.count("{}") == 1
        assert r.target_new == r.target_new.strip() and r.target_true == r.target_true.strip()
        assert r.neighbours[0].target == r.target_true


def test_n_and_offset_select_first_valid_records():
    full = load_requests("counterfact", n=20).requests
    assert load_requests("counterfact", n=5, offset=3).requests == full[3:8]
    assert load_requests("counterfact", n=0).requests == []
    assert [r.case_id for r in load_requests("counterfact", n=2, offset=9_999).requests] == [
        load_requests("counterfact").requests[-1].case_id
    ]
    assert load_requests("counterfact", offset=10_000).requests == []
    with pytest.raises(ValueError):
        load_requests("counterfact", n=-1)
    with pytest.raises(ValueError):
        load_requests("counterfact", offset=-1)


# --------------------------------------------------------------------------- zsRE


def test_zsre_alt_convention_counts_and_skips(caplog):
    with caplog.at_level(logging.WARNING, logger="editdecay.data.loaders"):
        res = load_requests("zsre")
    assert len(res.requests) == 998
    # record numbers count from 1 (this asserted the 0-based 534, 723 before)
    assert [(s.index, s.case_id) for s in res.skipped] == [(535, None), (724, None)]
    assert all("'alt'" in s.reason for s in res.skipped)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 2" in warnings[0].getMessage()
    first = res.requests[0]
    assert first == EditRequest(
        case_id="zsre:0",
        prompt="What is the product made by {}?",
        subject="UniFirst",
        target_new="unmanned aircraft",
        target_true="uniform",
        paraphrases=("What will be the product of UniFirst?",),
        neighbours=(
            Probe("nq question: john goodman's character in the big lebowski?", "Walter Sobchak"),
        ),
        source="zsre",
    )
    # case ids keep the file index, so they jump over the skipped records
    assert [r.case_id for r in res.requests[533:536]] == ["zsre:533", "zsre:535", "zsre:536"]
    # ten alts carry surrounding whitespace upstream; all targets come out stripped
    assert all(r.target_new == r.target_new.strip() for r in res.requests)


def test_zsre_answer_convention_keeps_all_records():
    res = load_requests("zsre", zsre_target="answer")
    assert (len(res.requests), res.skipped) == (1000, [])
    r = res.requests[534]
    assert (r.case_id, r.target_new, r.target_true) == ("zsre:534", "female", None)
    assert res.requests[0].target_new == "uniform"
    with pytest.raises(ValueError):
        load_requests("zsre", zsre_target="pred")


def test_zsre_strict_raises_at_first_empty_alt():
    with pytest.raises(
        InvalidRecordError,
        match=r"record 535 in .*zsre_mend_train-1k\.json\.gz: field 'alt' is empty",
    ):
        load_requests("zsre", strict=True)


def test_offset_counts_valid_records_only():
    res = load_requests("zsre", n=3, offset=533)
    assert [r.case_id for r in res.requests] == ["zsre:533", "zsre:535", "zsre:536"]
    assert [s.index for s in res.skipped] == [535]  # only the invalid records met before stopping


# --------------------------------------------------------------------------- user files


def _mixed_counterfact_records():
    return [
        _cf(100),  # record 1 good
        _cf(101, subject="Marie Curie"),  # 2 subject not in prompt
        _cf(102, target_new="   "),  # 3 empty target
        {k: v for k, v in _cf(103).items() if k != "ground_truth"},  # 4 missing field
        _cf(104, target_new=7),  # 5 wrong type
        ["not", "an", "object"],  # 6 not an object
        _cf(106, prompt="{} and {} speak"),  # 7 two placeholders
        _cf(107, rephrase_prompt=None),  # 8 paraphrase not a string
        _cf(108, target_new="  Dutch "),  # 9 good, target stripped
    ]


def test_user_json_mixed_records_skipped_with_reasons(tmp_path, caplog):
    path = _write_json(tmp_path / "mine.json", _mixed_counterfact_records())
    with caplog.at_level(logging.WARNING, logger="editdecay.data.loaders"):
        res = load_requests(path)
    assert res.source == str(path)
    assert [r.case_id for r in res.requests] == ["counterfact:100", "counterfact:108"]
    assert res.requests[1].target_new == "Dutch"
    assert res.skipped == [
        SkippedRecord(
            2,
            "101",
            "subject 'Marie Curie' not found in prompt 'The mother tongue of Danielle Darrieux is'",
        ),
        SkippedRecord(3, "102", "field 'target_new' is empty"),
        SkippedRecord(4, "103", "missing field 'ground_truth'"),
        SkippedRecord(5, "104", "field 'target_new' must be a string, got int"),
        SkippedRecord(6, None, "not a JSON object (got list)"),
        SkippedRecord(7, "106", "field 'prompt' has 2 '{}' placeholders; exactly one is allowed"),
        SkippedRecord(8, "107", "field 'rephrase_prompt' must be a string, got null"),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 7" in warnings[0] and "record 2: subject 'Marie Curie'" in warnings[0]
    assert "and 4 more" in warnings[0]


def test_user_json_strict_names_record_and_case_id(tmp_path):
    path = _write_json(tmp_path / "mine.json", _mixed_counterfact_records())
    with pytest.raises(InvalidRecordError) as err:
        load_requests(path, strict=True)
    assert str(err.value) == (
        f"record 2 (case_id 101) in {path}: subject 'Marie Curie' not found in prompt "
        "'The mother tongue of Danielle Darrieux is'"
    )


def test_user_jsonl_plain_mixed(tmp_path):
    lines = [
        json.dumps(
            {
                "subject": "Paris",
                "prompt": "{} is the capital of",
                "target_new": " Italy",
                "target_true": "France",
            }
        ),
        "",  # blank lines are not records
        json.dumps({"subject": "Rome", "prompt": "Rome is the capital of", "target_new": ""}),
        json.dumps({"subject": "", "prompt": "The capital of Spain is", "target_new": "Lisbon"}),
        json.dumps({"prompt": "Berlin is in", "target_new": "Asia"}),
        json.dumps(
            {
                "subject": "Oslo",
                "prompt": "Oslo lies in",
                "target_new": "Chile",
                "paraphrases": ["ok", 3],
            }
        ),
        json.dumps(
            {
                "subject": "Oslo",
                "prompt": "Oslo lies in",
                "target_new": "Chile",
                "neighbours": ["Bergen lies in"],
            }
        ),
        json.dumps(
            {
                "subject": "Kyiv",
                "prompt": "Kyiv is a city in",
                "target_new": "Peru",
                "case_id": "k1",
                "neighbours": [{"prompt": "Lviv is a city in", "target": " Ukraine "}],
            }
        ),
    ]
    path = _write_jsonl(tmp_path / "mine.jsonl", lines)
    res = load_requests(path)
    assert [(r.case_id, r.prompt, r.target_new, r.target_true) for r in res.requests] == [
        ("mine:0", "{} is the capital of", "Italy", "France"),
        ("k1", "{} is a city in", "Peru", None),
    ]
    assert res.requests[1].neighbours == (Probe("Lviv is a city in", "Ukraine"),)
    assert res.requests[0].source == "user"
    # records count from 1; the blank line 2 puts record n on line n + 1 from record 2 on
    assert [(s.index, s.line, s.reason) for s in res.skipped] == [
        (2, 3, "field 'target_new' is empty"),
        (3, 4, "field 'subject' is empty"),
        (4, 5, "missing field 'subject'"),
        (5, 6, "field 'paraphrases[1]' must be a string, got int"),
        (6, 7, "field 'neighbours[0]' must be an object with 'prompt' and 'target', got str"),
    ]
    with pytest.raises(
        InvalidRecordError,
        match=r"^record 2 \(line 3\) in .*mine\.jsonl: field 'target_new' is empty$",
    ):
        load_requests(path, strict=True)


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    good = json.dumps({"subject": "Paris", "prompt": "{} is in", "target_new": "Peru"})
    path = _write_jsonl(
        tmp_path / "broken.jsonl", [good, "", '{"subject": "Rome", "prompt": ', good]
    )
    with pytest.raises(
        InvalidRecordError, match=r"broken\.jsonl, line 3 \(record 2\): malformed JSON"
    ):
        load_requests(path)


def test_malformed_json_and_non_list_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[\n  {"subject": "x",\n  oops\n]', encoding="utf-8")
    with pytest.raises(InvalidRecordError, match=r"bad\.json, line 3: malformed JSON"):
        load_requests(bad)
    obj = _write_json(tmp_path / "obj.json", {"subject": "x"})
    with pytest.raises(InvalidRecordError, match="expected a JSON list"):
        load_requests(obj)


def test_unknown_keys_cannot_be_detected(tmp_path):
    path = _write_json(tmp_path / "odd.json", [{"question": "q", "answer": "a"}])
    with pytest.raises(InvalidRecordError, match="cannot tell the format"):
        load_requests(path)


def test_format_detection_and_forcing(tmp_path):
    assert detect_format(_cf()) == "counterfact"
    assert detect_format({"src": "q", "alt": "a", "subject": "s"}) == "zsre"
    assert detect_format({"requested_rewrite": {}}) == "memit"
    assert detect_format({"subject": "s", "prompt": "p", "target_new": "t"}) == "plain"
    # A plain record that happens to carry a CounterFact-looking key is detected as counterfact
    # (and fails for lack of case_id); forcing fmt="plain" reads it as intended.
    rec = {
        "subject": "Danielle Darrieux",
        "prompt": "Danielle Darrieux speaks",
        "target_new": "Latin",
        "ground_truth": "French",
    }
    path = _write_json(tmp_path / "x.json", [rec])
    with pytest.raises(InvalidRecordError, match=r"record 1: missing field 'case_id'"):
        load_requests(path)
    forced = load_requests(path, fmt="plain")
    assert [(r.prompt, r.target_new, r.target_true) for r in forced.requests] == [
        ("{} speaks", "Latin", None)
    ]
    # forcing the wrong format turns every record into a reasoned skip (here: all of them)
    with pytest.raises(
        InvalidRecordError,
        match=r"its only record was skipped \(record 1: missing field 'requested_rewrite'\)",
    ):
        load_requests(path, fmt="memit")
    with pytest.raises(ValueError, match="unknown format"):
        load_requests(path, fmt="csv")


def test_plain_placeholder_and_verbatim_subject(tmp_path):
    recs = [
        {
            "subject": "Danielle Darrieux",
            "prompt": "The mother tongue of {} is",
            "target_new": "English",
        },
        {
            "subject": "Danielle Darrieux",
            "prompt": "The mother tongue of Danielle Darrieux is",
            "target_new": "English",
        },
        # only the first occurrence becomes the placeholder
        {"subject": "Ali", "prompt": "Ali said that Ali lives in", "target_new": "Oslo"},
        # with a placeholder the subject need not appear
        {"subject": "Ali", "prompt": "{} said that he lives in", "target_new": "Oslo"},
        {"subject": "Ali", "prompt": "Ali has {braces} in", "target_new": "Oslo"},
    ]
    res = load_requests(_write_json(tmp_path / "p.json", recs))
    assert [r.prompt for r in res.requests] == [
        "The mother tongue of {} is",
        "The mother tongue of {} is",
        "{} said that Ali lives in",
        "{} said that he lives in",
    ]
    assert res.requests[0] == EditRequest(
        "p:0", "The mother tongue of {} is", "Danielle Darrieux", "English"
    )
    assert res.requests[0].prompt == res.requests[1].prompt
    assert res.requests[2].text == "Ali said that Ali lives in"
    assert [s.index for s in res.skipped] == [5] and "brace" in res.skipped[0].reason


def test_memit_format(tmp_path):
    recs = [
        {
            "case_id": 7,
            "requested_rewrite": {
                "prompt": "{} plays the sport of",
                "subject": "LeBron James",
                "target_new": {"str": "football"},
                "target_true": {"str": "basketball"},
            },
            "paraphrase_prompts": ["LeBron James is good at"],
            "neighborhood_prompts": ["Michael Jordan plays"],
        },
        # MEMIT's zsRE file: dummy true target, neighbour objects with their own answer
        {
            "case_id": 8,
            "requested_rewrite": {
                "prompt": "Who founded {}?",
                "subject": "Acme",
                "target_new": {"str": "Bob"},
                "target_true": {"str": "<|endoftext|>"},
            },
            "paraphrase_prompts": [],
            "neighborhood_prompts": [{"prompt": "nq question: who?", "target": "Ann"}],
        },
        {
            "case_id": 9,
            "requested_rewrite": {"prompt": "{} is in", "subject": "X", "target_new": "Y"},
        },
    ]
    res = load_requests(_write_json(tmp_path / "m.json", recs))
    assert res.requests == [
        EditRequest(
            "7",
            "{} plays the sport of",
            "LeBron James",
            "football",
            "basketball",
            ("LeBron James is good at",),
            (Probe("Michael Jordan plays", "basketball"),),
            "memit",
        ),
        EditRequest(
            "8",
            "Who founded {}?",
            "Acme",
            "Bob",
            None,
            (),
            (Probe("nq question: who?", "Ann"),),
            "memit",
        ),
    ]
    assert res.skipped == [
        SkippedRecord(
            3, "9", "field 'requested_rewrite.target_new' must be an object with 'str', got str"
        )
    ]


def test_user_zsre_file_detected(tmp_path):
    rec = {
        "subject": "UniFirst",
        "src": "What is made by UniFirst?",
        "rephrase": "UniFirst makes what?",
        "alt": "drones",
        "answers": ["uniforms"],
        "loc": "nq question: who is it",
        "loc_ans": "me",
    }
    res = load_requests(_write_json(tmp_path / "z.json", [rec, dict(rec, answers=[])]))
    assert [(r.case_id, r.prompt, r.target_new, r.target_true) for r in res.requests] == [
        ("zsre:0", "What is made by {}?", "drones", "uniforms")
    ]
    assert res.requests[0].neighbours == (Probe("nq question: who is it?", "me"),)
    assert [(s.index, s.reason) for s in res.skipped] == [(2, "field 'answers' is empty")]


def test_missing_file_is_value_error(tmp_path):
    with pytest.raises(ValueError, match="neither a known dataset"):
        load_requests(tmp_path / "nope.json")


def test_round_trip_save_then_load(tmp_path):
    originals = (
        load_requests("counterfact", n=20).requests
        + load_requests("zsre", n=5).requests
        + [
            EditRequest(
                "u1",
                "{} works for",
                "Ada",
                "IBM",
                None,
                ("Ada is employed by",),
                (),
                "user",
                {"note": 1},
            )
        ]
    )
    path = save_requests_jsonl(originals, tmp_path / "out" / "reqs.jsonl")
    assert len(path.read_text(encoding="utf-8").splitlines()) == len(originals)
    back = load_requests(path)
    assert back.skipped == [] and back.requests == originals
    assert [r.extra for r in back.requests] == [r.extra for r in originals]
    assert [r.source for r in back.requests][:1] + [back.requests[-1].source] == [
        "counterfact",
        "user",
    ]
    # saved files are plain-format, so forcing the format gives the same result
    assert load_requests(path, fmt="plain").requests == originals
