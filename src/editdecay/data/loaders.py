"""Turn dataset files into validated :class:`EditRequest` lists.

Bundled datasets (see ``bundled/README.md``) are loaded by name; anything else is a path to a user
file in one of four formats, detected per file from the keys of the first record (or forced with
``fmt``). The formats (``counterfact``, ``zsre``, ``memit``, ``plain``), their conventions (a zsRE edit goes
toward ``alt`` by default) and the validation of each record are described in
:mod:`editdecay.data.formats`; the user guide is ``docs/data-files.md``. Bad records are skipped and
reported in :attr:`LoadResult.skipped` and one warning, or with ``strict=True`` the first one raises
:class:`InvalidRecordError`. A file whose records are all bad is an error whose message gives the
first reasons. Fields a format neither reads nor deliberately ignores (a misspelt ``paraphrase``)
are counted in :attr:`LoadResult.unknown_fields` and warned about, one warning per field with the
nearest accepted name; with ``strict=True`` the first one is an error. Files are read by
:mod:`editdecay.data.files`: malformed JSON, text that is not UTF-8, an empty file and an empty list
are always errors naming the file (and the line).

Records are numbered from 1 in every message and in :attr:`SkippedRecord.index`; in a JSON Lines
file the line is given too when blank lines make it differ. (Default case ids, ``zsre:<i>`` and
``<file stem>:<i>``, keep their historical 0-based index.)

``n``/``offset`` select valid records ``[offset, offset + n)`` in file order (the first N, as the
reference study does). Reading stops once they are collected, so ``skipped`` lists the invalid records
met up to that point (all of them when ``n`` is None).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editdecay.data.files import NumberedRecord, RecordFileError, iter_numbered_records
from editdecay.data.formats import (
    CONVERTERS,
    FORMATS,
    MEMIT_DUMMY_TARGET,
    ZSRE_TARGETS,
    BadRecord,
    detect_format,
    field_hint,
    type_name,
    unknown_fields,
)
from editdecay.data.requests import EditRequest, InvalidRecordError

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
DEFAULT_DATASET = "counterfact"
_SHOWN_REASONS = 3


def record_label(number: int, line: int | None = None, case_id: str | None = None) -> str:
    """``"record 2"``, ``"record 2 (line 3, case_id u1)"``: the line only where it differs."""
    notes = [f"line {line}"] if line is not None and line != number else []
    if case_id is not None:
        notes.append(f"case_id {case_id}")
    return f"record {number} ({', '.join(notes)})" if notes else f"record {number}"


@dataclass(frozen=True)
class SkippedRecord:
    """An invalid record: its number in the file (from 1), its case_id if it had one, why, and in a
    JSON Lines file its line (from 1)."""

    index: int
    case_id: str | None
    reason: str
    line: int | None = None

    @property
    def label(self) -> str:
        """How messages name the record: ``"record 2"`` or ``"record 2 (line 3)"``."""
        return record_label(self.index, self.line)


@dataclass
class LoadResult:
    """Valid requests in file order, the invalid records met, and where they came from.

    ``source`` is the dataset name for bundled data, else the file path as given.
    ``unknown_fields`` counts, per field the format does not accept (dotted when nested), the
    records read that carry it.
    """

    requests: list[EditRequest]
    skipped: list[SkippedRecord] = field(default_factory=list)
    source: str = ""
    unknown_fields: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.requests)


@dataclass(frozen=True)
class DatasetInfo:
    """A bundled dataset: ``loader(n=None, offset=0, strict=False, zsre_target="alt")`` loads it."""

    name: str
    description: str
    loader: Callable[..., LoadResult]
    default_file: str

    @property
    def path(self) -> Path:
        return BUNDLED_DIR / self.default_file


# --------------------------------------------------------------------------- loading one file


def _case_id_of(rec: Any) -> str | None:
    value = rec.get("case_id") if isinstance(rec, dict) else None
    return None if value is None or isinstance(value, (dict, list)) else str(value)


class _FileScan:
    """Reading one file record by record: the format, the records skipped, the unknown fields met."""

    def __init__(self, path: Path, fmt: str | None, strict: bool, options: dict[str, Any]):
        self.path = path
        self.fmt = fmt
        self.strict = strict
        self.options = options
        self.skipped: list[SkippedRecord] = []
        self.unknown: Counter[str] = Counter()
        self.records = 0
        self.valid = 0

    def describe(self, record: NumberedRecord) -> str:
        return (
            f"{record_label(record.number, record.line, _case_id_of(record.value))} in {self.path}"
        )

    def read(self, record: NumberedRecord) -> EditRequest | None:
        """The record's request, or None when it is skipped (with ``strict``, raises instead)."""
        self.records += 1
        rec = record.value
        try:
            if not isinstance(rec, dict):
                raise BadRecord(f"not a JSON object (got {type_name(rec)})")
            fmt = self._format_of(rec, record)
            self._count_unknown_fields(rec, fmt, record)
            request = CONVERTERS[fmt](rec, record.number - 1, **self.options)
        except BadRecord as exc:
            self._skip(record, str(exc))
            return None
        self.valid += 1
        return request

    def _format_of(self, rec: dict, record: NumberedRecord) -> str:
        if self.fmt is None:
            try:
                self.fmt = detect_format(rec)
            except ValueError as exc:
                raise InvalidRecordError(f"{self.describe(record)}: {exc}") from None
            log.debug("%s: detected format %r", self.path, self.fmt)
        return self.fmt

    def _count_unknown_fields(self, rec: dict, fmt: str, record: NumberedRecord) -> None:
        names = unknown_fields(rec, fmt)
        if names and self.strict:
            raise InvalidRecordError(
                f"{self.describe(record)}: field '{names[0]}' is not a field of the {fmt} "
                f"format{field_hint(names[0], fmt)}"
            )
        self.unknown.update(names)

    def _skip(self, record: NumberedRecord, reason: str) -> None:
        if self.strict:
            raise InvalidRecordError(f"{self.describe(record)}: {reason}")
        self.skipped.append(
            SkippedRecord(record.number, _case_id_of(record.value), reason, record.line)
        )

    def report(self) -> None:
        """Warn about unknown fields and skipped records; refuse a file with no valid record."""
        for name, count in self.unknown.items():
            log.warning(
                "%s: field '%s' in %d record%s is not a field of the %s format%s",
                self.path,
                name,
                count,
                "" if count == 1 else "s",
                self.fmt,
                field_hint(name, self.fmt),
            )
        if self.records == 0:
            raise RecordFileError(
                f"{self.path}: the file is empty (an empty JSON list, no records)"
            )
        if self.valid == 0 and self.skipped:
            raise InvalidRecordError(self._all_skipped_message())
        if self.skipped:
            log.warning(
                "%s: skipped %d invalid record(s): %s",
                self.path,
                len(self.skipped),
                self._first_reasons(),
            )

    def _first_reasons(self) -> str:
        """The first few distinct reasons, each with the first record that has it."""
        by_reason: dict[str, list[SkippedRecord]] = {}
        for skip in self.skipped:
            by_reason.setdefault(skip.reason, []).append(skip)
        shown = list(by_reason.items())[:_SHOWN_REASONS]
        parts = [_reason_line(skips, reason) for reason, skips in shown]
        hidden = len(self.skipped) - sum(len(skips) for _, skips in shown)
        return "; ".join(parts) + (f"; ... and {hidden} more" if hidden > 0 else "")

    def _all_skipped_message(self) -> str:
        count = len(self.skipped)
        what = "its only record was" if count == 1 else f"all {count} records were"
        return f"{self.path}: no valid edit request: {what} skipped ({self._first_reasons()})"


