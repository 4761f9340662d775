"""The one JSON / JSON Lines / gzip reader every data loader uses."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from editdecay.data.files import RecordFileError, iter_records, read_records, read_text
from editdecay.data.instructions import load_instruction_file
from editdecay.data.loaders import load_requests
from editdecay.data.requests import InvalidRecordError

RECORDS = [{"a": 1, "text": "première"}, {"a": 2, "text": "line\u2028separator"}, [3]]


def _json(records) -> str:
    return json.dumps(records, ensure_ascii=False)


def _json_lines(records) -> str:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n"


def _write(path: Path, text: str) -> Path:
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.mark.parametrize("name", ["r.json", "r.json.gz"])
def test_json_list_in_each_form(tmp_path, name):
    assert read_records(_write(tmp_path / name, _json(RECORDS))) == RECORDS


@pytest.mark.parametrize("name", ["r.jsonl", "r.jsonl.gz", "r.ndjson"])
def test_json_lines_in_each_form(tmp_path, name):
    """One value per line, even a string holding U+2028 (which str.splitlines would split)."""
    assert read_records(_write(tmp_path / name, _json_lines(RECORDS))) == RECORDS


def test_other_names_are_told_apart_by_their_text(tmp_path):
    assert read_records(_write(tmp_path / "list.txt", "  " + _json(RECORDS))) == RECORDS
    assert read_records(_write(tmp_path / "lines", _json_lines(RECORDS))) == RECORDS


def test_blank_lines_windows_line_ends_and_a_bom_are_fine(tmp_path):
    text = "\ufeff" + _json_lines(RECORDS[:1]) + "\n  \n" + _json_lines(RECORDS[1:2])
    path = _write(tmp_path / "r.jsonl", text.replace("\n", "\r\n"))
    assert read_records(path) == RECORDS[:2]


@pytest.mark.parametrize("name", ["bad.jsonl", "bad.jsonl.gz"])
def test_a_corrupt_line_is_named_by_its_number_from_1(tmp_path, name):
    lines = [json.dumps({"a": 1}), "", json.dumps({"a": 2}), '{"a": ', json.dumps({"a": 4})]
    path = _write(tmp_path / name, "\n".join(lines))
    with pytest.raises(
        RecordFileError,
        match=rf"{re.escape(name)}, line 4 \(record 3\): malformed JSON \(.* at column 7\)",
    ):
        read_records(path)


def test_corrupt_json_names_the_line_from_1(tmp_path):
    path = _write(tmp_path / "bad.json", '[\n  {"a": 1},\n  {"a": oops}\n]')
    with pytest.raises(RecordFileError, match=r"bad\.json, line 3: malformed JSON"):
        read_records(path)


def test_json_lines_in_a_json_file_get_a_hint(tmp_path):
    path = _write(tmp_path / "lines.json", _json_lines(RECORDS))
    with pytest.raises(RecordFileError, match=r"lines\.json, line 2: .*name it \.jsonl"):
        read_records(path)


def test_a_json_file_must_hold_a_list(tmp_path):
    path = _write(tmp_path / "one.json", json.dumps({"a": 1}))
    with pytest.raises(RecordFileError, match=r"one\.json: expected a JSON list .*got a JSON dict"):
        read_records(path)


@pytest.mark.parametrize("name", ["empty.json", "empty.jsonl", "empty.json.gz", "blank.jsonl"])
def test_an_empty_file_is_an_error_that_says_so(tmp_path, name):
    path = _write(tmp_path / name, " \n\n" if name.startswith("blank") else "")
    with pytest.raises(RecordFileError, match=rf"{re.escape(name)}: the file is empty"):
        read_records(path)


def test_an_empty_list_is_no_records(tmp_path):
    assert read_records(_write(tmp_path / "none.json", "[]")) == []


def test_not_utf8_and_not_gzip_name_the_file(tmp_path):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"a": "é"}'.encode("latin-1"))
    with pytest.raises(RecordFileError, match=r"latin\.jsonl, line 1: not UTF-8 text"):
        read_records(latin)
    fake = tmp_path / "fake.json.gz"
    fake.write_bytes(b"[1, 2, 3]")
    with pytest.raises(RecordFileError, match=r"fake\.json\.gz: not a readable gzip file"):
        read_records(fake)


def test_json_lines_are_decoded_only_as_far_as_read(tmp_path):
    path = _write(tmp_path / "tail.jsonl", _json_lines(RECORDS[:2]) + "{broken\n")
    records = iter_records(path)
    assert [next(records), next(records)] == RECORDS[:2]
    with pytest.raises(RecordFileError, match="line 3"):
        next(records)


def test_read_text_reads_gzip_transparently(tmp_path):
    assert read_text(_write(tmp_path / "t.txt.gz", "a\nb\n")) == "a\nb\n"
    assert read_text(_write(tmp_path / "t.txt", "a\nb\n")) == "a\nb\n"


def test_errors_are_the_loaders_error_types(tmp_path):
    """Edit-request and instruction loaders raise the reader's error: an InvalidRecordError, a ValueError."""
    assert issubclass(RecordFileError, InvalidRecordError) and issubclass(
        RecordFileError, ValueError
    )
    empty = _write(tmp_path / "empty.jsonl", "")
    with pytest.raises(InvalidRecordError, match="the file is empty"):
        load_requests(empty)
    with pytest.raises(ValueError, match="the file is empty"):
        load_instruction_file(empty)
