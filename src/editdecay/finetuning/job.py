"""`editdecay finetune` as a Python API: fine-tune any model, optionally keeping the edits it carries.

A job reads a model (registered name, Hugging Face directory or cached id), an instruction data
source and a `FinetuneConfig`, and writes into `out`:

- `adapter/` (LoRA / DoRA: a PEFT adapter directory) and, with `merge` or for full fine-tuning,
  `model/` (an ordinary Hugging Face model directory with the tokenizer);
- `losses.csv` (step, loss), `validation.csv` when a validation split is held out;
- `finetune.json`: the job, the full config (seeds included), steps, tokens, seconds, layers and
  what preservation did.

The edits to keep are named by an edit output directory (`delta/` + `requests.jsonl`, as
`editdecay edit` and `editdecay attack` write them); with `apply_edits` the delta is added to the
model first, otherwise the model is taken to carry them already (an exported edited model). An
interrupted job resumes from its snapshot (`out/.snapshot`) when started again with the same job.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from ..config_types import ConfigError, build, check_fields
from ..data.instructions import load_finetune_data, remove_edited_subjects
from ..data.loaders import load_requests
from ..data.requests import EditRequest
from ..editing.delta import EditDelta
from ..io import atomic_write, replace_directory
from ..models.registry import load_model
from .config import FinetuneConfig, FinetuneMethod
from .preserve import PreserveMode, ProtectedEdits, make_preservation
from .tuner import finetune

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 25


@dataclass(frozen=True)
class FinetuneJob:
    """One standalone fine-tuning run (the `editdecay finetune` options)."""

    model: str = field(metadata={"help": "registered model, HF model directory or cached HF id"})
    out: str = field(metadata={"help": "output directory"})
    data: str = field(
        default="commonsense",
        metadata={"help": "commonsense, commonsense:<task>, hotpotqa or an instruction file"},
    )
    examples: int | None = field(
        default=1000, metadata={"help": "fine-tuning examples (None: all)", "ge": 1}
    )
    method: FinetuneMethod = field(default="lora", metadata={"help": "lora, dora or full"})
    preserve_edits: str | None = field(
        default=None,
        metadata={"help": "the edits to keep: an edit output directory (delta/, requests.jsonl)"},
    )
    preserve: PreserveMode = field(
        default="none",
        metadata={"help": "none, subspace, activation, distill, freeze or paraphrase"},
    )
    apply_edits: bool = field(
        default=False, metadata={"help": "add the preserved delta to the model before tuning"}
    )
    merge: bool = field(
        default=False, metadata={"help": "also write the merged model as a HF directory"}
    )
    seed: int = field(default=0, metadata={"help": "order, adapter initialisation, dropout"})
    data_seed: int | None = field(
        default=None, metadata={"help": "the data sample and validation split (None: seed)"}
    )
    finetune: dict = field(
        default_factory=dict, metadata={"help": "FinetuneConfig overrides (preserve.* too)"}
    )

    field_noun = "finetune option"

    def __post_init__(self):
        check_fields(self)
        if self.preserve != "none" and self.preserve_edits is None:
            raise ConfigError("preserve", f"{self.preserve!r} needs --preserve-edits")
        if self.apply_edits and self.preserve_edits is None:
            raise ConfigError("apply_edits", "needs --preserve-edits (the delta to apply)")

    def config(self) -> FinetuneConfig:
        overrides = dict(self.finetune)
        layers = overrides.pop("layers", "all")  # a study sets it per configuration; a job here
        FinetuneConfig.check_overrides(overrides)
        settings = {
            **overrides,
            "layers": layers,
            "method": self.method,
            "seed": self.seed,
            "data_seed": self.data_seed,
            "preserve": {**overrides.get("preserve", {}), "mode": self.preserve},
        }
        return build(FinetuneConfig, settings)


def load_edits(directory: str | Path) -> tuple[EditDelta, list[EditRequest]]:
    """The delta and requests of an edit output directory (`delta/` and `requests.jsonl`)."""
    directory = Path(directory)
    delta_dir = directory / "delta" if (directory / "delta").is_dir() else directory
    if not (delta_dir / "delta.json").is_file():
        raise FileNotFoundError(f"{directory}: no delta (expected {directory}/delta/delta.json)")
    requests_file = next(
        (
            p
            for p in (directory / "requests.jsonl", delta_dir.parent / "requests.jsonl")
            if p.is_file()
        ),
        None,
    )
    if requests_file is None:
        raise FileNotFoundError(f"{directory}: no requests.jsonl beside the delta")
    return EditDelta.load(delta_dir), list(load_requests(requests_file).requests)


def run_finetune_job(job: FinetuneJob) -> dict:
    """Run `job`, write its outputs into `job.out`; returns what finetune.json records."""
    cfg = job.config()
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    lm = load_model(job.model)
    delta, requests, edited_layers = None, [], []
    if job.preserve_edits is not None:
        delta, requests = load_edits(job.preserve_edits)
        edited_layers = ProtectedEdits.from_delta(delta, requests).layers
        if job.apply_edits:
            delta.apply(lm.model)
    examples = load_finetune_data(job.data, n=job.examples, seed=cfg.split_seed)
    removed = 0
    if requests:
        examples, overlap = remove_edited_subjects(examples, requests)
        removed = overlap.n_removed
    if not examples:
        raise ValueError(f"fine-tuning data {job.data!r}: no examples left")
    preserve = (
        make_preservation(cfg.preserve, ProtectedEdits.from_delta(delta, requests))
        if delta is not None
        else None
    )
    res = finetune(
        lm,
        examples,
        cfg,
        edited_layers,
        snapshot=out / ".snapshot",
        snapshot_every=SNAPSHOT_EVERY,
        preserve=preserve,
    )
    written = _write_model(res.model, lm, cfg, out, job.merge)
    losses = pd.DataFrame({"step": range(1, len(res.losses) + 1), "loss": res.losses})
    atomic_write(out / "losses.csv", lambda tmp: losses.to_csv(tmp, index=False))
    if res.validation:
        table = pd.DataFrame(res.validation, columns=["step", "validation_loss"])
        atomic_write(out / "validation.csv", lambda tmp: table.to_csv(tmp, index=False))
    record = {
        "job": asdict(job),
        "config": cfg.to_dict(),
        "steps": res.steps,
        "tokens": res.tokens,
        "seconds": res.seconds,
        "tokens_per_second": res.tokens_per_second,
        "layers": res.layers,
        "trainable_parameters": res.trainable_parameters,
        "n_examples": len(examples),
        "removed_for_edited_subjects": removed,
        "best_step": res.best_step,
        "preserve": cfg.preserve.to_dict(),
        "written": written,
    }
    atomic_write(out / "finetune.json", lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
    return record


def _write_model(model, lm, cfg: FinetuneConfig, out: Path, merge: bool) -> list[str]:
    written = []
    if cfg.method != "full":
        replace_directory(out / "adapter", lambda d: model.save_pretrained(d))
        written.append("adapter")
        if merge:
            model = model.merge_and_unload()
    if merge or cfg.method == "full":

        def save(d: Path) -> None:
            model.save_pretrained(d, safe_serialization=True)
            lm.tokenizer.save_pretrained(d)

        replace_directory(out / "model", save)
        written.append("model")
    return written
