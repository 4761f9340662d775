"""How each kind of stage runs: the functions `stages.run_stage` dispatches to (`RUNNERS`).

Each runner reads its stage's settings and inputs from the artifact store, computes into `work`
(the stage's unpublished directory) and returns the stage record's entries. `ModelPool` keeps
models loaded across stages of one process; `model_state` builds the model an evaluate stage names.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch
from safetensors.torch import save_file

from ..attacks.run import attack_set, plant
from ..attacks.score import score_probes
from ..attacks.score import summarise as summarise_probes
from ..config_types import field_default
from ..data.instructions import load_finetune_data, remove_edited_subjects
from ..data.loaders import load_requests, save_requests_jsonl
from ..editing import get_editor
from ..editing.delta import EditDelta
from ..editing.memit import Prepared, prepare
from ..editing.sequential import edit_sequentially
from ..editing.statistics import StatisticSpec, second_moments
from ..editing.targets import TargetResult
from ..evaluation.downstream import downstream_accuracy, greedy_continuations
from ..evaluation.edit_metrics import evaluate_requests, summarise
from ..evaluation.perplexity import heldout_perplexity
from ..evaluation.scorer import Scorer
from ..finetuning.preserve import ProtectedEdits, make_preservation
from ..finetuning.tuner import FinetuneConfig, finetune, load_finetuned, trainable_state
from ..integrity import load_tensors
from ..io import atomic_write
from ..models.registry import LoadedModel, fingerprint
from .config import Study
from .store import ArtifactStore, Stage

if TYPE_CHECKING:
    from .stages import ModelPool

log = logging.getLogger(__name__)

FINAL = "final"  # the step label of a fine-tuning run's last state
SNAPSHOT_EVERY = field_default(Study, "snapshot_every")


def finetune_examples(data: dict):
    """The fine-tuning examples a finetune stage trains on, and the overlap report."""
    return _finetune_examples(json.dumps(data, sort_keys=True))


@functools.lru_cache(maxsize=8)  # planning a grid asks for the same data once per configuration
def _finetune_examples(data_json: str):
    data = json.loads(data_json)
    examples = load_finetune_data(data["source"], n=data["n"], seed=data["seed"])
    return remove_edited_subjects(examples, _requests(data["without_subjects_of"]))


def _requests(settings: dict):
    if "attack" in settings:
        return list(attack_set(settings["attack"], settings["settings"]).requests)
    loaded = load_requests(
        settings["data"],
        n=settings["n"],
        offset=settings["offset"],
        zsre_target=settings.get("zsre_target", "alt"),
    )
    if not loaded.requests:
        raise ValueError(f"no valid edit requests in {settings['data']!r}")
    return loaded.requests


def _check_model(lm: LoadedModel, settings: dict) -> None:
    if lm.fingerprint != settings["fingerprint"]:
        raise RuntimeError(
            f"model {settings['model']!r} now has fingerprint {lm.fingerprint}, but the study was "
            f"planned with {settings['fingerprint']}: the weights changed; rerun into a new directory"
        )


def _run_statistic(stage: Stage, store: ArtifactStore, work: Path, pool: ModelPool) -> dict:
    s = stage.settings
    lm = pool.get(s["model"])
    _check_model(lm, s)
    stats = second_moments(lm, s["layers"], StatisticSpec(**s["spec"]))
    return {
        "statistic_keys": {str(l): m.key for l, m in stats.items()},
        "n_tokens": {str(l): m.n_tokens for l, m in stats.items()},
    }


def _stats_for(stage: Stage, lm: LoadedModel, cfg) -> dict | None:
    if stage.find_input("statistic") is None:
        return None
    return second_moments(
        lm, list(cfg.layers), cfg.statistic
    )  # from the statistic cache the input filled


def _run_targets(stage: Stage, store: ArtifactStore, work: Path, pool: ModelPool) -> dict:
    s = stage.settings
    lm = pool.get(s["model"])
    _check_model(lm, s)
    requests = _requests(s["requests"])
    from ..editing.config import MemitConfig

    spec = stage.input("statistic").settings["spec"]
    cfg = MemitConfig().with_overrides(
        layers=s["layers"], targets=s["targets"], templates=s["templates"], statistic=spec
    )
    prep = prepare(lm, requests, cfg, _stats_for(stage, lm, cfg))
    t = prep.targets
    save_file(
        {"z": t.z.contiguous(), "h_init": t.h_init.contiguous()}, str(work / "targets.safetensors")
    )
    (work / "targets.json").write_text(
        json.dumps(
            {
                "templates": prep.templates,
                "delta_norm": t.delta_norm,
                "final_nll": t.final_nll,
                "steps": t.steps,
                "timings": prep.timings,
            },
            indent=1,
        )
    )
    return {"n_requests": len(requests), "timings": prep.timings}


def _load_prepared(store: ArtifactStore, stage: Stage, stats) -> Prepared:
    d = store.verified(stage, "targets.safetensors", "targets.json")
    tensors = load_tensors(d / "targets.safetensors")
    meta = json.loads((d / "targets.json").read_text())
    result = TargetResult(
        tensors["z"], tensors["h_init"], meta["delta_norm"], meta["final_nll"], meta["steps"]
    )
    return Prepared(
        stats, meta["templates"], result, {"targets_s": meta["timings"].get("targets_s", 0.0)}
    )


def _run_edit(stage: Stage, store: ArtifactStore, work: Path, pool: ModelPool) -> dict:
    s = stage.settings
    lm = pool.get(s["model"])
    _check_model(lm, s)
    requests = _requests(s["requests"])
    editor = get_editor(s["method"])
    cfg = editor.config_class.from_dict(s["config"])
    stats = _stats_for(stage, lm, cfg)
    kwargs = {"stats": stats} if stats is not None else {}
    torch.manual_seed(s["seed"])
    t0 = time.perf_counter()
    attack = s["requests"].get("attack")
    if attack is not None:
        planted = attack_set(attack, s["requests"]["settings"])
        delta = plant(lm, planted, s["method"], cfg=cfg)
        requests = [*planted.requests, *planted.clean_requests]
    elif s["batch_size"] and s["batch_size"] < len(requests):
        delta = edit_sequentially(
            lm, requests, editor, cfg, s["batch_size"], progress_file=work / "sequential"
        )
    else:
        targets = stage.find_input("targets")
        if targets is not None:
            kwargs["prepared"] = _load_prepared(store, targets, stats)
        delta = editor.edit(lm, requests, cfg, **kwargs)
    seconds = time.perf_counter() - t0
    delta.seeds["job"] = s["seed"]
    delta.save(work / "delta")
    save_requests_jsonl(requests, work / "requests.jsonl")
    norms = delta.norms(lm.model)
    return {
        "n_edits": len(requests),
        "edit_seconds": seconds,
        "seconds_per_edit": seconds / len(requests),
        "delta_relative_norms": norms,
        "layers": list(cfg.layers),
    }


def _run_finetune(
    stage: Stage,
    store: ArtifactStore,
    work: Path,
    pool: ModelPool,
    snapshot_every: int = SNAPSHOT_EVERY,
) -> dict:
    s = stage.settings
    lm = pool.get(s["model"])
    _check_model(lm, s)
    data = s["data"]
    kept, overlap = finetune_examples(data)
    log.info(
        "fine-tuning data: %d examples, %d removed for mentioning an edited subject",
        len(kept),
        overlap.n_removed,
    )
    fcfg = _finetune_config(s["finetune"])
    edited_layers: list[int] = []
    preserve = None
    pool.spoil(s["model"])  # the weights change from here on
    if s["edited"]:
        edit = stage.input("edit")
        delta = _load_delta(store, edit)
        delta.apply(lm.model)
        edited_layers = store.record(edit)["layers"]
        if fcfg.preserve.mode != "none":
            path = store.verified(edit, "requests.jsonl") / "requests.jsonl"
            requests = load_requests(path).requests
            edits = ProtectedEdits.from_delta(delta, requests)
            preserve = make_preservation(fcfg.preserve, edits)

    def save_checkpoint(step: int, model) -> None:
        _save_weights(work / f"step-{step}", trainable_state(model))

    res = finetune(
        lm,
        kept,
        fcfg,
        edited_layers,
        on_checkpoint=save_checkpoint,
        snapshot=work / "snapshot",
        snapshot_every=snapshot_every,
        preserve=preserve,
    )
    _save_weights(work / FINAL, trainable_state(res.model))
    losses = pd.DataFrame({"step": range(1, len(res.losses) + 1), "loss": res.losses})
    atomic_write(work / "losses.csv", lambda tmp: losses.to_csv(tmp, index=False))
    if res.validation:
        _write_validation(work / "validation.csv", res.validation)
    return {
        "best_step": res.best_step,
        "validation_loss": min(v for _, v in res.validation) if res.validation else None,
        "steps": res.steps,
        "tokens": res.tokens,
        "train_seconds": res.seconds,
        "tokens_per_second": res.tokens_per_second,
        "trainable_parameters": res.trainable_parameters,
        "layers": res.layers,
        "n_examples": len(kept),
        "overlap": {
            "n_checked": overlap.n_checked,
            "n_removed": overlap.n_removed,
            "per_subject": overlap.per_subject,
        },
    }


def _write_validation(path: Path, validation: list[tuple[int, float]]) -> None:
    """One row per validated step: `step, validation_loss` (the held-out split's mean token loss)."""
    table = pd.DataFrame(validation, columns=["step", "validation_loss"])
    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))


