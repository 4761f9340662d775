"""What a user is told about an edit-request file: unknown fields, empty files, all records bad,
and the user guide docs/data-files.md, whose examples must load."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from editdecay.data import DATA_FILES_GUIDE
from editdecay.data.files import RecordFileError
from editdecay.data.formats import FORMAT_FIELDS, FORMATS, detect_format, unknown_fields
from editdecay.data.loaders import DATASETS, load_requests
from editdecay.data.requests import InvalidRecordError

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / DATA_FILES_GUIDE
SHARED_DATA = ROOT.parent / "shared" / "data"

# MEMIT's counterfact.json record 0 as MEMIT writes it (lists shortened): the fields the loader
# ignores (pararel_idx, relation_id, the Wikidata ids, attribute/generation prompts) must not warn.
MEMIT_COUNTERFACT = {
    "case_id": 0,
    "pararel_idx": 2796,
    "requested_rewrite": {
        "prompt": "The mother tongue of {} is",
        "relation_id": "P103",
        "target_new": {"str": "English", "id": "Q1860"},
        "target_true": {"str": "French", "id": "Q150"},
        "subject": "Danielle Darrieux",
    },
    "paraphrase_prompts": ["Danielle Darrieux, a native speaker of"],
    "neighborhood_prompts": ["Michel Rocard is a native speaker of"],
    "attribute_prompts": ["J. R. R. Tolkien is a native speaker of"],
    "generation_prompts": ["Danielle Darrieux's mother tongue is"],
}


def _plain(i: int, **over) -> dict:
    rec = {"subject": f"City{i}", "prompt": "{} lies in", "target_new": "Peru"}
    rec.update(over)
    return rec


def _jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------- bundled data


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_bundled_datasets_have_no_unknown_fields(name, caplog):
    with caplog.at_level(logging.WARNING, logger="editdecay"):
        res = load_requests(name)
    assert res.unknown_fields == {}
    expected = [] if name != "zsre" else [w for w in _warnings(caplog) if "skipped 2" in w]
    assert _warnings(caplog) == expected  # zsRE: only the two empty `alt` records


def test_bundled_zsre_toward_answers_gives_no_warning_at_all(caplog):
    with caplog.at_level(logging.WARNING, logger="editdecay"):
        assert len(load_requests("zsre", zsre_target="answer")) == 1000
    assert _warnings(caplog) == []


@pytest.mark.parametrize(
    "rel", ["counterfact_mend/counterfact-edit.json", "zsre/zsre_mend_train-1k.json"]
)
def test_shared_copies_have_no_unknown_fields(rel, caplog):
    if not (SHARED_DATA / rel).is_file():
        pytest.skip("shared/data is not here")
    with caplog.at_level(logging.WARNING, logger="editdecay"):
        res = load_requests(SHARED_DATA / rel)
    assert res.unknown_fields == {}
    assert not [w for w in _warnings(caplog) if "is not a field" in w]


def test_memit_counterfact_record_as_memit_writes_it_gives_no_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="editdecay"):
        res = load_requests(_jsonl(tmp_path / "cf.jsonl", [MEMIT_COUNTERFACT]), strict=True)
    assert (len(res), res.unknown_fields, _warnings(caplog)) == (1, {}, [])


# --------------------------------------------------------------------------- unknown fields


def test_misspelt_fields_warn_once_each_with_count_and_nearest_name(tmp_path, caplog):
    records = [_plain(i, paraphrase=["x lies in"]) for i in range(12)]
    records[3]["neighbors"] = [{"prompt": "Lima lies in", "target": "Peru"}]
    path = _jsonl(tmp_path / "requests.jsonl", records)
    with caplog.at_level(logging.WARNING, logger="editdecay"):
        res = load_requests(path)
    assert len(res) == 12 and res.skipped == []
    assert res.unknown_fields == {"paraphrase": 12, "neighbors": 1}
    assert _warnings(caplog) == [
        f"{path}: field 'paraphrase' in 12 records is not a field of the plain format; "
        "did you mean 'paraphrases'?",
        f"{path}: field 'neighbors' in 1 record is not a field of the plain format; "
        "did you mean 'neighbours'?",
    ]
    assert all(r.paraphrases == () for r in res.requests)  # the misspelt field was not read


def test_memit_misspellings_suggest_memit_names(tmp_path, caplog):
    rec = dict(MEMIT_COUNTERFACT)
    rec["paraphrase"] = rec.pop("paraphrase_prompts")
    rec["neighbors"] = rec.pop("neighborhood_prompts")
    rec["requested_rewrite"] = dict(rec["requested_rewrite"], subjct="x")
    path = _jsonl(tmp_path / "requests.jsonl", [rec])
    with caplog.at_level(logging.WARNING, logger="editdecay"):
        load_requests(path)
    assert _warnings(caplog) == [
        f"{path}: field 'paraphrase' in 1 record is not a field of the memit format; "
        "did you mean 'paraphrase_prompts'?",
        f"{path}: field 'neighbors' in 1 record is not a field of the memit format; "
        "did you mean 'neighborhood_prompts'?",
        f"{path}: field 'requested_rewrite.subjct' in 1 record is not a field of the memit "
        "format; did you mean 'requested_rewrite.subject'?",
    ]


def test_list_item_fields_and_fields_of_other_formats(tmp_path, caplog):
    rec = _plain(0, neighbours=[{"prompt": "Lima lies in", "target": "Peru", "answr": "x"}])
    rec["rephrase_prompt_x"] = "?"
    rec["paraphrase_prompts"] = ["City0 is in"]
    assert unknown_fields(rec, "plain") == [
        "rephrase_prompt_x",
        "paraphrase_prompts",
        "neighbours[].answr",
    ]
    path = _jsonl(tmp_path / "r.jsonl", [rec])
    with caplog.at_level(logging.WARNING, logger="editdecay"):
        load_requests(path)
    text = "\n".join(_warnings(caplog))
    assert "field 'neighbours[].answr' in 1 record" in text
    assert "field 'paraphrase_prompts' in 1 record is not a field of the plain format" in text


def test_an_unknown_field_is_an_error_under_strict_naming_the_first_record(tmp_path):
    records = [_plain(0), _plain(1), _plain(2, neighbors=[]), _plain(3, neighbors=[])]
    path = _jsonl(tmp_path / "requests.jsonl", records)
    with pytest.raises(InvalidRecordError) as err:
        load_requests(path, strict=True)
    assert str(err.value) == (
        f"record 3 in {path}: field 'neighbors' is not a field of the plain format; "
        "did you mean 'neighbours'?"
    )


def test_every_format_accepts_its_own_fields():
    for fmt, places in FORMAT_FIELDS.items():
        assert "" in places and fmt in FORMATS
        record = {name: None for name in places[""].accepted}
        assert unknown_fields(record, fmt) == []


# --------------------------------------------------------------------------- empty, all bad


def test_an_empty_file_says_it_is_empty(tmp_path):
    empty = tmp_path / "requests.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(RecordFileError, match=r"requests\.jsonl: the file is empty"):
        load_requests(empty)
    listed = tmp_path / "requests.json"
    listed.write_text("[]")
    with pytest.raises(RecordFileError, match=r"requests\.json: the file is empty \(an empty JSON"):
        load_requests(listed)


def test_all_records_bad_is_an_error_listing_the_first_reasons(tmp_path):
    records = [
        {"prompt": "{} lies in", "target_new": "Peru"},
        _plain(1, target_new=""),
        _plain(2, prompt="Bergen lies in"),
        _plain(3, target_new=["Peru"]),
        _plain(4, target_true="Peru"),
    ]
    path = _jsonl(tmp_path / "requests.jsonl", records)
    with pytest.raises(InvalidRecordError) as err:
        load_requests(path)
    assert str(err.value) == (
        f"{path}: no valid edit request: all 5 records were skipped (record 1: missing field "
        "'subject'; record 2: field 'target_new' is empty; record 3: subject 'City2' not found in "
        "prompt 'Bergen lies in'; ... and 2 more)"
    )


def test_all_bad_with_one_reason_groups_the_records(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text("[1]\n\n[2]\n[3]\n")
    with pytest.raises(InvalidRecordError) as err:
        load_requests(path, n=2)
    assert str(err.value) == (
        f"{path}: no valid edit request: all 3 records were skipped "
        "(record 1 (and 2 more like it): not a JSON object (got list))"
    )
    _jsonl(path, [_plain(0, prompt="no subject here")])
    with pytest.raises(InvalidRecordError, match=r"its only record was skipped \(record 1: "):
        load_requests(path)


def test_some_records_bad_still_loads_the_good_ones(tmp_path, caplog):
    path = tmp_path / "mine.jsonl"
    lines = [json.dumps(_plain(0)), "", json.dumps({"prompt": "{} is"}), json.dumps(_plain(3))]
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="editdecay"):
        res = load_requests(path)
    assert len(res) == 2
    assert [(s.index, s.line) for s in res.skipped] == [(2, 3)]
    assert _warnings(caplog) == [
        f"{path}: skipped 1 invalid record(s): record 2 (line 3): missing field 'subject'"
    ]


def test_n_zero_and_an_offset_past_the_end_are_not_errors(tmp_path):
    path = _jsonl(tmp_path / "r.jsonl", [_plain(0), _plain(1)])
    assert load_requests(path, n=0).requests == []
    assert load_requests(path, offset=5).requests == []


# --------------------------------------------------------------------------- the user guide


def _guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def _json_examples() -> list[str]:
    return re.findall(r"^```json\n(.*?)^```", _guide(), flags=re.M | re.S)


def test_the_guide_constant_names_the_guide():
    assert DATA_FILES_GUIDE == "docs/data-files.md" and GUIDE.is_file()


def test_the_guide_has_an_example_of_every_format():
    formats = {detect_format(json.loads(block)) for block in _json_examples()}
    assert formats == set(FORMATS)


@pytest.mark.parametrize("number", range(len(_json_examples())))
def test_each_guide_example_loads_with_nothing_skipped(tmp_path, caplog, number):
    record = json.loads(_json_examples()[number])
    path = _jsonl(tmp_path / "example.jsonl", [record])
    with caplog.at_level(logging.WARNING, logger="editdecay"):
        res = load_requests(path, strict=True)
    assert (len(res), res.skipped, res.unknown_fields, _warnings(caplog)) == (1, [], {}, [])


def test_the_guide_names_every_field_format_and_dataset():
    guide = _guide()
    for fmt, places in FORMAT_FIELDS.items():
        assert f"### {fmt}" in guide
        for fields in places.values():
            for name in fields.accepted:
                assert f"`{name}`" in guide or f".{name}`" in guide, (fmt, name)
    for name in DATASETS:
        assert f"`{name}`" in guide
    assert "--strict" in guide


def test_readme_links_the_guide_once():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(f"({DATA_FILES_GUIDE})") == 1
