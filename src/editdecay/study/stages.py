"""The stages of one study configuration and how each one runs.

    statistic ─▶ targets ─▶ edit ─┬──────────────▶ evaluate(M_ed)
                                  └─▶ finetune ─▶ evaluate(M_ed_ft, every checkpoint step)
    finetune(M) ─▶ evaluate(M_ft, every checkpoint step)          evaluate(M) ─▶ (locality reference of all)

`plan(config, models)` builds the stage graph of one configuration; stages with equal settings get
equal keys, so a grid shares them (one statistic per model and layer set, one target optimisation
for every locate-then-edit method on the same requests, one M_ft for every edit method on the same
requests). `run_stage` executes one stage into the artifact store; it is what both executors call.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from .. import __version__
from ..config_types import field_default
from ..editing import default_config, get_editor
from ..editing.statistics import bos_prefix
from ..finetuning.preserve import PreserveConfig
from ..finetuning.tuner import FinetuneConfig, planned_steps, select_layers
from ..models.registry import LoadedModel, load_model, resolve_device
from .config import RunConfig
from .runners import (  # noqa: F401  (re-exported: the import paths others use)
    FINAL,
    RUNNERS,
    SNAPSHOT_EVERY,
    _load_prepared,
    finetune_examples,
    model_state,
)
from .store import ArtifactStore, Stage

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- models held by a process


class ModelPool:
    """Loaded models kept across stages in one process, always handed out with their original weights.

    Stages that only apply and revert edit deltas give the model back clean; stages that merge
    fine-tuned weights mark it spoiled, and the next request reloads it from the local cache.
    """

    def __init__(self):
        self._models: dict[str, LoadedModel] = {}

    def get(self, name: str) -> LoadedModel:
        if name not in self._models:
            self._models[name] = load_model(name)
        return self._models[name]

    def spoil(self, name: str) -> None:
        self._models.pop(name, None)


# --------------------------------------------------------------------------- planning


def requests_settings(cfg: RunConfig) -> dict:
    if cfg.attack is not None:  # the attack set, built from its kind and settings
        return {"attack": cfg.attack, "settings": dict(cfg.attack_settings)}
    out = {"data": cfg.edit_data, "n": cfg.n_edits, "offset": cfg.edit_offset}
    if cfg.zsre_target != field_default(RunConfig, "zsre_target"):
        out["zsre_target"] = cfg.zsre_target  # absent at the default: older keys stay
    path = Path(cfg.edit_data)
    if path.is_file():
        out["data_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def bos_marker(lm: LoadedModel) -> dict:
    """`{"bos_windows": True}` for a tokenizer that adds BOS (its statistic and perplexity windows
    start with it, pitfall P2), else nothing: the keys of models without BOS do not move."""
    return {"bos_windows": True} if bos_prefix(lm.tokenizer) else {}


def edit_config(cfg: RunConfig, lm: LoadedModel):
    """The editor's defaults for this model, then `edit` overrides: plain keys apply to every method,
    a table named after a method (e.g. `[config.edit.alphaedit]`) only to that method."""
    overrides = cfg.editor_overrides()
    overrides.setdefault("templates.seed", cfg.edit_seed)
    return default_config(cfg.edit_method, lm, overrides)


def finetune_config(cfg: RunConfig, layers: list[int]) -> FinetuneConfig:
    overrides = dict(cfg.finetune)  # checked against FinetuneConfig when `cfg` was built
    preserve = PreserveConfig(mode=cfg.ft_preserve, **overrides.pop("preserve", {}))
    if "checkpoint_steps" in overrides:
        overrides["checkpoint_steps"] = tuple(
            sorted({int(s) for s in overrides["checkpoint_steps"]})
        )
    fcfg = FinetuneConfig(
        method=cfg.ft_method,
        layers=tuple(layers),
        seed=cfg.seed,
        data_seed=cfg.data_seed,
        preserve=preserve,
        **overrides,
    )
    # one key per distinct run: the rate written out, adapter-only fields at their defaults for full FT
    fcfg = replace(fcfg, lr=fcfg.learning_rate)
    if fcfg.method == "full":
        d = FinetuneConfig()
        fcfg = replace(fcfg, r=d.r, alpha=d.alpha, dropout=d.dropout, target_modules=None)
    return fcfg


def plan(cfg: RunConfig, lm: LoadedModel) -> dict[tuple[str, object], Stage]:
    """The stages of one configuration, by (state, step): ("M", 0), ("M_ed", 0), ("M_ft", s), ("M_ed_ft", s),
    plus ("edit", None) and ("finetune:M", None) / ("finetune:M_ed", None) for the producing stages."""
    model = {"model": cfg.model, "fingerprint": lm.fingerprint}
    reqs = requests_settings(cfg)
    ecfg = edit_config(cfg, lm)
    editor = get_editor(cfg.edit_method)
    edit_inputs: list[Stage] = []
    if hasattr(ecfg, "statistic"):
        stat = Stage.make(
            "statistic",
            {
                **model,
                "layers": list(ecfg.layers),
                "spec": asdict(ecfg.statistic),
                **bos_marker(lm),
            },
        )
        edit_inputs.append(stat)
        if editor.shares_targets and not cfg.edit_batch_size and cfg.attack is None:
            edit_inputs.append(
                Stage.make(
                    "targets",
                    {
                        **model,
                        "requests": reqs,
                        "layers": list(ecfg.layers),
                        "targets": asdict(ecfg.targets),
                        "templates": ecfg.to_dict()["templates"],
                    },
                    (stat,),
                )
            )
    edit_settings = {
        **model,
        "method": cfg.edit_method,
        "config": ecfg.to_dict(),
        "requests": reqs,
        "batch_size": cfg.edit_batch_size,
        "seed": cfg.edit_seed,
    }
    if (
        editor.artifact_digest is not None
    ):  # a trained editor (MEND): its weights determine the edit
        edit_settings["editor_artifact"] = editor.artifact_digest(lm, ecfg)
    edit = Stage.make("edit", edit_settings, tuple(edit_inputs))
    ev = {**cfg.evaluate.to_dict(), **bos_marker(lm)}  # perplexity windows follow BOS too
    base_eval = Stage.make(
        "evaluate", {**model, "state": "M", "step": 0, "requests": reqs, "evaluate": ev}
    )
    stages: dict[tuple[str, object], Stage] = {("edit", None): edit, ("M", 0): base_eval}
    stages[("M_ed", 0)] = Stage.make(
        "evaluate",
        {**model, "state": "M_ed", "step": 0, "requests": reqs, "evaluate": ev},
        (edit, base_eval),
    )
    if cfg.ft_method == "none":
        return stages
    layers = select_layers(cfg.ft_layers, lm.n_layers, tuple(ecfg.layers))
    fcfg = finetune_config(cfg, layers)
    data = {
        "source": cfg.ft_data,
        "n": cfg.ft_examples,
        "seed": cfg.sample_seed,  # the data sample: data_seed, or seed when that is None
        "without_subjects_of": reqs,
    }
    if Path(cfg.ft_data).is_file():
        data["source_sha256"] = hashlib.sha256(Path(cfg.ft_data).read_bytes()).hexdigest()
    n_steps = planned_steps(fcfg, len(finetune_examples(data)[0]))
    dropped = [s for s in fcfg.checkpoint_steps if s >= n_steps]
    if dropped:
        log.warning(
            "%s: checkpoint steps %s dropped: fine-tuning takes %d steps",
            cfg.config_id,
            dropped,
            n_steps,
        )
        fcfg = replace(
            fcfg, checkpoint_steps=tuple(s for s in fcfg.checkpoint_steps if s < n_steps)
        )
    ft_settings = {**model, "finetune": fcfg.to_dict(), "data": data}
    # the base model is fine-tuned plainly (preservation protects edits it does not carry), so a
    # preserving configuration shares its M_ft with the plain one
    plain = {**model, "finetune": replace(fcfg, preserve=PreserveConfig()).to_dict(), "data": data}
    ft_base = Stage.make("finetune", {**plain, "edited": False})
    ft_edited = Stage.make("finetune", {**ft_settings, "edited": True}, (edit,))
    stages[("finetune:M", None)] = ft_base
    stages[("finetune:M_ed", None)] = ft_edited
    for step in [*sorted(set(fcfg.checkpoint_steps)), FINAL]:
        for state, ft, extra in (("M_ft", ft_base, ()), ("M_ed_ft", ft_edited, (edit,))):
            stages[(state, step)] = Stage.make(
                "evaluate",
                {**model, "state": state, "step": step, "requests": reqs, "evaluate": ev},
                (*extra, ft, base_eval),
            )
    return stages


# --------------------------------------------------------------------------- running


def run_stage(
    stage: Stage,
    store: ArtifactStore,
    pool: ModelPool | None = None,
    snapshot_every: int = SNAPSHOT_EVERY,
) -> Path:
    """Compute `stage` into the store unless it is already there; returns its directory.

    `snapshot_every` only sets how often a fine-tuning stage saves a resumable snapshot (it does not
    change any result, so it is not part of the stage's key).
    """
    pool = pool or ModelPool()
    with store.claim(stage) as work:
        if work is None:
            return store.path(stage)
        handler = logging.FileHandler(work / "stage.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("editdecay").addHandler(handler)
        t0 = time.perf_counter()
        try:
            log.info("stage %s: running", stage.name)
            runner = RUNNERS[stage.kind]
            record = (
                runner(stage, store, work, pool, snapshot_every)
                if stage.kind == "finetune"
                else runner(stage, store, work, pool)
            ) or {}
        finally:
            logging.getLogger("editdecay").removeHandler(handler)
            handler.close()
        record.update(
            {
                "seconds": time.perf_counter() - t0,
                "editdecay_version": __version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "device": str(resolve_device()),
            }
        )
        path = store.publish(stage, work, record)
        log.info("stage %s: done in %.1f s", stage.name, record["seconds"])
        return path