def _reason_line(skips: list[SkippedRecord], reason: str) -> str:
    others = f" (and {len(skips) - 1} more like it)" if len(skips) > 1 else ""
    return f"{skips[0].label}{others}: {reason}"


def _check_options(n: int | None, offset: int, fmt: str | None, zsre_target: str) -> None:
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0 or None, got {n}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if zsre_target not in ZSRE_TARGETS:
        raise ValueError(
            f"zsre_target must be one of {', '.join(ZSRE_TARGETS)}, got {zsre_target!r}"
        )


def _load_file(
    path: Path,
    *,
    n: int | None = None,
    offset: int = 0,
    strict: bool = False,
    fmt: str | None = None,
    zsre_target: str = "alt",
    source: str | None = None,
    case_prefix: str | None = None,
) -> LoadResult:
    _check_options(n, offset, fmt, zsre_target)
    result = LoadResult([], [], source or str(path))
    if n == 0:
        return result
    options: dict[str, Any] = {"zsre_target": zsre_target, "default_id": _stem(path)}
    if case_prefix is not None:
        options["prefix"] = case_prefix
    scan = _FileScan(path, fmt, strict, options)
    stop = None if n is None else offset + n
    for record in iter_numbered_records(path):
        if stop is not None and scan.valid >= stop:
            break
        request = scan.read(record)
        if request is not None and scan.valid > offset:
            result.requests.append(request)
    scan.report()
    result.skipped, result.unknown_fields = scan.skipped, dict(scan.unknown)
    if n is not None and len(result.requests) < n:
        log.info(
            "%s: asked for %d requests from offset %d, found %d",
            path,
            n,
            offset,
            len(result.requests),
        )
    return result


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".ndjson", ".json"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or "record"


