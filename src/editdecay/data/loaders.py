"""Turn dataset files into validated :class:`EditRequest` lists.

Bundled datasets (see ``bundled/README.md``) are loaded by name; anything else is a path to a user
file in one of four formats, detected per file from the keys of the first record (or forced with
``fmt``):

``counterfact``
    The MEND/EasyEdit layout: ``case_id``, ``prompt`` (subject filled in), ``subject``,
    ``target_new``, ``ground_truth``, ``rephrase_prompt``, ``locality_prompt``,
    ``locality_ground_truth``. The template is the prompt with the first occurrence of the subject
    replaced by ``"{}"``; the rephrase is the one paraphrase and the locality prompt the one
    neighbour. ``case_id`` becomes ``"counterfact:<id>"`` (``"counterfact-train:<id>"`` for the
    bundled train split).

``zsre``
    The MEND layout: ``subject``, ``src``, ``rephrase``, ``alt``, ``answers``, ``loc``,
    ``loc_ans``. **Chosen convention:** by default (``zsre_target="alt"``) the edit is toward
    ``alt``, a counterfactual answer, so that a successful edit changes what the model says, and
    ``target_true`` is ``answers[0]`` (the EasyEdit convention). A record with an empty ``alt`` is
    invalid under this convention. With ``zsre_target="answer"`` the edit is toward ``answers[0]``
    and ``target_true`` is ``None`` (the MEMIT ``MENDQADataset`` convention, which has no true
    target). The neighbour is ``Probe(loc + "?", loc_ans)``, the ``"nq question: "`` prefix kept
    exactly as MEMIT does. ``case_id`` is ``"zsre:<record index>"``.

``memit``
    The ROME/MEMIT JSON layout: ``case_id``, ``requested_rewrite`` {``prompt`` with ``"{}"``,
    ``subject``, ``target_new`` {``str``}, ``target_true`` {``str``}}, ``paraphrase_prompts``,
    ``neighborhood_prompts``. Neighbour strings are scored against ``target_true``; neighbour
    objects ``{"prompt", "target"}`` (MEMIT's zsRE file) keep their own target. A missing
    ``target_true`` or MEMIT's dummy ``"<|endoftext|>"`` means "no true target" (``None``).

``plain``
    ``subject``, ``prompt``, ``target_new`` and optionally ``target_true``, ``paraphrases``
    (strings), ``neighbours`` (``{"prompt", "target"}`` objects), ``case_id``, ``source``,
    ``extra``. The prompt holds either one ``"{}"`` or the subject verbatim. This is what
    :func:`save_requests_jsonl` writes, so saved requests load back unchanged.

Every record is validated (object, required fields present and of the right type, non-empty
targets and subject, subject found in its prompt, at most one ``"{}"``, no other braces that would
break ``str.format``). Targets are stripped: they are stored without a leading space. Bad records are
skipped and reported in :attr:`LoadResult.skipped` and one warning, or with ``strict=True`` the first
one raises :class:`InvalidRecordError`. Malformed JSON is always an error naming the file and line.

``n``/``offset`` select valid records ``[offset, offset + n)`` in file order (the first N, as the
reference study does). Reading stops once they are collected, so ``skipped`` lists the invalid records
met up to that point (all of them when ``n`` is None).
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editdecay.data.requests import EditRequest, InvalidRecordError, Probe

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
DEFAULT_DATASET = "counterfact"
FORMATS = ("counterfact", "zsre", "plain", "memit")
ZSRE_TARGETS = ("alt", "answer")
MEMIT_DUMMY_TARGET = "<|endoftext|>"
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


class _BadRecord(Exception):
    """Internal: one record failed validation; the message is the reason."""


# --------------------------------------------------------------------------- field helpers


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _require(rec: dict, key: str, where: str = "") -> Any:
    if key not in rec:
        raise _BadRecord(f"missing field '{where}{key}'")
    return rec[key]


def _string(rec: dict, key: str, where: str = "", *, required: bool = True) -> str | None:
    if not required and rec.get(key) is None:
        return None
    value = _require(rec, key, where)
    if not isinstance(value, str):
        raise _BadRecord(f"field '{where}{key}' must be a string, got {_type_name(value)}")
    return value


def _target(value: Any, name: str) -> str:
    """A non-empty target, stripped of surrounding whitespace."""
    if not isinstance(value, str):
        raise _BadRecord(f"field '{name}' must be a string, got {_type_name(value)}")
    value = value.strip()
    if not value:
        raise _BadRecord(f"field '{name}' is empty")
    return value


def _subject(rec: dict, key: str = "subject", where: str = "") -> str:
    subject = _string(rec, key, where)
    if not subject.strip():
        raise _BadRecord(f"field '{where}{key}' is empty")
    return subject


def _template(prompt: str, subject: str, name: str = "prompt") -> str:
    """A prompt with exactly one "{}": kept as is, or made by replacing the subject's first occurrence."""
    placeholders = prompt.count("{}")
    if placeholders > 1:
        raise _BadRecord(
            f"field '{name}' has {placeholders} '{{}}' placeholders; exactly one is allowed"
        )
    if placeholders == 0:
        if subject not in prompt:
            raise _BadRecord(f"subject {subject!r} not found in {name} {prompt!r}")
        prompt = prompt.replace(subject, "{}", 1)
    rest = prompt.replace("{}", "")
    if "{" in rest or "}" in rest:
        raise _BadRecord(
            f"field '{name}' contains a brace other than the '{{}}' placeholder: {prompt!r}"
        )
    if not prompt.replace("{}", "").strip():
        raise _BadRecord(f"field '{name}' has no text besides the subject")
    return prompt


