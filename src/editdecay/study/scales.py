"""The sizes of the reproduction grid (`editdecay reproduce --scale`): one :class:`ScaleSettings`
per scale, and what still differs from the paper at `--scale paper`. :mod:`.reproduce` builds the
grid from them; the scales themselves are described in its docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config_types import ConfigError, build, check_fields
from ..finetuning.tuner import FinetuneConfig
from ..schema import FT_METHODS, FT_NONE
from .config import AnalyseSettings, EvaluateSettings, ZsreTarget


@dataclass(frozen=True)
class ScaleSettings:
    n_edits: tuple[int, ...]  # the edit counts of the main grid (claims 1-6), every FT method
    hotpotqa_edits: tuple[int, ...]
    selective_edits: tuple[int, ...]
    seed_edits: int  # edit count of the seed replicates
    seeds: tuple[int, ...]  # extra fine-tuning seeds (seed 0 is in the main grid)
    seed_ft_methods: tuple[str, ...]
    mend_edits: tuple[int, ...]
    ft_examples: int | None
    finetune: dict  # FinetuneConfig overrides shared by every configuration
    lr: dict  # per fine-tuning method; absent = FinetuneConfig's default (the paper's)
    evaluate: dict
    hotpotqa_rows: tuple[
        tuple[int, str, str, str], ...
    ] = ()  # (n, method, data, ft) instead of a product
    count_edits: tuple[
        int, ...
    ] = ()  # further edit counts, fine-tuned with `count_ft_methods` only (claim 5)
    count_ft_methods: tuple[str, ...] = ("lora",)
    recipe: bool = False  # each method's paper recipe (FinetuneConfig.recipe_for) under `finetune`
    zsre_target: ZsreTarget = "alt"  # zsRE's edit target: 'alt' or 'answer' (answers[0])
    replicate_data_seed: int | None = None  # the seed replicates' data sample (None: their seed)
    selective_data: tuple[str, ...] = ("counterfact",)  # the selective-layer block's edit sets
    # claim 14: edit-only MEMIT and AlphaEdit on CounterFact at these counts, on the model's default
    # layers and on a window as wide at the top of the model (:func:`moved_edit_layers`)
    layer_edits: tuple[int, ...] = ()
    analyse: dict = field(default_factory=dict)  # the [analyse] table (AnalyseSettings overrides)

    def __post_init__(self):
        check_fields(self)
        try:
            FinetuneConfig.check_overrides(self.finetune)
        except ConfigError as err:
            raise err.within("finetune") from None
        build(EvaluateSettings, self.evaluate, "evaluate")
        build(AnalyseSettings, self.analyse, "analyse")
        for method, lr in self.lr.items():
            if method not in FT_METHODS or method == FT_NONE:
                raise ConfigError(f"lr.{method}", "unknown fine-tuning method")
            try:
                FinetuneConfig(method=method, lr=lr)
            except ConfigError as err:
                raise err.within(f"lr.{method}") from None


SMALL = ScaleSettings(
    n_edits=(50,),
    hotpotqa_edits=(50,),
    selective_edits=(50, 150),
    seed_edits=50,
    seeds=(1,),
    seed_ft_methods=("lora",),
    mend_edits=(50,),
    ft_examples=200,
    # the edit-count comparison (claim 5) on both datasets and both editors, LoRA only, as the paper's
    # own evidence for it (GPT-J MEMIT zsRE LoRA)
    count_edits=(150,),
    count_ft_methods=("lora",),
    layer_edits=(50, 150),
    # 25 optimiser steps instead of the paper's thousands: batch 8, and the paper's learning rates
    # times 5 (LoRA/DoRA 1e-3 as in the bundled default study, full FT 2.5e-5: the paper's 40:1 ratio)
    finetune={
        "epochs": 1,
        "batch_size": 8,
        "micro_batch_size": 4,
        "warmup_steps": 3,
        "checkpoint_steps": [],
    },
    lr={"lora": 1e-3, "dora": 1e-3, "full": 2.5e-5},
    evaluate={"ds_per_task": 5, "ds_max_new_tokens": 16, "ppl_tokens": 1024, "answer_tokens": 6},
)

# Sized by the small run's paired bands (results/reproduction, "Re-judged"): its 50 edits left claims
# 4, 5 and 10 inside bands of ±2-5 pp and claim 9 just outside. Four times the edits halve a paired
# band; 62 steps instead of 25 at the same rates give the selective-layer and edit-count
# comparisons erasure to compare (CounterFact hardly decays in 25); zsRE joins CounterFact in the
# selective-layer block because only zsRE edits decay enough to order the layer choices; 600 edits
# against 200 give claim 5 a threefold count and CounterFact failed edits that could emerge
# (claim 7); one checkpoint-free evaluation per fine-tuning keeps it near 10 hours on 2 cores.
MEDIUM = ScaleSettings(
    n_edits=(200,),
    count_edits=(600,),
    count_ft_methods=("lora",),
    layer_edits=(200, 600),
    hotpotqa_edits=(200,),
    selective_edits=(200,),
    selective_data=("counterfact", "zsre"),
    seed_edits=200,
    seeds=(1, 2),
    seed_ft_methods=("lora",),
    mend_edits=(200,),
    ft_examples=500,
    # the small scale's rates (the paper's times 5) for 62 steps of batch 8
    finetune={
        "epochs": 1,
        "batch_size": 8,
        "micro_batch_size": 4,
        "warmup_steps": 6,
        "checkpoint_steps": [],
    },
    lr={"lora": 1e-3, "dora": 1e-3, "full": 2.5e-5},
    evaluate={"ds_per_task": 10, "ds_max_new_tokens": 16, "ppl_tokens": 2048, "answer_tokens": 6},
    replicate_data_seed=0,  # the seed spread is order/initialisation/dropout, as in the paper
)

PAPER = ScaleSettings(
    n_edits=(100, 1000, 10000),
    hotpotqa_edits=(),
    selective_edits=(100, 1000),
    layer_edits=(1000, 10000),
    seed_edits=1000,
    seeds=(1, 2),
    seed_ft_methods=("lora", "dora"),
    mend_edits=(1000, 10000),
    ft_examples=None,
    # the paper's recipe per method (recipe=True); bf16 autocast as the paper ("bf16 when available")
    finetune={"precision": "bf16"},
    lr={},
    evaluate={"ds_per_task": 250, "ppl_tokens": 8192, "ds_num_beams": 4},
    recipe=True,
    zsre_target="answer",  # the paper's code edits toward answers[0]
    replicate_data_seed=0,
    # PAPER Table 9's rows: (#edits, KE, data, FT); their Commonsense twins are in the main grid
    hotpotqa_rows=(
        (100, "memit", "zsre", "dora"),
        (10000, "alphaedit", "counterfact", "lora"),
        (1000, "memit", "counterfact", "lora"),
        (1000, "memit", "zsre", "dora"),
    ),
)

SCALE_SETTINGS = {"small": SMALL, "medium": MEDIUM, "paper": PAPER}

# What still differs from the paper at `--scale paper` (PAPER §2, §5): REPRODUCTION.md prints these.
PAPER_DEPARTURES = (
    "Models: the bundled small models (SmolLM2-135M, Gemma-3 270M by default) stand in for GPT2-XL, "
    "GPT-J, Llama-2-7B and Llama-3.1-8B; their edit layers come from the model registry, not from "
    "causal tracing.",
    "Statistic C: computed from the bundled WikiText-2 test articles, not 100k Wikipedia samples; "
    "MEMIT/AlphaEdit hyper-parameters are the editor defaults, not the paper's per-model files.",
    "Edit sets: the bundled CounterFact (10,000 records) and zsRE (1,000 records); configurations "
    "needing more records are dropped unless request files are given (zsRE at 10,000 edits).",
    "Full fine-tuning: the README's batch 32 and 2 epochs (the author's script says batch 1, 3 "
    "epochs); no group_by_length; no validation split (the paper states one for LoRA/DoRA only).",
    "Adapter targets: the architecture adapter's modules (Llama family: q, k, v, up, down "
    "projections) on every model, not PEFT's per-model defaults for GPT-2 / GPT-J.",
    "Checkpoint selection: the validation loss is computed every 80 steps and at the end, and the "
    "final model is the lowest-loss one, but only that final model is evaluated (no per-checkpoint "
    "edit metrics).",
    "Fine-tuning data: all of the bundled Commonsense training set (107,675 examples) instead of "
    "Commonsense-170k; HotpotQA uses the bundled instruction format and DS-style scoring, which the "
    "paper does not describe.",
    "Precision: bf16 autocast of the forward pass with fp32 weights and optimiser state.",
    "DS: 4-beam search without sampling (the paper's temperature 0.1 / top-p 0.75 / top-k 40 have no "
    "effect without sampling) on a seeded sample of 250 test items per task, not the full test sets.",
    "Selective-layer fine-tuning: LoRA on all adapter targets of the chosen layers (the author's "
    "older code adapts attention projections only).",
    "Seeds: the replicates (seeds 1, 2) vary data order, adapter initialisation and dropout with the "
    "fine-tuning data fixed; whether the paper's seeds also resampled data is not stated.",
    "MEND: only for models with a trained MEND editor in the cache; the paper's MEND editors are not "
    "available.",
    "Held-out WikiText perplexity is an extra measurement the paper does not report.",
)