def _load_delta(store: ArtifactStore, edit: Stage) -> EditDelta:
    """An edit stage's delta, once its files match the stage record (and their own checksums)."""
    return EditDelta.load(store.verified(edit, "delta") / "delta")


def _finetune_config(d: dict) -> FinetuneConfig:
    return FinetuneConfig.from_dict(d)


def _save_weights(directory: Path, weights: dict[str, torch.Tensor]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(
        directory / "weights.safetensors",
        lambda tmp: save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp)),
    )


def model_state(
    stage: Stage, store: ArtifactStore, pool: ModelPool
) -> tuple[LoadedModel, int, object]:
    """Build the model state an evaluate stage names: returns (lm, fine-tuning step, cleanup)."""
    s = stage.settings
    lm = pool.get(s["model"])
    _check_model(lm, s)
    edit, ft = stage.find_input("edit"), stage.find_input("finetune")
    applied = _load_delta(store, edit).apply(lm.model) if edit is not None else None
    if ft is None:
        return lm, 0, (applied.revert if applied else (lambda: None))
    pool.spoil(s["model"])
    ft_dir = store.path(ft)
    record = store.record(ft)
    step = record["steps"] if s["step"] == FINAL else int(s["step"])
    sub = FINAL if s["step"] == FINAL else f"step-{s['step']}"
    if not (ft_dir / sub / "weights.safetensors").exists():
        raise FileNotFoundError(
            f"fine-tuning run {ft.key} has no weights for step {s['step']} (it ran {record['steps']} steps)"
        )
    fcfg = _finetune_config(ft.settings["finetune"])
    store.verified(ft, f"{sub}/weights.safetensors")
    model = load_finetuned(
        lm, fcfg, record["layers"], load_tensors(ft_dir / sub / "weights.safetensors")
    )
    tuned = LoadedModel(lm.name, model, lm.tokenizer, lm.adapter, fingerprint(model), lm.source)
    return tuned, step, (lambda: None)


