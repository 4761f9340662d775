"""One editing job: load → evaluate unedited → edit → evaluate edited → write everything.

Output directory layout:
    requests.jsonl        the exact requests edited (plain format; reload with --data-file)
    delta/                delta.safetensors + delta.json (the reusable edit)
    edits.csv / .parquet  per-edit metrics, one row per (request, state), state ∈ {unedited, edited}
    summary.json          settings, seeds, versions, timings, mean metrics before and after
    edit.log              the job's log
The unedited evaluation is written before editing starts, so a failed edit loses nothing measured;
a sequential edit (batch_size) saves its progress after every batch in sequential.pt, and the same
command run again continues after the last finished batch.
"""

from __future__ import annotations

import json
import logging
import platform
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from .. import __version__
from ..config_types import check_fields
from ..data.loaders import load_requests, save_requests_jsonl
from ..editing import default_config, get_editor
from ..editing.config import EditMethod, check_overrides
from ..editing.delta import EditDelta
from ..editing.sequential import edit_sequentially
from ..evaluation.edit_metrics import evaluate_requests, summarise
from ..evaluation.perplexity import heldout_perplexity
from ..evaluation.scorer import Scorer
from ..io import atomic_write
from ..models.adapter import model_device
from ..models.registry import DEFAULT_MODEL, load_model

log = logging.getLogger(__name__)


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


@dataclass
class EditJobResult:
    delta: EditDelta
    table: pd.DataFrame
    summary: dict


def run_edit(job: EditJob) -> EditJobResult:
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "edit.log", mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("editdecay").addHandler(handler)
    try:
        return _run(job, out)
    finally:
        logging.getLogger("editdecay").removeHandler(handler)
        handler.close()


def _run(job: EditJob, out: Path) -> EditJobResult:
    torch.manual_seed(job.seed)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    lm = load_model(job.model)
    timings["load_s"] = time.perf_counter() - t0

    loaded = load_requests(job.data, n=job.n, offset=job.offset, strict=job.strict)
    requests = loaded.requests
    if not requests:
        raise ValueError(f"no valid edit requests in {job.data!r} (offset {job.offset}, n {job.n})")
    if job.n and len(requests) < job.n:
        log.warning("only %d valid requests available (asked for %d)", len(requests), job.n)
    save_requests_jsonl(requests, out / "requests.jsonl")

    editor = get_editor(job.method)
    overrides = dict(job.overrides)
    if "templates.seed" not in overrides:
        overrides["templates.seed"] = job.seed
    cfg = default_config(job.method, lm, overrides)

    scorer = Scorer(lm.model, lm.tokenizer, lm.adapter)
    t0 = time.perf_counter()
    before = evaluate_requests(scorer, requests, desc="evaluating unedited")
    timings["eval_unedited_s"] = time.perf_counter() - t0
    summary = {
        "editdecay_version": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(model_device(lm.model)),
        "model": job.model,
        "model_source": lm.source,
        "model_fingerprint": lm.fingerprint,
        "method": job.method,
        "data": job.data,
        "n_requested": job.n,
        "offset": job.offset,
        "n_edits": len(requests),
        "n_skipped": len(loaded.skipped),
        "skipped": [
            {"index": s.index, "case_id": s.case_id, "reason": s.reason}
            for s in loaded.skipped[:50]
        ],
        "seed": job.seed,
        "config": cfg.to_dict(),
        "unedited": summarise(before),
        "timings": timings,
    }
    if job.ppl_tokens:
        t0 = time.perf_counter()
        summary["unedited"]["heldout_ppl"] = heldout_perplexity(lm, max_tokens=job.ppl_tokens)
        timings["ppl_s"] = time.perf_counter() - t0
    summary["batch_size"] = job.batch_size
    _write_tables(out, before.assign(state="unedited"))
    _write_json(out / "summary.json", summary)

    t0 = time.perf_counter()
    if job.batch_size and job.batch_size < len(requests):
        delta = edit_sequentially(
            lm, requests, editor, cfg, job.batch_size, progress_file=out / "sequential.pt"
        )
    else:
        delta = editor.edit(lm, requests, cfg)
    timings["edit_s"] = time.perf_counter() - t0
    timings.update({f"edit.{k}": v for k, v in delta.info.get("timings", {}).items()})
    delta.seeds["job"] = job.seed
    delta.save(out / "delta")

    t0 = time.perf_counter()
    with delta.apply(lm.model):
        after = evaluate_requests(scorer, requests, reference=before, desc="evaluating edited")
        timings["eval_edited_s"] = time.perf_counter() - t0
        ppl = heldout_perplexity(lm, max_tokens=job.ppl_tokens) if job.ppl_tokens else None
    table = pd.concat(
        [before.assign(state="unedited"), after.assign(state="edited")], ignore_index=True
    )
    _write_tables(out, table)
    summary["edited"] = summarise(after)
    if ppl is not None:
        summary["edited"]["heldout_ppl"] = ppl
    summary["delta_relative_norms"] = delta.norms(lm.model)
    summary["targets"] = {k: _mean(v) for k, v in delta.info.get("targets", {}).items()}
    summary["seconds_per_edit"] = timings["edit_s"] / len(requests)
    summary["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _write_json(out / "summary.json", summary)
    return EditJobResult(delta, table, summary)


def _mean(xs) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")


def _write_tables(out: Path, table: pd.DataFrame) -> None:
    cols = ["case_id", "state"] + [c for c in table.columns if c not in ("case_id", "state")]
    table = table[cols]
    atomic_write(out / "edits.csv", lambda tmp: table.to_csv(tmp, index=False))
    atomic_write(out / "edits.parquet", lambda tmp: table.to_parquet(tmp, index=False))


def _write_json(path: Path, obj: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1, default=str)))
