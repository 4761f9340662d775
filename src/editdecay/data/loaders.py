"""Turn dataset files into validated :class:`EditRequest` lists.

Bundled datasets (see ``bundled/README.md``) are loaded by name; anything else is a path to a user
file in one of four formats, detected per file from the keys of the first record (or forced with
``fmt``). The formats (``counterfact``, ``zsre``, ``memit``, ``plain``), their conventions (a zsRE edit goes
toward ``alt`` by default) and the validation of each record are described in
:mod:`editdecay.data.formats`. Bad records are skipped and reported in :attr:`LoadResult.skipped` and
one warning, or with ``strict=True`` the first one raises :class:`InvalidRecordError`. Files are read
by :mod:`editdecay.data.files`: malformed JSON, and an empty file, are always errors naming the file
(and the line).

``n``/``offset`` select valid records ``[offset, offset + n)`` in file order (the first N, as the
reference study does). Reading stops once they are collected, so ``skipped`` lists the invalid records
met up to that point (all of them when ``n`` is None).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editdecay.data.files import iter_records
from editdecay.data.formats import (
    CONVERTERS,
    FORMATS,
    MEMIT_DUMMY_TARGET,
    ZSRE_TARGETS,
    BadRecord,
    detect_format,
    type_name,
)
from editdecay.data.requests import EditRequest, InvalidRecordError

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
DEFAULT_DATASET = "counterfact"
_WARN_REASONS = 3


@dataclass(frozen=True)
class SkippedRecord:
    """An invalid record: its 0-based position in the file, its case_id if it had one, and why."""

    index: int
    case_id: str | None
    reason: str


@dataclass
class LoadResult:
    """Valid requests in file order, the invalid records met, and where they came from.

    ``source`` is the dataset name for bundled data, else the file path as given.
    """

    requests: list[EditRequest]
    skipped: list[SkippedRecord] = field(default_factory=list)
    source: str = ""

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


def _describe(index: int, case_id: Any, path: Path) -> str:
    if case_id is None or isinstance(case_id, (dict, list)):
        return f"record {index} in {path}"
    return f"record {index} (case_id {case_id}) in {path}"


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

    stop = None if n is None else offset + n
    requests: list[EditRequest] = []
    skipped: list[SkippedRecord] = []
    valid = 0
    options: dict[str, Any] = {"zsre_target": zsre_target, "default_id": _stem(path)}
    if case_prefix is not None:
        options["prefix"] = case_prefix
    convert: Callable[..., EditRequest] | None = CONVERTERS[fmt] if fmt else None

    if stop is not None and stop == offset:
        return LoadResult([], [], source or str(path))
    for index, rec in enumerate(iter_records(path)):
        if stop is not None and valid >= stop:
            break
        case_id = rec.get("case_id") if isinstance(rec, dict) else None
        try:
            if not isinstance(rec, dict):
                raise BadRecord(f"not a JSON object (got {type_name(rec)})")
            if convert is None:
                try:
                    detected = detect_format(rec)
                except ValueError as exc:
                    raise InvalidRecordError(f"{_describe(index, case_id, path)}: {exc}") from exc
                convert = CONVERTERS[detected]
                log.debug("%s: detected format %r", path, detected)
            request = convert(rec, index, **options)
        except BadRecord as exc:
            reason = str(exc)
            if strict:
                raise InvalidRecordError(f"{_describe(index, case_id, path)}: {reason}") from None
            bad_id = None if case_id is None or isinstance(case_id, (dict, list)) else str(case_id)
            skipped.append(SkippedRecord(index, bad_id, reason))
            continue
        if valid >= offset:
            requests.append(request)
        valid += 1

    if skipped:
        shown = "; ".join(f"record {s.index}: {s.reason}" for s in skipped[:_WARN_REASONS])
        more = (
            f"; ... and {len(skipped) - _WARN_REASONS} more" if len(skipped) > _WARN_REASONS else ""
        )
        log.warning("%s: skipped %d invalid record(s): %s%s", path, len(skipped), shown, more)
    if n is not None and len(requests) < n:
        log.info(
            "%s: asked for %d requests from offset %d, found %d", path, n, offset, len(requests)
        )
    return LoadResult(requests, skipped, source or str(path))


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
    "save_requests_jsonl",
]
