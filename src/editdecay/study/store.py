"""Content-addressed artifact store: every stage's output lives in a directory named by its key.

    STORE/<kind>/<key>/            a finished stage (stage.json + its files); never modified again
    STORE/<kind>/.<key>.work/      the stage while it runs (a rerun after a kill may resume from it)
    STORE/<kind>/.<key>.lock       held (flock) by the process running the stage

A stage is published by renaming its work directory onto the final name, so a reader sees either
nothing or the complete output; the lock makes concurrent runners (several processes or Ray
workers sharing a file system) wait for each other instead of computing the same stage twice.

stage.json records the SHA-256 of every other file of the stage (`files`: relative path → digest).
`done` only looks for stage.json; `verify` rehashes, and `verified` is how a later stage reads an
input's files: it refuses, naming the stage and the file, one changed or removed since publishing.
Keys stay content addresses of inputs and settings, never of outputs.

`pack` copies a store without its large files (edit deltas, adapters, fine-tuned weights): what a
report is gathered from, small enough to commit or carry to another machine. A packed stage keeps
stage.json and lists what it left out in thin.json; it counts as done for gathering, and a run that
needs its outputs as an input computes it again (`is_thin`; the study plan's `pending`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..integrity import IntegrityError, sha256_file
from ..io import atomic_write

log = logging.getLogger(__name__)

RECORD_FILE = "stage.json"
THIN_FILE = "thin.json"  # in a packed stage: the files `pack` left out
PROBLEMS = {
    "changed": "changed since the stage was published (its SHA-256 differs from the stage record)",
    "missing": "is missing",
    "unrecorded": "is not among the files the stage published",
}


class StageIntegrityError(IntegrityError):
    """A finished stage's output files differ from the digests recorded when it was published."""


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(value):
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable in stage settings: {value!r}")


@dataclass(frozen=True)
class Stage:
    """One unit of work: its kind, the settings that determine its output, and the stages it reads."""

    kind: str
    settings: dict = field(hash=False, compare=False)
    inputs: tuple[Stage, ...] = field(default=(), hash=False, compare=False)
    key: str = field(default="", compare=True)

    @staticmethod
    def make(kind: str, settings: dict, inputs: tuple[Stage, ...] = ()) -> Stage:
        settings = json.loads(
            canonical_json(settings)
        )  # normalised: tuples become lists, keys sorted
        text = canonical_json(
            {"kind": kind, "settings": settings, "inputs": [s.key for s in inputs]}
        )
        key = hashlib.sha256(text.encode()).hexdigest()[:16]
        return Stage(kind, settings, tuple(inputs), key)

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.key}"

    def input(self, kind: str) -> Stage:
        found = [s for s in self.inputs if s.kind == kind]
        if len(found) != 1:
            raise KeyError(f"stage {self.name} has {len(found)} inputs of kind {kind!r}")
        return found[0]

    def find_input(self, kind: str) -> Stage | None:
        found = [s for s in self.inputs if s.kind == kind]
        return found[0] if found else None

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "key": self.key,
            "settings": self.settings,
            "inputs": [s.to_dict() for s in self.inputs],
        }

    @staticmethod
    def from_dict(d: dict) -> Stage:
        stage = Stage.make(d["kind"], d["settings"], tuple(Stage.from_dict(i) for i in d["inputs"]))
        if stage.key != d["key"]:
            raise ValueError(
                f"stage {d['kind']}/{d['key']} does not match its settings (key {stage.key})"
            )
        return stage


def walk(stages) -> list[Stage]:
    """Every stage reachable from `stages`, inputs before the stages that read them, each once."""
    order: list[Stage] = []
    seen: set[str] = set()

    def visit(s: Stage) -> None:
        if s.key in seen:
            return
        for i in s.inputs:
            visit(i)
        seen.add(s.key)
        order.append(s)

    for s in stages:
        visit(s)
    return order


class ArtifactStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, stage: Stage) -> Path:
        return self.root / stage.kind / stage.key

    def done(self, stage: Stage) -> bool:
        return (self.path(stage) / RECORD_FILE).exists()

    def is_thin(self, stage: Stage) -> bool:
        """Published, but packed without some of its files: its record and small files can be
        gathered, and a stage reading it needs it computed again."""
        return (self.path(stage) / THIN_FILE).exists()

    def work_path(self, stage: Stage) -> Path:
        return self.root / stage.kind / f".{stage.key}.work"

    @contextmanager
    def claim(self, stage: Stage) -> Iterator[Path | None]:
        """Hold the stage's lock; yield its work directory, or None when it is already finished
        (a packed stage is not: it is computed again and replaces its thin copy on publishing)."""
        lock_path = self.root / stage.kind / f".{stage.key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                if self.done(stage) and not self.is_thin(stage):
                    yield None
                    return
                work = self.work_path(stage)
                work.mkdir(parents=True, exist_ok=True)
                yield work
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def publish(self, stage: Stage, work: Path, record: dict) -> Path:
        """Write stage.json (with every other file's digest) last, then move the work directory onto
        the stage's final path."""
        files = file_digests(work)
        atomic_write(
            work / RECORD_FILE,
            lambda tmp: tmp.write_text(
                json.dumps(
                    {
                        **record,
                        "kind": stage.kind,
                        "key": stage.key,
                        "settings": stage.settings,
                        "inputs": {s.kind: s.key for s in stage.inputs},
                        "files": files,
                    },
                    indent=1,
                    default=_jsonable,
                )
            ),
        )
        final = self.path(stage)
        if final.exists():  # a packed (thin) copy being replaced, or a leftover without stage.json
            shutil.rmtree(final)
        os.replace(work, final)
        return final

    def record(self, stage: Stage) -> dict:
        return json.loads((self.path(stage) / RECORD_FILE).read_text())

    def verify(self, stage: Stage, paths: Iterable[str] | None = None) -> dict[str, str]:
        """Rehash a finished stage's files: {relative path: "changed" | "missing" | "unrecorded"} for
        each that does not match the record ({} when all do). `paths` (files, or directories for the
        files under them) limits the check; by default every recorded file is checked. A stage
        published before digests were recorded cannot be checked and passes (logged at debug level).
        """
        recorded = self.record(stage).get("files")
        if recorded is None:
            log.debug("stage %s: published without file digests; not verified", stage.name)
            return {}
        root = self.path(stage)
        wanted = sorted(recorded) if paths is None else _expand(paths, recorded)
        problems = {rel: _problem(root / rel, recorded.get(rel)) for rel in wanted}
        return {rel: problem for rel, problem in problems.items() if problem}

    def verified(self, stage: Stage, *paths: str) -> Path:
        """The stage's directory, once the named files (or directories) match their record; raises
        StageIntegrityError naming the stage and each file that does not."""
        problems = self.verify(stage, paths)
        if problems:
            details = "; ".join(f"{rel} {PROBLEMS[problem]}" for rel, problem in problems.items())
            raise StageIntegrityError(
                f"stage {stage.name}: {details}; refusing it as an input "
                f"(delete {self.path(stage)} to recompute it)"
            )
        return self.path(stage)

    def clear_work(self, stage: Stage) -> Path:
        work = self.work_path(stage)
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        return work


def pack(source: str | Path, dest: str | Path, max_file_bytes: int = 4 << 20) -> dict[str, int]:
    """Copy every finished stage of the store at `source` that `dest` does not hold yet into `dest`,
    without its files over `max_file_bytes` (each packed stage lists them in thin.json); work
    directories and locks are not copied. Returns the counts of stages copied and files left out
    and the bytes left out."""
    source, dest = Path(source), Path(dest)
    if not source.is_dir():
        raise FileNotFoundError(f"no artifact store at {source}")
    if dest.resolve() == source.resolve():
        raise ValueError(f"pack: source and destination are the same store ({source})")
    totals = {"stages": 0, "omitted_files": 0, "omitted_bytes": 0}
    for record_path in sorted(source.glob(f"*/*/{RECORD_FILE}")):
        stage_dir = record_path.parent
        target = dest / stage_dir.parent.name / stage_dir.name
        if stage_dir.name.startswith(".") or (target / RECORD_FILE).exists():
            continue
        work = target.parent / f".{stage_dir.name}.pack"
        omitted = _copy_small_files(stage_dir, work, max_file_bytes)
        if (stage_dir / THIN_FILE).exists():  # packed before: keep what it had already left out
            omitted = {**json.loads((stage_dir / THIN_FILE).read_text())["omitted"], **omitted}
        if omitted:
            (work / THIN_FILE).write_text(json.dumps({"omitted": omitted}, indent=1))
        if target.exists():  # a leftover without stage.json
            shutil.rmtree(target)
        os.replace(work, target)
        totals["stages"] += 1
        totals["omitted_files"] += len(omitted)
        totals["omitted_bytes"] += sum(omitted.values())
    return totals


def _copy_small_files(source: Path, work: Path, max_file_bytes: int) -> dict[str, int]:
    """Copy `source`'s files of at most `max_file_bytes` into a fresh `work`; returns the others
    (relative path → size). A thin.json of `source` is not copied (the caller writes the merged one)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    omitted = {}
    for f in sorted(source.rglob("*")):
        if not f.is_file() or f.name == THIN_FILE:
            continue
        rel = f.relative_to(source).as_posix()
        if f.stat().st_size > max_file_bytes:
            omitted[rel] = f.stat().st_size
            continue
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, work / rel)
    return omitted


def file_digests(directory: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file under `directory` except the stage record."""
    files = (p for p in sorted(directory.rglob("*")) if p.is_file())
    return {
        p.relative_to(directory).as_posix(): sha256_file(p)
        for p in files
        if p.relative_to(directory).as_posix() != RECORD_FILE
    }


def _expand(paths: Iterable[str], recorded: dict[str, str]) -> list[str]:
    """The recorded files named by `paths` (a directory names the files under it); a path that names
    no recorded file is kept, so it is reported."""
    out: list[str] = []
    for path in paths:
        path = path.strip("/")
        under = [rel for rel in recorded if rel == path or rel.startswith(path + "/")]
        out += under or [path]
    return sorted(set(out))


def _problem(path: Path, digest: str | None) -> str | None:
    if digest is None:
        return "unrecorded" if path.exists() else "missing"
    if not path.is_file():
        return "missing"
    return "changed" if sha256_file(path) != digest else None
