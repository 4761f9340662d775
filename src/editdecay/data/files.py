"""Reading data files: text (gzip or not) and JSON / JSON Lines records.

:func:`read_records` reads ``.json``, ``.jsonl`` (also ``.ndjson``) and either one gzip-compressed
(``.json.gz``, ``.jsonl.gz``). A ``.json`` file holds one JSON list of records; a ``.jsonl`` file one
JSON value per line (blank lines are skipped). Any other name is JSON when its text starts with
``[`` and JSON Lines otherwise. A file that cannot be read as records raises
:class:`RecordFileError` naming the file and, for malformed JSON or a byte that is not UTF-8, the line
(counted from 1; in a JSON Lines file also the record, counted from 1, when blank lines make the two
differ); a file with no text at all is an error too.

:func:`iter_numbered_records` gives each record with its record number (from 1) and, for JSON Lines,
its line number, so that callers can name records the same way.
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editdecay.data.requests import InvalidRecordError

log = logging.getLogger(__name__)

JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")


class RecordFileError(InvalidRecordError):
    """A file cannot be read as records; the message names the file and, where it can, the line."""


@dataclass(frozen=True)
class NumberedRecord:
    """A record with its number in the file (from 1) and, in a JSON Lines file, its line (from 1)."""

    number: int
    line: int | None
    value: Any


def read_text(path: str | Path) -> str:
    """The file's text, decompressed when the name ends in ``.gz``; UTF-8 (a leading BOM is dropped).

    Line ends are universal, as in text mode: ``\\r\\n`` and a lone ``\\r`` read as ``\\n``.
    """
    path = Path(path)
    data = _read_bytes(path)
    try:
        return data.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        raise RecordFileError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{byte} at offset {exc.start}: {exc.reason});"
            " save the file as UTF-8"
        ) from exc


def _read_bytes(path: Path) -> bytes:
    if path.suffix.lower() != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise RecordFileError(f"{path}: not a readable gzip file ({exc})") from exc


def read_records(path: str | Path) -> list[Any]:
    """Every record of a JSON / JSON Lines file (gzip or not), in file order."""
    records = list(iter_records(path))
    log.debug("%s: %d records", path, len(records))
    return records


def iter_records(path: str | Path) -> Iterator[Any]:
    """The records of :func:`read_records` one by one; JSON Lines are decoded only as far as read."""
    return (record.value for record in iter_numbered_records(path))


def iter_numbered_records(path: str | Path) -> Iterator[NumberedRecord]:
    """The records of :func:`iter_records` with their record number and (JSON Lines) line number.

    The file is read, and an empty one refused, at the call; JSON Lines are decoded as iterated.
    """
    path = Path(path)
    text = read_text(path)
    if not text.strip():
        raise RecordFileError(f"{path}: the file is empty (no records)")
    if _is_json_lines(path, text):
        return _json_lines(path, text)
    return (
        NumberedRecord(number, None, value)
        for number, value in enumerate(_json_list(path, text), start=1)
    )


def _is_json_lines(path: Path, text: str) -> bool:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in JSON_LINES_SUFFIXES:
        return True
    if suffixes and suffixes[-1] == ".json":
        return False
    return not text.lstrip().startswith("[")


def _json_lines(path: Path, text: str) -> Iterator[NumberedRecord]:
    # split on "\n" only: str.splitlines would also break inside a JSON string holding U+2028 & co.
    number = 0
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        number += 1
        try:
            yield NumberedRecord(number, lineno, json.loads(line))
        except json.JSONDecodeError as exc:
            where = f"line {lineno}" if lineno == number else f"line {lineno} (record {number})"
            raise RecordFileError(
                f"{path}, {where}: malformed JSON ({_json_problem(exc)})"
            ) from exc


def _json_problem(exc: json.JSONDecodeError) -> str:
    """``"Expecting value at column 7"``; json's "Unterminated string starting at" ends in "at"."""
    joiner = " " if exc.msg.endswith(" at") else " at "
    return f"{exc.msg}{joiner}column {exc.colno}"


def _json_list(path: Path, text: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = (
            "; one record per line is a JSON Lines file: name it .jsonl"
            if exc.msg == "Extra data"
            else ""
        )
        raise RecordFileError(
            f"{path}, line {exc.lineno}: malformed JSON ({_json_problem(exc)}){hint}"
        ) from exc
    if not isinstance(data, list):
        kind = "null" if data is None else type(data).__name__
        raise RecordFileError(
            f"{path}: expected a JSON list of records (or JSONL), got a JSON {kind}"
        )
    return data


__all__ = [
    "JSON_LINES_SUFFIXES",
    "NumberedRecord",
    "RecordFileError",
    "iter_numbered_records",
    "iter_records",
    "read_records",
    "read_text",
]