def _string_list(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _BadRecord(f"field '{name}' must be a list, got {_type_name(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _BadRecord(f"field '{name}' entry {i} must be a string, got {_type_name(item)}")
        if not item.strip():
            raise _BadRecord(f"field '{name}' entry {i} is empty")
    return tuple(value)


def _probe_object(item: Any, name: str) -> Probe:
    if not isinstance(item, dict):
        raise _BadRecord(
            f"field '{name}' must be an object with 'prompt' and 'target', got {_type_name(item)}"
        )
    prompt = _string(item, "prompt", f"{name}.")
    if not prompt.strip():
        raise _BadRecord(f"field '{name}.prompt' is empty")
    return Probe(prompt, _target(_require(item, "target", f"{name}."), f"{name}.target"))


def _case_id_value(rec: dict, key: str = "case_id", *, required: bool = True) -> str | None:
    if key not in rec or rec[key] is None:
        if required:
            raise _BadRecord(f"missing field '{key}'")
        return None
    value = rec[key]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _BadRecord(f"field '{key}' must be an integer or string, got {_type_name(value)}")
    if isinstance(value, str) and not value.strip():
        raise _BadRecord(f"field '{key}' is empty")
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
    paraphrases = _string_list([_require(rec, "rephrase_prompt")], "rephrase_prompt")
    loc_prompt = _string(rec, "locality_prompt")
    if not loc_prompt.strip():
        raise _BadRecord("field 'locality_prompt' is empty")
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
        raise _BadRecord(f"field 'answers' must be a list, got {_type_name(answers)}")
    if not answers:
        raise _BadRecord("field 'answers' is empty")
    answer = _target(answers[0], "answers[0]")
    if zsre_target == "alt":
        target_new, target_true = _target(_require(rec, "alt"), "alt"), answer
    else:
        target_new, target_true = answer, None
    paraphrases = _string_list([_require(rec, "rephrase")], "rephrase")
    loc = _string(rec, "loc")
    if not loc.strip():
        raise _BadRecord("field 'loc' is empty")
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
        raise _BadRecord(f"field '{name}' must be an object with 'str', got {_type_name(value)}")
    if "str" not in value:
        raise _BadRecord(f"missing field '{name}.str'")
    text = value["str"]
    if not required and isinstance(text, str) and text.strip() == MEMIT_DUMMY_TARGET:
        return None
    return _target(text, f"{name}.str")


def _from_memit(rec: dict, index: int, *, default_id: str = "", **_: Any) -> EditRequest:
    case_id = _case_id_value(rec, required=False)
    rw = _require(rec, "requested_rewrite")
    if not isinstance(rw, dict):
        raise _BadRecord(f"field 'requested_rewrite' must be an object, got {_type_name(rw)}")
    where = "requested_rewrite."
    subject = _subject(rw, "subject", where)
    prompt = _template(_string(rw, "prompt", where), subject, where + "prompt")
    target_new = _memit_str(_require(rw, "target_new", where), where + "target_new", required=True)
    target_true = _memit_str(rw.get("target_true"), where + "target_true", required=False)
    paraphrases = _string_list(rec.get("paraphrase_prompts", []), "paraphrase_prompts")
    raw_neighbours = rec.get("neighborhood_prompts", [])
    if not isinstance(raw_neighbours, list):
        raise _BadRecord(
            f"field 'neighborhood_prompts' must be a list, got {_type_name(raw_neighbours)}"
        )
    neighbours = []
    for i, item in enumerate(raw_neighbours):
        name = f"neighborhood_prompts[{i}]"
        if isinstance(item, dict):
            neighbours.append(_probe_object(item, name))
        elif isinstance(item, str):
            if not item.strip():
                raise _BadRecord(f"field 'neighborhood_prompts' entry {i} is empty")
            if target_true is None:
                raise _BadRecord(
                    f"field 'neighborhood_prompts' entry {i} is a string but there is no "
                    "target_true to score it against"
                )
            neighbours.append(Probe(item, target_true))
        else:
            raise _BadRecord(
                f"field 'neighborhood_prompts' entry {i} must be a string, got {_type_name(item)}"
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
    paraphrases = _string_list(rec.get("paraphrases", []), "paraphrases")
    raw_neighbours = rec.get("neighbours", [])
    if not isinstance(raw_neighbours, list):
        raise _BadRecord(f"field 'neighbours' must be a list, got {_type_name(raw_neighbours)}")
    neighbours = tuple(
        _probe_object(item, f"neighbours[{i}]") for i, item in enumerate(raw_neighbours)
    )
    source = rec.get("source", "user")
    if not isinstance(source, str) or not source:
        raise _BadRecord(f"field 'source' must be a non-empty string, got {_type_name(source)}")
    extra = rec.get("extra", {})
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise _BadRecord(f"field 'extra' must be an object, got {_type_name(extra)}")
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


_CONVERTERS: dict[str, Callable[..., EditRequest]] = {
    "counterfact": _from_counterfact,
    "zsre": _from_zsre,
    "memit": _from_memit,
    "plain": _from_plain,
}


# --------------------------------------------------------------------------- reading files


def _read_text(path: Path) -> str:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return fh.read()
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecordError(f"{path}: not UTF-8 text ({exc})") from exc


def _is_jsonl(path: Path, text: str) -> bool:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in (".jsonl", ".ndjson"):
        return True
    if suffixes and suffixes[-1] == ".json":
        return False
    return not text.lstrip().startswith("[")


def _iter_records(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (record index, decoded value) in file order; malformed JSON raises InvalidRecordError."""
    text = _read_text(path)
    if _is_jsonl(path, text):
        index = 0
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidRecordError(
                    f"{path}, line {lineno}: malformed JSON ({exc.msg} at column {exc.colno})"
                ) from exc
            yield index, value
            index += 1
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRecordError(
            f"{path}, line {exc.lineno}: malformed JSON ({exc.msg} at column {exc.colno})"
        ) from exc
    if not isinstance(data, list):
        raise InvalidRecordError(
            f"{path}: expected a JSON list of records (or JSONL), got a JSON {_type_name(data)}"
        )
    yield from enumerate(data)


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
        f"cannot tell the format of a record with keys {sorted(keys)}; pass fmt= one of {', '.join(FORMATS)}"
    )


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
    convert: Callable[..., EditRequest] | None = _CONVERTERS[fmt] if fmt else None

    if stop is not None and stop == offset:
        return LoadResult([], [], source or str(path))
    for index, rec in _iter_records(path):
        if stop is not None and valid >= stop:
            break
        case_id = rec.get("case_id") if isinstance(rec, dict) else None
        try:
            if not isinstance(rec, dict):
                raise _BadRecord(f"not a JSON object (got {_type_name(rec)})")
            if convert is None:
                try:
                    detected = detect_format(rec)
                except ValueError as exc:
                    raise InvalidRecordError(f"{_describe(index, case_id, path)}: {exc}") from exc
                convert = _CONVERTERS[detected]
                log.debug("%s: detected format %r", path, detected)
            request = convert(rec, index, **options)
        except _BadRecord as exc:
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
    "DatasetInfo",
    "LoadResult",
    "SkippedRecord",
    "detect_format",
    "list_datasets",
    "load_requests",
    "save_requests_jsonl",
]
