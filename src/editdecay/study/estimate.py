"""The CPU cost model of a study grid: seconds per stage from rates measured on the project's 2-core
CPU with SmolLM2-135M (benchmarks/RESULTS.md), scaled by each model's relative compute; each
distinct stage is counted once, as the store computes it once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

import pandas as pd

from ..config_types import field_defaults
from ..editing.config import EDIT_METHODS
from ..finetuning.preserve import PreserveConfig
from ..finetuning.tuner import FinetuneConfig
from .config import RunConfig, Study
from .store import canonical_json, walk

# Records in the bundled edit sets: larger edit counts are left out for these datasets (a request
# file with more records can replace a dataset through `reproduction_study(..., data=...)`).
BUNDLED_EDIT_RECORDS = {"counterfact": 10_000, "zsre": 1_000}
# Records in the bundled fine-tuning sets (ft_examples None = all of them).
BUNDLED_FT_RECORDS = {"commonsense": 107_675, "hotpotqa": 7_405}

# --------------------------------------------------------------------------- CPU cost model
# Measured on the project's 2-core CPU with SmolLM2-135M (benchmarks/RESULTS.md, docs/hyperparameters.md).
# target (z) optimisation, shared by MEMIT and AlphaEdit on the same requests: 2.8 s measured with
# every block run at every step, divided by the 1.14x of replaying the blocks below z_layer
Z_SECONDS_PER_EDIT = 2.45
KEYS_SECONDS_PER_EDIT = (
    0.21  # keys + solve of a MEMIT/AlphaEdit edit stage (21.3 s + 0.3 s per 100 edits)
)
MEND_SECONDS_PER_EDIT = 0.06  # MEND edit (5.9 s per 100 requests)
ROME_SECONDS_PER_EDIT = 6.5  # ROME, one z optimisation per request
STATISTIC_SECONDS = (
    107.0  # C = E[kk^T] over the WikiText statistic split, once per model and layer set
)
# fp32, batch 16 in micro-batches of 4, unpadded tokens: the 1,000-example ft-methods runs (LoRA
# 150, DoRA 105, full 137, drawn-order micro-batches) times the measured gain of micro-batches by
# length (LoRA 1.15, full 1.21, DoRA taken as LoRA's; benchmarks/RESULTS.md)
FT_TOKENS_PER_SECOND = {"lora": 172.0, "dora": 121.0, "full": 166.0}
FT_TOKENS_PER_EXAMPLE = {"commonsense": 100.0, "hotpotqa": 75.0}
FT_TOKENS_PER_EXAMPLE_DEFAULT = 100.0
VALIDATION_SHARE = 1 / 3  # a validation example costs a forward pass of a training example
EVAL_SECONDS_PER_EDIT = 0.25  # ES/PS/NS scoring and the greedy answer of one edit
# one commonsense test item per protocol: both together took 1.2 s; split by their single-thread
# times (generate 0.82 s, rank 1.58 s), then rank with one shared row per item (0.46 s single-thread)
DS_SECONDS_PER_ITEM = {"generate": 0.41, "rank": 0.23}
DS_TASKS = 7
PPL_SECONDS_PER_1K_TOKENS = 3.0
SMALL_BUDGET_HOURS = 3.25  # per model, in SmolLM2-135M hours on that CPU (times relative_cost;
# the committed small reproduction took 3.2 h on SmolLM2)
# the layers those rates were measured at: SmolLM2-135M's edit layers 4-8 of 30
MEASURED_LAYERS, MEASURED_DEPTH = (4, 5, 6, 7, 8), 30
STATISTIC_FORWARD_SHARE = (
    0.73  # of the statistic's FLOPs: the forward to the top layer; the rest kk^T
)

# --------------------------------------------------------------------------- time estimate


EDITOR_NAMES = EDIT_METHODS


def _common_overrides(cfg: RunConfig) -> dict:
    return {
        k: v
        for k, v in cfg.edit.items()
        if k not in EDITOR_NAMES and k.partition(".")[0] not in EDITOR_NAMES
    }


def _edit_overrides(cfg: RunConfig) -> str:
    own = dict(cfg.edit.get(cfg.edit_method, {}))
    own.update(
        {
            k.partition(".")[2]: v
            for k, v in cfg.edit.items()
            if k.partition(".")[0] == cfg.edit_method
        }
    )
    return canonical_json({"common": _common_overrides(cfg), "method": own, "seed": cfg.edit_seed})


def _edit_layers(cfg: RunConfig) -> tuple[tuple[int, ...], int]:
    """The configuration's edit layers and its model's depth (the measured ones where unknown)."""
    from ..models.registry import REGISTRY

    spec = REGISTRY.get(cfg.model)
    depth = spec.n_layers if spec is not None and spec.n_layers else 0
    layers = cfg.edit.get("layers") or (spec.default_edit_layers if spec is not None else ())
    if not layers or not depth:
        return MEASURED_LAYERS, MEASURED_DEPTH
    return tuple(int(x) for x in layers), depth


def _statistic_factor(cfg: RunConfig) -> float:
    """The statistic's cost against the measured one: its forward runs to the top edit layer (as a
    share of the model's depth), its kk^T accumulates once per edit layer."""
    layers, depth = _edit_layers(cfg)
    forward = (max(layers) + 1) / depth / ((max(MEASURED_LAYERS) + 1) / MEASURED_DEPTH)
    accumulate = len(layers) / len(MEASURED_LAYERS)
    return STATISTIC_FORWARD_SHARE * forward + (1 - STATISTIC_FORWARD_SHARE) * accumulate