def _run_evaluate(stage: Stage, store: ArtifactStore, work: Path, pool: ModelPool) -> dict:
    s = stage.settings
    ev = s["evaluate"]
    requests = _requests(s["requests"])
    reference = None
    if s["state"] != "M":
        base = stage.input("evaluate")
        reference = pd.read_parquet(store.verified(base, "edits.parquet") / "edits.parquet")
    lm, step, cleanup = model_state(stage, store, pool)
    try:
        scorer = Scorer(lm.model, lm.tokenizer, lm.adapter)
        table = evaluate_requests(
            scorer, requests, reference=reference, desc=f"evaluating {s['state']}"
        )
        if ev["answer_tokens"]:
            table["answer"] = greedy_continuations(
                lm, [r.text for r in requests], ev["answer_tokens"]
            )
        table.to_parquet(work / "edits.parquet", index=False)
        metrics = {"state": s["state"], "step": step, "edit_metrics": summarise(table)}
        if "attack" in s["requests"]:
            planted = attack_set(s["requests"]["attack"], s["requests"]["settings"])
            probes = score_probes(lm, planted.probes)
            probes.to_parquet(work / "probes.parquet", index=False)
            metrics["attack"] = summarise_probes(probes)
        if ev["ds_per_task"]:
            ds = downstream_accuracy(
                lm,
                n_per_task=ev["ds_per_task"],
                seed=ev["ds_seed"],
                modes=ev["ds_modes"],
                max_new_tokens=ev["ds_max_new_tokens"],
                num_beams=ev.get("ds_num_beams", 1),
                scorer=scorer,
            )
            ds.to_csv(work / "downstream.csv", index=False)
            metrics["ds"] = {
                m: float(
                    ds[(ds["task"] == "average") & (ds["mode"] == m)]["accuracy"].iloc[0] * 100
                )
                for m in ev["ds_modes"]
            }
        metrics["heldout_ppl"] = (
            heldout_perplexity(lm, max_tokens=ev["ppl_tokens"]) if ev["ppl_tokens"] else math.nan
        )
    finally:
        cleanup()
    (work / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


RUNNERS = {
    "statistic": _run_statistic,
    "targets": _run_targets,
    "edit": _run_edit,
    "finetune": _run_finetune,
    "evaluate": _run_evaluate,
}
