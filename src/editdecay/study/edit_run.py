"""The phases of an edit job (statistic, templates, targets, delta, unedited, edited), each saved in
the work directory with a key of what it depends on, so an interrupted job resumes from the last
finished phase."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from .. import __version__
from ..data.loaders import LoadResult, save_requests_jsonl
from ..data.requests import EditRequest
from ..editing import default_config, get_editor
from ..editing.delta import EditDelta
from ..editing.memit import Prepared
from ..editing.sequential import edit_sequentially
from ..editing.statistics import second_moments
from ..editing.targets import TargetResult, optimise_targets
from ..editing.templates import context_templates
from ..evaluation.edit_metrics import evaluate_requests, summarise
from ..evaluation.perplexity import heldout_perplexity
from ..evaluation.scorer import Scorer
from ..integrity import load_tensors, save_tensors, sha256_file
from ..io import atomic_write
from ..models.adapter import model_device
from ..models.registry import LoadedModel, load_model
from .store import canonical_json, file_digests

log = logging.getLogger(__name__)


if TYPE_CHECKING:
    from .edit import EditJob

PHASES = ("statistic", "templates", "targets", "delta", "unedited", "edited")
KILL_AFTER_ENV = "EDITDECAY_TEST_KILL_AFTER"
PHASE_RECORD = "phase.json"


@dataclass
class EditJobResult:
    delta: EditDelta
    table: pd.DataFrame
    summary: dict
    already_done: bool = False  # `--out` held this very run: nothing was computed


def _requests_digest(requests: list[EditRequest]) -> str:
    return _digest([r.to_dict() for r in requests])


def _digest(*parts) -> str:
    return hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()[:24]


class Phases:
    """The saved results of one job's phases: `PHASES_DIR/<phase>/` with `phase.json` written last
    (the key, the phase's small results, every file's digest), published by one rename."""

    def __init__(self, root: Path, seed: int):
        self.root = root
        self.seed = seed  # each phase starts from this random state, resumed or not

    def run(self, name: str, key: str, compute: Callable[[Path], dict]) -> tuple[Path, dict]:
        """(directory, meta) of phase `name` under `key`: the saved one, or `compute(dir)`'s."""
        final = self.root / name
        meta = self._saved(final, key)
        if meta is not None:
            log.info("phase %s: reusing the saved result", name)
            return final, meta
        tmp = self.root / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.manual_seed(self.seed)
        meta = as_json(compute(tmp))
        record = {"key": key, "meta": meta, "files": file_digests(tmp)}
        atomic_write(tmp / PHASE_RECORD, lambda t: t.write_text(json.dumps(record, indent=1)))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _kill_hook(name)
        return final, meta

    def _saved(self, directory: Path, key: str) -> dict | None:
        try:
            record = json.loads((directory / PHASE_RECORD).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if record.get("key") != key:
            log.info("phase %s: settings changed, recomputing", directory.name)
            return None
        for rel, digest in record.get("files", {}).items():
            path = directory / rel
            if not path.is_file() or sha256_file(path) != digest:
                log.warning("phase %s: %s damaged, recomputing", directory.name, rel)
                return None
        return record["meta"]


def as_json(value):
    return json.loads(json.dumps(value))


def _kill_hook(phase: str) -> None:
    """Tests only: die like `kill -9` right after `phase` is saved (EDITDECAY_TEST_KILL_AFTER)."""
    if os.environ.get(KILL_AFTER_ENV) == phase:
        os._exit(137)


@dataclass
class _Context:
    job: EditJob
    lm: LoadedModel
    requests: list[EditRequest]
    cfg: object
    phases: Phases
    work: Path
    timings: dict = field(default_factory=dict)


def run_phases(job: EditJob, loaded: LoadResult, digest: str, work: Path) -> EditJobResult:
    torch.manual_seed(job.seed)
    t0 = time.perf_counter()
    lm = load_model(job.model)
    load_s = time.perf_counter() - t0
    overrides = {"templates.seed": job.seed, **job.overrides}
    cfg = default_config(job.method, lm, overrides)
    phases = Phases(work / "phases", job.seed)
    ctx = _Context(job, lm, loaded.requests, cfg, phases, work, {"load_s": load_s})
    delta = _delta(ctx)
    before, ppl_before = _unedited(ctx)
    after, ppl_after = _edited(ctx, delta, before)
    summary = _summary(ctx, loaded, digest, delta, (before, ppl_before), (after, ppl_after))
    table = pd.concat(
        [before.assign(state="unedited"), after.assign(state="edited")], ignore_index=True
    )
    _write_outputs(work / "out", ctx, delta, table, summary)
    return EditJobResult(delta, table, summary)


def _keys(ctx: _Context) -> dict[str, str]:
    """Each phase's key: a hash of exactly what its result depends on."""
    cfg, lm, job = ctx.cfg, ctx.lm, ctx.job
    settings = cfg.to_dict()
    requests = _requests_digest(ctx.requests)
    keys = {}
    if "statistic" in settings:
        keys["statistic"] = _digest(
            "statistic", lm.fingerprint, settings["layers"], settings["statistic"]
        )
    if "templates" in settings:
        keys["templates"] = _digest("templates", lm.fingerprint, settings["templates"])
        keys["targets"] = _digest(
            "targets", keys["templates"], requests, settings["layers"], settings["targets"]
        )
    spec = get_editor(job.method)
    artifact = spec.artifact_digest(lm, cfg) if spec.artifact_digest else None
    keys["delta"] = _digest(
        "delta", keys.get("statistic"), keys.get("targets"), lm.fingerprint, job.method,
        settings, requests, job.batch_size, job.seed, artifact,
    )  # fmt: skip
    keys["unedited"] = _digest("unedited", lm.fingerprint, requests, job.ppl_tokens)
    keys["edited"] = _digest("edited", keys["delta"], keys["unedited"])
    return keys


def _uses_shared_targets(ctx: _Context) -> bool:
    sequential = bool(ctx.job.batch_size and ctx.job.batch_size < len(ctx.requests))
    return get_editor(ctx.job.method).shares_targets and not sequential


def _delta(ctx: _Context) -> EditDelta:
    keys = _keys(ctx)
    prepared = _prepared(ctx, keys) if _uses_shared_targets(ctx) else None

    def compute(directory: Path) -> dict:
        t0 = time.perf_counter()
        delta = _edit(ctx, prepared)
        delta.seeds["job"] = ctx.job.seed
        delta.save(directory / "delta")
        return {"edit_s": time.perf_counter() - t0}

    directory, meta = ctx.phases.run("delta", keys["delta"], compute)
    delta = EditDelta.load(directory / "delta")
    ctx.timings["edit_s"] = meta["edit_s"]
    ctx.timings.update({f"edit.{k}": v for k, v in delta.info.get("timings", {}).items()})
    return delta


def _edit(ctx: _Context, prepared: Prepared | None) -> EditDelta:
    editor, job = get_editor(ctx.job.method), ctx.job
    if prepared is not None:
        return editor.edit(ctx.lm, ctx.requests, ctx.cfg, prepared=prepared)
    if job.batch_size and job.batch_size < len(ctx.requests):
        progress = ctx.work / "sequential"
        return edit_sequentially(
            ctx.lm, ctx.requests, editor, ctx.cfg, job.batch_size, progress_file=progress
        )
    return editor.edit(ctx.lm, ctx.requests, ctx.cfg)


def _prepared(ctx: _Context, keys: dict[str, str]) -> Prepared:
    """The statistic, context templates and target vectors z, each a resumable phase."""
    lm, cfg = ctx.lm, ctx.cfg

    def statistic(directory: Path) -> dict:
        t0 = time.perf_counter()
        stats = second_moments(lm, list(cfg.layers), cfg.statistic)
        return {"keys": {str(l): s.key for l, s in stats.items()}, "statistic_s": _since(t0)}

    def templates(directory: Path) -> dict:
        t0 = time.perf_counter()
        found = context_templates(lm, cfg.templates)
        (directory / "templates.json").write_text(json.dumps(found, ensure_ascii=False))
        return {"templates_s": _since(t0)}

    _, stat_meta = ctx.phases.run("statistic", keys["statistic"], statistic)
    stats = second_moments(lm, list(cfg.layers), cfg.statistic)  # the cached matrices
    template_dir, template_meta = ctx.phases.run("templates", keys["templates"], templates)
    found = json.loads((template_dir / "templates.json").read_text())
    targets, targets_s = _targets(ctx, keys, found)
    timings = {
        "statistic_s": stat_meta["statistic_s"],
        "targets_s": template_meta["templates_s"] + targets_s,
    }
    return Prepared(stats, found, targets, timings)


def _targets(ctx: _Context, keys: dict[str, str], templates: list[str]):
    def compute(directory: Path) -> dict:
        t0 = time.perf_counter()
        r = optimise_targets(ctx.lm, ctx.requests, templates, ctx.cfg.z_layer, ctx.cfg.targets)
        save_tensors(directory / "targets.safetensors", {"z": r.z, "h_init": r.h_init})
        return {
            "delta_norm": r.delta_norm,
            "final_nll": r.final_nll,
            "steps": r.steps,
            "targets_s": _since(t0),
        }

    directory, meta = ctx.phases.run("targets", keys["targets"], compute)
    tensors = load_tensors(directory / "targets.safetensors")
    result = TargetResult(
        tensors["z"], tensors["h_init"], meta["delta_norm"], meta["final_nll"], meta["steps"]
    )
    return result, meta["targets_s"]


def _since(t0: float) -> float:
    return time.perf_counter() - t0


def _unedited(ctx: _Context) -> tuple[pd.DataFrame, float | None]:
    def compute(directory: Path) -> dict:
        t0 = time.perf_counter()
        before = evaluate_requests(_scorer(ctx), ctx.requests, desc="evaluating unedited")
        eval_s, t0 = _since(t0), time.perf_counter()
        before.to_parquet(directory / "table.parquet", index=False)
        return {"eval_s": eval_s, "ppl": _perplexity(ctx), "ppl_s": _since(t0)}

    directory, meta = ctx.phases.run("unedited", _keys(ctx)["unedited"], compute)
    ctx.timings["eval_unedited_s"] = meta["eval_s"]
    if ctx.job.ppl_tokens:
        ctx.timings["ppl_s"] = meta["ppl_s"]
    return pd.read_parquet(directory / "table.parquet"), meta["ppl"]


def _edited(ctx: _Context, delta: EditDelta, before: pd.DataFrame):
    def compute(directory: Path) -> dict:
        t0 = time.perf_counter()
        with delta.apply(ctx.lm.model):
            after = evaluate_requests(
                _scorer(ctx), ctx.requests, reference=before, desc="evaluating edited"
            )
            eval_s = _since(t0)
            ppl = _perplexity(ctx)
        after.to_parquet(directory / "table.parquet", index=False)
        return {"eval_s": eval_s, "ppl": ppl}

    directory, meta = ctx.phases.run("edited", _keys(ctx)["edited"], compute)
    ctx.timings["eval_edited_s"] = meta["eval_s"]
    return pd.read_parquet(directory / "table.parquet"), meta["ppl"]


def _scorer(ctx: _Context) -> Scorer:
    return Scorer(ctx.lm.model, ctx.lm.tokenizer, ctx.lm.adapter)


def _perplexity(ctx: _Context) -> float | None:
    if not ctx.job.ppl_tokens:
        return None
    return heldout_perplexity(ctx.lm, max_tokens=ctx.job.ppl_tokens)


def _summary(ctx: _Context, loaded: LoadResult, digest: str, delta, before, after) -> dict:
    job, lm, requests = ctx.job, ctx.lm, ctx.requests
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
        "config": ctx.cfg.to_dict(),
        "unedited": _state_summary(*before),
        "timings": ctx.timings,
        "batch_size": job.batch_size,
        "edited": _state_summary(*after),
        "delta_relative_norms": delta.norms(lm.model),
        "targets": {k: _mean(v) for k, v in delta.info.get("targets", {}).items()},
        "seconds_per_edit": ctx.timings["edit_s"] / len(requests),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "job_digest": digest,
    }
    return summary


def _state_summary(table: pd.DataFrame, ppl: float | None) -> dict:
    out = summarise(table)
    if ppl is not None:
        out["heldout_ppl"] = ppl
    return out


def _write_outputs(staged: Path, ctx: _Context, delta, table: pd.DataFrame, summary) -> None:
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    save_requests_jsonl(ctx.requests, staged / "requests.jsonl")
    delta.save(staged / "delta")
    _write_tables(staged, table)
    _write_json(staged / "summary.json", summary)
    log.info("publishing the outputs onto %s", ctx.job.out)
    shutil.copyfile(ctx.work / "edit.log", staged / "edit.log")


def _mean(xs) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")


def _write_tables(out: Path, table: pd.DataFrame) -> None:
    cols = ["case_id", "state"] + [c for c in table.columns if c not in ("case_id", "state")]
    table = table[cols]
    atomic_write(out / "edits.csv", lambda tmp: table.to_csv(tmp, index=False))
    atomic_write(out / "edits.parquet", lambda tmp: table.to_parquet(tmp, index=False))


def _write_json(path: Path, obj: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1, default=str)))