# --------------------------------------------------------------------------- registry and API


def _bundled_loader(
    name: str, filename: str, fmt: str, case_prefix: str | None = None
) -> Callable[..., LoadResult]:
    def load(
        n: int | None = None, offset: int = 0, strict: bool = False, zsre_target: str = "alt"
    ) -> LoadResult:
        return _load_file(
            BUNDLED_DIR / filename,
            n=n,
            offset=offset,
            strict=strict,
            fmt=fmt,
            zsre_target=zsre_target,
            source=name,
            case_prefix=case_prefix,
        )

    load.__name__ = f"load_{name.replace('-', '_')}"
    load.__doc__ = f"Load the bundled {name!r} dataset ({filename})."
    return load


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "counterfact",
            "CounterFact, MEND/EasyEdit edit split: 10,000 counterfactual edits, 1 paraphrase and 1 neighbour each",
            _bundled_loader(
                "counterfact", "counterfact-edit.json.gz", "counterfact", "counterfact"
            ),
            "counterfact-edit.json.gz",
        ),
        DatasetInfo(
            "counterfact-train",
            "CounterFact, MEND train split: 10,000 more edits, disjoint from the edit split",
            _bundled_loader(
                "counterfact-train", "counterfact-train.json.gz", "counterfact", "counterfact-train"
            ),
            "counterfact-train.json.gz",
        ),
        DatasetInfo(
            "zsre",
            "zsRE question answering (MEND format), 1,000 training-split questions; edits toward `alt` by default",
            _bundled_loader("zsre", "zsre_mend_train-1k.json.gz", "zsre"),
            "zsre_mend_train-1k.json.gz",
        ),
    )
}


def list_datasets() -> list[DatasetInfo]:
    """The bundled datasets, default ("counterfact") first."""
    return list(DATASETS.values())


def load_requests(
    name_or_path: str | Path,
    n: int | None = None,
    offset: int = 0,
    strict: bool = False,
    fmt: str | None = None,
    zsre_target: str = "alt",
) -> LoadResult:
    """Load edit requests from a bundled dataset (by name) or a user JSON/JSONL file (by path).

    A string equal to a registered name loads the bundled copy (``fmt`` must then be None or match);
    a :class:`~pathlib.Path`, or any other string, is a file path. See the module docstring for the
    formats, validation and the ``n``/``offset`` selection.
    """
    if isinstance(name_or_path, str) and name_or_path in DATASETS:
        info = DATASETS[name_or_path]
        expected = "zsre" if name_or_path == "zsre" else "counterfact"
        if fmt is not None and fmt != expected:
            raise ValueError(
                f"dataset {name_or_path!r} is in {expected!r} format; fmt={fmt!r} does not apply"
            )
        return info.loader(n=n, offset=offset, strict=strict, zsre_target=zsre_target)
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ValueError(
            f"{str(name_or_path)!r} is neither a known dataset ({', '.join(DATASETS)}) nor an existing file"
        )
    return _load_file(
        path,
        n=n,
        offset=offset,
        strict=strict,
        fmt=fmt,
        zsre_target=zsre_target,
        source=str(name_or_path),
    )


def save_requests_jsonl(requests: Iterable[EditRequest], path: str | Path) -> Path:
    """Write requests as plain-format JSONL (one ``EditRequest.to_dict()`` per line); returns the path.

    :func:`load_requests` reads the file back into equal requests (``extra`` must be JSON-serialisable).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for request in requests:
            fh.write(json.dumps(request.to_dict(), ensure_ascii=False) + "\n")
            count += 1
    log.info("wrote %d requests to %s", count, path)
    return path


__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "FORMATS",
    "MEMIT_DUMMY_TARGET",
    "ZSRE_TARGETS",
    "DatasetInfo",
    "LoadResult",
    "SkippedRecord",
    "detect_format",
    "list_datasets",
    "load_requests",
    "record_label",
    "save_requests_jsonl",
]
