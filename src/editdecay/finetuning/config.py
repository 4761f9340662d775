"""The fine-tuning settings (`FinetuneConfig`) and the paper's recipe per method (PAPER §2.4).

`RECIPES` is the one place where the paper's per-method values are written;
:meth:`FinetuneConfig.recipe_for` hands them out as overrides (the reproduction grid's paper scale
uses them). The field defaults are the adapter (LoRA / DoRA) recipe without its validation split.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from ..config_types import ConfigError, build, check_fields, drop_defaults
from ..schema import FT_METHODS, FT_NONE, LAYER_CHOICES
from .preserve import PreserveConfig

FinetuneMethod = Literal[tuple(m for m in FT_METHODS if m != FT_NONE)]
LayerChoice = Literal[LAYER_CHOICES]
Precision = Literal["fp32", "bf16"]
Batching = Literal["padded", "by-length"]
AdamWKernel = Literal["torch-default", "fused"]
# set per configuration of a study (its ft_method, ft_layers and seed), never in its `finetune` table
RUN_LEVEL_FIELDS = {
    "method": "ft_method",
    "layers": "ft_layers",
    "seed": "seed",
    "data_seed": "data_seed",
}


# PAPER §2.4, the author's commands per method (LLM-Adapters / DoRA commonsense recipe). Full FT's
# batch and epochs follow the README (32, 2; the script says 1, 3); its warm-up is a ratio.
ADAPTER_RECIPE = {
    "lr": 2e-4,
    "epochs": 3,
    "batch_size": 16,
    "cutoff_len": 256,
    "warmup_steps": 100,
    "warmup_ratio": None,
    "weight_decay": 0.0,
    "validation_examples": 120,
    "validation_every": 80,
    "select_best": True,
}
RECIPES: dict[str, dict] = {
    "lora": ADAPTER_RECIPE,
    "dora": ADAPTER_RECIPE,
    "full": {
        "lr": 5e-6,
        "epochs": 2,
        "batch_size": 32,
        "cutoff_len": 1024,
        "warmup_steps": 0,
        "warmup_ratio": 0.1,
        "weight_decay": 0.01,
        "validation_examples": 0,
        "validation_every": 0,
        "select_best": False,
    },
}
# written into `to_dict` (and so into stage keys) only when set: older runs keep their keys
OMITTED_AT_DEFAULT = (
    "warmup_ratio",
    "validation_examples",
    "validation_every",
    "select_best",
    "data_seed",
    "preserve",
)
# written into `to_dict` only when they differ from what every run before them did
KEYED_UNLESS = {"batching": "padded", "adamw": "torch-default"}


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run. Defaults are the paper's adapter recipe; `max_steps` caps them for CPU runs."""

    method: FinetuneMethod = field(
        default="lora",
        metadata={"help": "'lora', 'dora' or 'full'", "label": "fine-tuning method"},
    )
    layers: LayerChoice | tuple[int, ...] = field(
        default="all",
        metadata={
            "help": "'all', 'edited' (only the edited layers), 'non-edited', or explicit layer indices",
            "ge": 0,
        },
    )
    r: int = field(default=32, metadata={"help": "adapter rank", "ge": 1})
    alpha: int = field(
        default=64, metadata={"help": "adapter scaling numerator (scale = alpha / r)", "gt": 0}
    )
    dropout: float = field(
        default=0.05, metadata={"help": "adapter dropout probability", "ge": 0, "lt": 1}
    )
    target_modules: tuple[str, ...] | None = field(
        default=None,
        metadata={
            "help": "adapter targets; default: the architecture adapter's (Llama: q, k, v, up, down)"
        },
    )
    lr: float | None = field(
        default=None, metadata={"help": "default: the method's recipe (RECIPES)", "gt": 0}
    )
    epochs: int = field(default=3, metadata={"help": "passes over the data", "ge": 1})
    max_steps: int | None = field(
        default=None, metadata={"help": "stop after this many optimiser steps", "ge": 1}
    )
    batch_size: int = field(default=16, metadata={"help": "examples per optimiser step", "ge": 1})
    micro_batch_size: int = field(
        default=4, metadata={"help": "examples per forward pass (gradient accumulation)", "ge": 1}
    )
    cutoff_len: int = field(
        default=256, metadata={"help": "tokens kept of each training text", "ge": 1}
    )
    warmup_steps: int = field(
        default=100, metadata={"help": "linear learning-rate warm-up steps", "ge": 0}
    )
    warmup_ratio: float | None = field(
        default=None,
        metadata={
            "help": "warm-up as a share of the run's steps (replaces warmup_steps when set)",
            "ge": 0,
            "le": 1,
        },
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay", "ge": 0})
    train_on_inputs: bool = field(
        default=True, metadata={"help": "loss on prompt and answer (the paper's setting)"}
    )
    seed: int = field(
        default=0, metadata={"help": "data order, adapter initialisation and dropout"}
    )
    data_seed: int | None = field(
        default=None,
        metadata={"help": "the validation split held out of the data (None: seed)"},
    )
    validation_examples: int = field(
        default=0,
        metadata={
            "help": "examples held out of training for the validation loss (0: none)",
            "ge": 0,
        },
    )
    validation_every: int = field(
        default=0,
        metadata={
            "help": "validation loss also every this many steps (0: checkpoint steps and the end only)",
            "ge": 0,
        },
    )
    select_best: bool = field(
        default=False,
        metadata={"help": "the final model is the validated step with the lowest validation loss"},
    )
    checkpoint_steps: tuple[int, ...] = field(
        default=(), metadata={"help": "steps at which on_checkpoint runs", "ge": 1}
    )
    batching: Batching = field(
        default="by-length",
        metadata={
            "help": "how a step's examples form micro-batches (finetuning/batches.py): 'padded' "
            "(drawn order) or 'by-length' (sorted by length, less padding); the loss is the same"
        },
    )
    adamw: AdamWKernel = field(
        default="fused",
        metadata={
            "help": "AdamW's kernel: 'fused' (one pass over all weights; a 4.7x faster optimiser "
            "step in full fine-tuning on this CPU, whole steps within noise, benchmarks/RESULTS.md) "
            "or 'torch-default' (torch's own choice, a loop over weights on CPU, as every earlier "
            "run); the same update up to rounding"
        },
    )
    precision: Precision = field(
        default="fp32",
        metadata={
            "help": "'fp32', or 'bf16' for bf16 autocast of the forward pass (weights and optimiser stay fp32); "
            "faster only where the CPU/GPU has fast bf16 matmuls (see benchmarks/RESULTS.md)"
        },
    )

    preserve: PreserveConfig = field(
        default_factory=PreserveConfig,
        metadata={"help": "edit-preserving fine-tuning (finetuning/preserve.py); mode none: plain"},
    )

    field_noun = "finetune setting"

    def __post_init__(self):
        check_fields(self)
        if self.select_best and not self.validation_examples:
            raise ConfigError("select_best", "needs validation_examples > 0")

    @staticmethod
    def recipe_for(method: str) -> dict:
        """The paper's recipe for `method` (PAPER §2.4) as FinetuneConfig overrides."""
        if method not in RECIPES:
            raise ConfigError("method", f"no recipe for {method!r}; use {', '.join(RECIPES)}")
        return dict(RECIPES[method])

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else RECIPES[self.method]["lr"]

    @property
    def split_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    def warmup_for(self, total: int) -> int:
        """Warm-up steps of a `total`-step run: `warmup_ratio` of it (rounded up) when set."""
        if self.warmup_ratio is None:
            return self.warmup_steps
        return math.ceil(self.warmup_ratio * total)

    def to_dict(self) -> dict:
        d = drop_defaults(self, asdict(self), OMITTED_AT_DEFAULT)
        for name, earlier in KEYED_UNLESS.items():
            if getattr(self, name) == earlier:
                d.pop(name)
        d["learning_rate"] = self.learning_rate
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FinetuneConfig:
        """The config `to_dict` wrote (its derived `learning_rate` is dropped), lists and all; a
        setting `to_dict` leaves out for older runs' sake reads back as what those runs did, so
        this reads stored settings, not a user's partial table (that is `build(cls, table)`)."""
        return build(cls, {**KEYED_UNLESS, **{k: v for k, v in d.items() if k != "learning_rate"}})

    @classmethod
    def check_overrides(cls, overrides: dict) -> None:
        """Refuse a study's `finetune` table if a key is unknown, set per configuration instead, or
        of the wrong type or range (the messages name the fields without the table's name)."""
        for key, run_level in RUN_LEVEL_FIELDS.items():
            if key in overrides:
                raise ConfigError(key, f"set it through the configuration's {run_level}")
        if isinstance(overrides.get("preserve"), dict) and "mode" in overrides["preserve"]:
            raise ConfigError(
                "preserve.mode",
                "set it with ft_preserve (a study) or --preserve (editdecay finetune)",
            )
        build(cls, overrides)
