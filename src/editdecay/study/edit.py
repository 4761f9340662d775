"""One editing job: load → evaluate unedited → edit → evaluate edited → write everything.

Output directory layout (`--out`):
    requests.jsonl        the exact requests edited (plain format; reload with --data-file)
    delta/                delta.safetensors + delta.json (the reusable edit)
    edits.csv / .parquet  per-edit metrics, one row per (request, state), state ∈ {unedited, edited}
    summary.json          settings, seeds, versions, timings, mean metrics before and after, and
                          `job_digest` (the settings and requests: a rerun of the same job is "done")
    edit.log              the job's log

The job works in a sibling directory, `.OUT.work/`, and publishes the finished outputs onto `--out`
by one rename at the end, so a failed or killed job never leaves a finished `--out` half rewritten.
An `--out` that holds a different finished run is refused unless `overwrite`.

Each phase (see `PHASES`) saves its result under `.OUT.work/phases/<phase>/` (safetensors, JSON, or
parquet tables; never pickle) with a key hashing what it depends on; the same command run again
resumes after the last finished phase, and a changed setting recomputes from the first phase it
affects. A sequential edit (batch_size) also saves its progress after every batch.

Test hook: `EDITDECAY_TEST_KILL_AFTER=<phase>` ends the process with `os._exit(137)` right after
that phase is saved (the resume tests kill the job this way).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from ..config_types import check_fields
from ..data.loaders import LoadResult, load_requests
from ..data.requests import EditRequest
from ..editing.config import EditMethod, check_overrides
from ..editing.delta import EditDelta
from ..models.registry import DEFAULT_MODEL, model_layer_count
from .edit_run import EditJobResult, _digest, _requests_digest, run_phases

log = logging.getLogger(__name__)

# summary.json entries that differ between two runs of the same job (left out when comparing)
UNSTABLE_SUMMARY_KEYS = ("timings", "seconds_per_edit", "peak_rss_mib")


@dataclass
class EditJob:
    """One `editdecay edit` run; its fields are the command's options and their defaults."""

    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "registered model name, HF model directory or cached HF id"},
    )
    method: EditMethod = field(
        default="memit",
        metadata={
            "help": "edit method: memit, alphaedit, rome, mend (after `mend-train`)",
            "label": "edit method",
        },
    )
    data: str = field(
        default="counterfact",
        metadata={"help": "bundled dataset name (see `editdecay data`) or a request file"},
    )
    n: int = field(
        default=100,
        metadata={"help": "number of edits (the first N valid records after --offset)", "ge": 1},
    )
    offset: int = field(default=0, metadata={"help": "skip this many valid records first", "ge": 0})
    strict: bool = field(
        default=False,
        metadata={"help": "fail on the first malformed record instead of skipping it"},
    )
    seed: int = field(
        default=0, metadata={"help": "seed for context templates and everything random"}
    )
    batch_size: int | None = field(
        default=None,
        metadata={
            "help": "edit sequentially in batches of this size (none or 0: all requests in one batch)",
            "ge": 0,
        },
    )
    ppl_tokens: int = field(
        default=8192,
        metadata={
            "help": "held-out WikiText tokens for perplexity before/after (0: skip); longer than a "
            "study's evaluate.ppl_tokens because one job measures only two states",
            "ge": 0,
        },
    )
    overrides: dict = field(
        default_factory=dict, metadata={"help": "editor config overrides (dotted keys)"}
    )
    out: Path = field(default=Path("runs/edit"), metadata={"help": "output directory"})

    def __post_init__(self):
        check_fields(self)
        check_overrides(self.method, self.overrides)  # before the model loads


class OutputExistsError(ValueError):
    """`--out` holds a different finished run (or other files) and `overwrite` was not given."""


def work_dir(out: str | Path) -> Path:
    """Where the job for `out` works and keeps its resumable phases until it publishes."""
    out = Path(out)
    return out.parent / f".{out.name}.work"