def _keys_factor(cfg: RunConfig) -> float:
    """The keys' cost against the measured one: one forward to each edit layer in turn."""
    layers, depth = _edit_layers(cfg)
    measured = sum(x + 1 for x in MEASURED_LAYERS) / MEASURED_DEPTH
    return sum(x + 1 for x in layers) / depth / measured


def _n_requests(cfg: RunConfig) -> int:
    available = BUNDLED_EDIT_RECORDS.get(cfg.edit_data)
    if available is None:
        return cfg.n_edits
    return max(0, min(cfg.n_edits, available - cfg.edit_offset))


_FT_DEFAULTS = field_defaults(FinetuneConfig)


def _ft_tokens(cfg: RunConfig, edited: bool = False) -> float:
    """Training tokens of a fine-tuning stage, the validation passes counted at a third of a
    training example each (a forward pass only); `edited` adds the paraphrase option's examples."""
    settings = {**_FT_DEFAULTS, **cfg.finetune}
    examples = (
        cfg.ft_examples if cfg.ft_examples is not None else BUNDLED_FT_RECORDS.get(cfg.ft_data, 0)
    )
    held = settings.get("validation_examples") or 0
    train = max(0, examples - held)
    if edited and cfg.ft_preserve == "paraphrase":
        preserve = cfg.finetune.get("preserve") or {}
        train += cfg.n_edits * preserve.get("paraphrases", PreserveConfig().paraphrases)
    seen = train * settings["epochs"]
    steps = math.ceil(train / settings["batch_size"]) * settings["epochs"]
    if settings.get("max_steps"):
        seen = min(seen, settings["max_steps"] * settings["batch_size"])
        steps = min(steps, settings["max_steps"])
    if held:
        every = settings.get("validation_every") or 0
        validated = {k * every for k in range(1, steps // every + 1)} if every else set()
        validated |= {int(c) for c in settings.get("checkpoint_steps") or () if int(c) < steps}
        seen += len(validated | {steps}) * held * VALIDATION_SHARE
    return seen * FT_TOKENS_PER_EXAMPLE.get(cfg.ft_data, FT_TOKENS_PER_EXAMPLE_DEFAULT)


def _evaluate_seconds(cfg: RunConfig) -> float:
    ev = cfg.evaluate
    ds = sum(DS_SECONDS_PER_ITEM[m] for m in ev.ds_modes) * ev.ds_per_task * DS_TASKS
    return (
        EVAL_SECONDS_PER_EDIT * _n_requests(cfg)
        + ds
        + PPL_SECONDS_PER_1K_TOKENS * ev.ppl_tokens / 1000
    )


def _edit_seconds(cfg: RunConfig) -> float:
    n = _n_requests(cfg)
    if cfg.edit_method == "mend":
        return MEND_SECONDS_PER_EDIT * n
    if cfg.edit_method == "rome":
        return ROME_SECONDS_PER_EDIT * n
    keys = KEYS_SECONDS_PER_EDIT * _keys_factor(cfg)
    if cfg.edit_batch_size:  # sequential batches optimise their own targets
        return (Z_SECONDS_PER_EDIT + keys) * n
    return keys * n


def relative_cost(model: str) -> float:
    """Compute per token of `model` relative to SmolLM2-135M, on which the cost model was measured
    (the registry's `relative_cost`; 1 for other models)."""
    from ..models.registry import REGISTRY

    return REGISTRY[model].relative_cost if model in REGISTRY else 1.0


def planned_stages(configs: Iterable[RunConfig]) -> pd.DataFrame:
    """The distinct stages of `configs` with their estimated seconds, without loading any model.

    Stages are identified the way `stages.plan` keys them (model, requests, editor settings,
    fine-tuning settings and data, evaluation settings), so shared stages are counted once.
    Columns: model, kind, key, seconds.
    """
    seen: dict[tuple, tuple[str, str, float]] = {}

    def add(key: tuple, model: str, kind: str, seconds: float) -> None:
        if key not in seen:
            seen[key] = (model, kind, seconds * relative_cost(model))

    for cfg in configs:
        m = cfg.model
        reqs = (cfg.edit_data, cfg.n_edits, cfg.edit_offset)
        ev = canonical_json(cfg.to_dict()["evaluate"])
        overrides = _edit_overrides(cfg)
        if cfg.edit_method in ("memit", "alphaedit", "rome"):
            layers = canonical_json(cfg.edit.get("layers"))
            add(
                ("statistic", m, layers), m, "statistic", STATISTIC_SECONDS * _statistic_factor(cfg)
            )
            if cfg.edit_method != "rome" and not cfg.edit_batch_size:
                common = canonical_json(_common_overrides(cfg))
                add(
                    ("targets", m, reqs, common, cfg.edit_seed),
                    m,
                    "targets",
                    Z_SECONDS_PER_EDIT * _n_requests(cfg),
                )
        edit = ("edit", m, cfg.edit_method, reqs, overrides, cfg.edit_batch_size)
        add(edit, m, "edit", _edit_seconds(cfg))
        evaluate = _evaluate_seconds(cfg)
        add(("evaluate", m, "M", reqs, ev), m, "evaluate", evaluate)
        add(("evaluate", edit, "M_ed", ev), m, "evaluate", evaluate)
        if cfg.ft_method == "none":
            continue
        ft = (
            cfg.ft_method,
            cfg.ft_layers_label,
            canonical_json(cfg.finetune),
            cfg.seed,
            cfg.ft_data,
            cfg.ft_examples,
            canonical_json(cfg.edit.get("layers")) if cfg.ft_layers_label != "all" else "",
        )
        rate = FT_TOKENS_PER_SECOND.get(cfg.ft_method, FT_TOKENS_PER_SECOND["lora"])
        # the base model is fine-tuned plainly whatever the preservation option (stages.plan)
        ft_base, ft_edited = ("finetune", m, ft, reqs), ("finetune", edit, ft, cfg.ft_preserve)
        add(ft_base, m, "finetune", _ft_tokens(cfg) / rate)
        add(ft_edited, m, "finetune", _ft_tokens(cfg, edited=True) / rate)
        steps = sorted({int(s) for s in cfg.finetune.get("checkpoint_steps", ())})
        for step in [*steps, "final"]:
            add(("evaluate", ft_base, step, ev), m, "evaluate", evaluate)
            add(("evaluate", ft_edited, step, ev), m, "evaluate", evaluate)
    rows = [
        {"model": m, "kind": k, "key": json.dumps(key, default=str), "seconds": s}
        for key, (m, k, s) in seen.items()
    ]
    return pd.DataFrame(rows, columns=["model", "kind", "key", "seconds"])


def estimate_seconds(study: Study) -> float:
    """Estimated wall time of `study` on the project's 2-core CPU, every stage computed once.

    Cost model (measured, see the constants of this module): z optimisation 2.45 s per edit (shared
    by MEMIT and AlphaEdit), 0.21 s per edit for the keys and solve, 107 s per statistic (both at
    SmolLM2's layers 4-8, scaled by the depth the forwards reach for other layers); fine-tuning
    at 150 (LoRA), 105 (DoRA) or 137 (full) tokens/s in fp32 with ~100 tokens per commonsense
    example and ~75 per HotpotQA example; each evaluation 0.25 s per edit + 0.64 s per DS item (both
    protocols; 7 tasks) + 3 s per 1,000 perplexity tokens, each times the model's `relative_cost`.
    Model loading is not counted.
    """
    return float(planned_stages(study.configs)["seconds"].sum())


def estimate_table(study: Study) -> pd.DataFrame:
    """Per model: configurations, distinct stages by kind, and the estimated hours."""
    stages = planned_stages(study.configs)
    records = []
    for model in dict.fromkeys(c.model for c in study.configs):
        rows = stages[stages["model"] == model]
        record: dict[str, object] = {
            "model": model,
            "configs": sum(c.model == model for c in study.configs),
        }
        for kind in ("statistic", "targets", "edit", "finetune", "evaluate"):
            record[kind] = int((rows["kind"] == kind).sum())
        record["hours"] = float(rows["seconds"].sum()) / 3600
        records.append(record)
    return pd.DataFrame.from_records(records)


def hours_left(study: Study, plan) -> pd.DataFrame:
    """Per model: the plan's stages, those already in its store, and the estimated hours left.

    `plan` is the study's `StudyPlan`. The cost model keys stages without loading a model, so it
    cannot tell which of its stages the store holds; each kind's estimated hours are scaled by the
    share of that kind's stages still to run.
    """
    estimated = planned_stages(study.configs)
    pending = {s.key for s in plan.pending()}
    of_model: dict[str, dict[str, str]] = {}  # model -> stage key -> kind
    for pc in plan.configs:
        of_model.setdefault(pc.config.model, {}).update(
            {s.key: s.kind for s in walk(pc.stages.values())}
        )  # and their inputs
    records = []
    for model, kinds in of_model.items():
        stages = pd.Series(kinds, dtype=str)
        left = stages[stages.index.isin(pending)]
        rows = estimated[estimated["model"] == model]
        hours = 0.0
        for kind, seconds in rows.groupby("kind")["seconds"].sum().items():
            total = int((stages == kind).sum())
            if total:
                hours += seconds / 3600 * int((left == kind).sum()) / total
        records.append(
            {"model": model, "stages": len(stages), "done": len(stages) - len(left),
             "to run": len(left), "hours left": hours}
        )  # fmt: skip
    return pd.DataFrame.from_records(records)


def describe(study: Study) -> pd.DataFrame:
    """Configurations per model and grid block (for --dry-run)."""
    counts: dict[tuple[str, str], int] = {}
    for cfg in study.configs:
        block = _block_of(cfg)
        counts[(cfg.model, block)] = counts.get((cfg.model, block), 0) + 1
    return pd.DataFrame([{"model": m, "block": b, "configs": n} for (m, b), n in counts.items()])


def _block_of(cfg: RunConfig) -> str:
    if cfg.edit_method == "mend":
        return "MEND"
    if cfg.edit_layers_label:
        return "edit layers"
    if cfg.ft_method == "none":
        return "edited, no FT"
    if cfg.ft_data == "hotpotqa":
        return "HotpotQA FT"
    if cfg.ft_layers_label != "all":
        return "selective layers"
    if cfg.seed != 0:
        return "seed replicates"
    return "LoRA / DoRA / full FT"
