"""Reading data files: text (gzip or not) and JSON / JSON Lines records.

:func:`read_records` reads ``.json``, ``.jsonl`` (also ``.ndjson``) and either one gzip-compressed
(``.json.gz``, ``.jsonl.gz``). A ``.json`` file holds one JSON list of records; a ``.jsonl`` file one
JSON value per line (blank lines are skipped). Any other name is JSON when its text starts with
``[`` and JSON Lines otherwise. A file that cannot be read as records raises
:class:`RecordFileError` naming the file and, for malformed JSON, the line (counted from 1); a file
with no text at all is an error too.
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from editdecay.data.requests import InvalidRecordError

log = logging.getLogger(__name__)

JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")


class RecordFileError(InvalidRecordError):
    """A file cannot be read as records; the message names the file and, where it can, the line."""


def read_text(path: str | Path) -> str:
    """The file's text, decompressed when the name ends in ``.gz``; UTF-8 (a leading BOM is dropped)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".gz":
            with gzip.open(path, "rt", encoding="utf-8-sig") as fh:
                return fh.read()
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RecordFileError(f"{path}: not UTF-8 text ({exc})") from exc
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise RecordFileError(f"{path}: not a readable gzip file ({exc})") from exc


def read_records(path: str | Path) -> list[Any]:
    """Every record of a JSON / JSON Lines file (gzip or not), in file order."""
    records = list(iter_records(path))
    log.debug("%s: %d records", path, len(records))
    return records


def iter_records(path: str | Path) -> Iterator[Any]:
    """The records of :func:`read_records` one by one; JSON Lines are decoded only as far as read."""
    path = Path(path)
    text = read_text(path)
    if not text.strip():
        raise RecordFileError(f"{path}: the file is empty (no records)")
    if _is_json_lines(path, text):
        return _json_lines(path, text)
    return iter(_json_list(path, text))


def _is_json_lines(path: Path, text: str) -> bool:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in JSON_LINES_SUFFIXES:
        return True
    if suffixes and suffixes[-1] == ".json":
        return False
    return not text.lstrip().startswith("[")


def _json_lines(path: Path, text: str) -> Iterator[Any]:
    # split on "\n" only: str.splitlines would also break inside a JSON string holding U+2028 & co.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordFileError(
                f"{path}, line {lineno}: malformed JSON ({exc.msg} at column {exc.colno})"
            ) from exc


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
            f"{path}, line {exc.lineno}: malformed JSON ({exc.msg} at column {exc.colno}){hint}"
        ) from exc
    if not isinstance(data, list):
        kind = "null" if data is None else type(data).__name__
        raise RecordFileError(
            f"{path}: expected a JSON list of records (or JSONL), got a JSON {kind}"
        )
    return data


__all__ = ["JSON_LINES_SUFFIXES", "RecordFileError", "iter_records", "read_records", "read_text"]