def record_error(out: str | Path, error: BaseException | str) -> None:
    """Append an error to the log of the job for `out` when it has a work directory (a job that
    started or was interrupted); a finished `--out` is never touched."""
    log_file = work_dir(out) / "edit.log"
    if log_file.parent.is_dir():
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with log_file.open("a", encoding="utf-8") as fh:
            fh.write(f"{stamp} ERROR editdecay.study.edit: {error}\n")


def run_edit(job: EditJob, *, overwrite: bool = False) -> EditJobResult:
    """Run `job` (resuming its phases), or report the finished run `job.out` already holds."""
    out = Path(job.out)
    loaded = _load_job_requests(job)  # a wrong data set, file, --n or --offset: before the model
    check_layers_before_load(job)  # an unknown model or a layer out of range: before the model
    digest = job_digest(job, loaded.requests)
    if _check_out(out, digest, overwrite):
        log.info("%s already holds this finished run; nothing to do", out)
        return read_finished(out)
    work = work_dir(out)
    work.mkdir(parents=True, exist_ok=True)
    with _log_to(work / "edit.log"):
        log.info("editdecay edit -> %s (working in %s)", out, work)
        result = run_phases(job, loaded, digest, work)
    _publish(work / "out", out)
    shutil.rmtree(work)
    return result


def _load_job_requests(job: EditJob) -> LoadResult:
    loaded = load_requests(job.data, n=job.n, offset=job.offset, strict=job.strict)
    if not loaded.requests:
        raise ValueError(
            f"--data {job.data}: no valid edit requests (offset {job.offset}, n {job.n})"
        )
    if job.n and len(loaded.requests) < job.n:
        log.warning("only %d valid requests available (asked for %d)", len(loaded.requests), job.n)
    return loaded


def check_layers_before_load(job: EditJob) -> None:
    """Refuse an unknown model and edit layers outside its depth, reading only its config."""
    n_layers = model_layer_count(job.model)
    layers = job.overrides.get("layers") or ()
    if n_layers is None:
        return
    for layer in layers:
        if not 0 <= int(layer) < n_layers:
            raise ValueError(
                f"--layers: layer {layer} out of range for {job.model} "
                f"({n_layers} layers, 0-{n_layers - 1})"
            )


def job_digest(job: EditJob, requests: list[EditRequest]) -> str:
    """A hash of the job's settings and its requests (what a finished summary.json records)."""
    settings = {k: v for k, v in asdict(job).items() if k != "out"}
    return _digest("edit-job", settings, _requests_digest(requests))


def _check_out(out: Path, digest: str, overwrite: bool) -> bool:
    """True when `out` holds this finished run; refuses other contents unless `overwrite`."""
    summary_file = out / "summary.json"
    if summary_file.is_file():
        try:
            finished = json.loads(summary_file.read_text())
        except json.JSONDecodeError:
            finished = {}
        if finished.get("job_digest") == digest:
            return True
        if not overwrite:
            raise OutputExistsError(
                f"--out {out} holds a different finished run (method {finished.get('method')}, "
                f"model {finished.get('model')}, data {finished.get('data')}, "
                f"{finished.get('n_edits')} edits); pass --overwrite to replace it, or another --out"
            )
        log.warning("--overwrite: %s holds a different finished run; it will be replaced", out)
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"--out {out} is not empty and holds no finished edit run; pass --overwrite to "
            "replace it, or another --out"
        )
    return False


def read_finished(out: Path) -> EditJobResult:
    summary = json.loads((out / "summary.json").read_text())
    table = pd.read_parquet(out / "edits.parquet")
    return EditJobResult(EditDelta.load(out / "delta"), table, summary, already_done=True)


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("editdecay").addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger("editdecay").removeHandler(handler)
        handler.close()


def _publish(staged: Path, out: Path) -> None:
    """Move the finished outputs onto `out` (a previous run there is moved aside, then removed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.with_name(f".{out.name}.old{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(staged, out)
    if old.exists():
        shutil.rmtree(old)
