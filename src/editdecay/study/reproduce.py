"""`editdecay reproduce`: the study grid that tests the paper's claims on the bundled models.

`reproduction_study(scale, models, out)` writes the grid as a study description (the same
`config` + `extra` blocks a study TOML holds) and expands it with :meth:`Study.from_dict`, so every
configuration is an ordinary :class:`RunConfig` and every stage is shared and cached as in any
other study: one target optimisation for MEMIT and AlphaEdit on the same requests, one edit for
every fine-tuning method and seed, one M_ft for every edit method on the same requests. A rerun of
the same command resumes where the last one stopped.

Scales (configurations per model; `editdecay reproduce --dry-run` prints the counts and the
estimated time of the exact grid):

``small``   50 edits with every fine-tuning method and 150 edits with LoRA (the edit-count
            comparison), 200 fine-tuning examples, one epoch, DS on 5 items per task: a few hours per
            model on a 2-core CPU (see :func:`estimate_seconds`).
``medium``  100 and 500 edits, 1,000 fine-tuning examples (the settings of the bundled
            `ft-methods` study, so their stages are shared through a common `--store`), DS on 10
            items per task, seeds 0-2 on a subset.
``paper``   PAPER Table 1: 100 / 1,000 / 10,000 edits, the paper's fine-tuning recipe (the
            FinetuneConfig defaults: r 32, alpha 64, lr 2e-4 / 5e-6, 3 epochs, batch 16) on all of
            the bundled Commonsense training data, bf16 autocast, seeds 0-2 for LoRA and DoRA, the
            HotpotQA rows of Table 9 and the selective-layer runs of Table 7. Meant for GPUs.

Every scale holds what each claim of PAPER §4 needs (see :data:`BLOCK_PURPOSES`): MEMIT and
AlphaEdit on CounterFact and zsRE at two or more edit counts; no FT, LoRA, DoRA and full FT on
Commonsense; HotpotQA fine-tuning on a subset; LoRA on the edited and on the non-edited layers only
(AlphaEdit, CounterFact); a second fine-tuning seed on a subset; MEND (no FT and DoRA, as in the
paper's Table 3) for the models that have a trained MEND editor.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config_types import ConfigError, build, check_fields, field_default, field_defaults
from ..editing.config import EDIT_METHODS
from ..finetuning.tuner import FinetuneConfig
from ..schema import FT_METHODS, FT_NONE, LOCATE_THEN_EDIT
from .config import EvaluateSettings, RunConfig, Study
from .store import canonical_json

SCALES = ("small", "medium", "paper")
DEFAULT_SCALE = "small"
DEFAULT_MODELS = ("smollm2-135m", "gemma3-270m")
DEFAULT_OUT = Path("results/reproduction")
EDIT_DATA = ("counterfact", "zsre")

# Editor overrides per model, applied to every configuration of that model (dotted keys as in a
# study's [config.edit] table; a table named after a method applies to that method only). Empty:
# `default_config` gives each bundled model its edit layers, and the remaining defaults suit both bundled
# models (docs/hyperparameters.md, "Gemma-3 270M").
EDIT_OVERRIDES: dict[str, dict] = {
    "gemma3-270m": {},
}

# Records in the bundled edit sets: larger edit counts are left out for these datasets (a request
# file with more records can replace a dataset through `reproduction_study(..., data=...)`).
BUNDLED_EDIT_RECORDS = {"counterfact": 10_000, "zsre": 1_000}
# Records in the bundled fine-tuning sets (ft_examples None = all of them).
BUNDLED_FT_RECORDS = {"commonsense": 107_675, "hotpotqa": 7_405}

# --------------------------------------------------------------------------- CPU cost model
# Measured on the project's 2-core CPU with SmolLM2-135M (benchmarks/RESULTS.md, docs/hyperparameters.md).
Z_SECONDS_PER_EDIT = (
    2.8  # target (z) optimisation, shared by MEMIT and AlphaEdit on the same requests
)
KEYS_SECONDS_PER_EDIT = (
    0.21  # keys + solve of a MEMIT/AlphaEdit edit stage (21.3 s + 0.3 s per 100 edits)
)
MEND_SECONDS_PER_EDIT = 0.06  # MEND edit (5.9 s per 100 requests)
ROME_SECONDS_PER_EDIT = 6.5  # ROME, one z optimisation per request
STATISTIC_SECONDS = (
    107.0  # C = E[kk^T] over the WikiText statistic split, once per model and layer set
)
# fp32, batch 16 in micro-batches of 4, unpadded tokens (the 1,000-example ft-methods runs: DoRA 105)
FT_TOKENS_PER_SECOND = {"lora": 150.0, "dora": 105.0, "full": 137.0}
FT_TOKENS_PER_EXAMPLE = {"commonsense": 100.0, "hotpotqa": 75.0}
FT_TOKENS_PER_EXAMPLE_DEFAULT = 100.0
EVAL_SECONDS_PER_EDIT = 0.25  # ES/PS/NS scoring and the greedy answer of one edit
# one commonsense test item per protocol: both together took 1.2 s; split by their single-thread
# times (generate 0.82 s, rank 1.58 s), then rank with one shared row per item (0.46 s single-thread)
DS_SECONDS_PER_ITEM = {"generate": 0.41, "rank": 0.23}
DS_TASKS = 7
PPL_SECONDS_PER_1K_TOKENS = 3.0
SMALL_BUDGET_HOURS = 3.0  # per model, in SmolLM2-135M hours on that CPU (times relative_cost)

# --------------------------------------------------------------------------- the scales


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

    def __post_init__(self):
        check_fields(self)
        try:
            FinetuneConfig.check_overrides(self.finetune)
        except ConfigError as err:
            raise err.within("finetune") from None
        build(EvaluateSettings, self.evaluate, "evaluate")
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

MEDIUM = ScaleSettings(
    n_edits=(100, 500),
    hotpotqa_edits=(100,),
    selective_edits=(100, 500),
    seed_edits=100,
    seeds=(1, 2),
    seed_ft_methods=("lora", "dora"),
    mend_edits=(100, 500),
    ft_examples=1000,
    # the bundled ft-methods / selective-layers studies' settings: the paper's learning rates, one epoch
    finetune={
        "epochs": 1,
        "batch_size": 16,
        "micro_batch_size": 4,
        "warmup_steps": 6,
        "checkpoint_steps": [16, 32],
    },
    lr={},
    evaluate={"ds_per_task": 10, "ppl_tokens": 4096},
)

PAPER = ScaleSettings(
    n_edits=(100, 1000, 10000),
    hotpotqa_edits=(),
    selective_edits=(100, 1000),
    seed_edits=1000,
    seeds=(1, 2),
    seed_ft_methods=("lora", "dora"),
    mend_edits=(1000, 10000),
    ft_examples=None,
    # the paper's recipe is FinetuneConfig's default; bf16 autocast as the paper ("bf16 when available")
    finetune={"precision": "bf16"},
    lr={},
    evaluate={"ds_per_task": 250, "ppl_tokens": 8192},
    # PAPER Table 9's rows: (#edits, KE, data, FT); their Commonsense twins are in the main grid
    hotpotqa_rows=(
        (100, "memit", "zsre", "dora"),
        (10000, "alphaedit", "counterfact", "lora"),
        (1000, "memit", "counterfact", "lora"),
        (1000, "memit", "zsre", "dora"),
    ),
)

SCALE_SETTINGS = {"small": SMALL, "medium": MEDIUM, "paper": PAPER}

# What each block of the grid is for (the PAPER §4 claim numbers it serves).
BLOCK_PURPOSES = {
    "edited, no FT": "claims 1-6 (ES of M_ed), 14 (edit sanity), 11 (DS of M_ed)",
    "LoRA / DoRA / full FT": "claims 1 (decay), 2 (full vs PEFT), 3 (LoRA vs DoRA), 4 (AlphaEdit vs MEMIT), "
    "5 (edit count), 6 (zsRE vs CF), 7 (EFR vs ΔES), 11 (DS degradation), t-tests",
    "HotpotQA FT": "claim 9 (knowledge-rich FT data)",
    "selective layers": "claim 10 (LoRA on edited / non-edited layers, AlphaEdit, CounterFact)",
    "seed replicates": "claim 15 and the noise level every verdict is judged against",
    "MEND": "PAPER Table 3 (MEND, no FT and DoRA); only for models with a trained MEND editor",
}


def mend_trained(model: str) -> bool:
    """Whether a trained MEND editor is where `editdecay edit --method mend` looks for `model`'s
    (`<cache>/mend/<model>/`, see editing/mend/artifact.py). Its fingerprint is checked when the edit runs."""
    from ..editing.mend.artifact import META_FILE, WEIGHTS_FILE, default_editor_dir

    where = default_editor_dir(model)
    return (where / META_FILE).is_file() and (where / WEIGHTS_FILE).is_file()


def _fits(data: str, n: int, data_paths: dict[str, str]) -> bool:
    return data in data_paths or n <= BUNDLED_EDIT_RECORDS.get(data, n)


def grid_blocks(
    scale: str,
    models: Iterable[str],
    mend_available: Callable[[str], bool] | None = None,
    data: dict[str, str] | None = None,
) -> list[tuple[str, dict]]:
    """The grid as (purpose, block) pairs; each block is a study `extra` block (axes over the base)."""
    if scale not in SCALE_SETTINGS:
        raise ValueError(f"unknown scale {scale!r}; use one of {', '.join(SCALES)}")
    models = list(dict.fromkeys(m.strip() for m in models if m and m.strip()))
    if not models:
        raise ValueError("no models given")
    s = SCALE_SETTINGS[scale]
    data = dict(data or {})
    mend_available = mend_available or mend_trained
    name = {d: data.get(d, d) for d in EDIT_DATA}

    def ft_block(method: str) -> dict:
        block: dict = {"ft_method": method}
        if method != "none" and method in s.lr:
            block["finetune.lr"] = s.lr[method]
        return block

    def sized(pairs: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for d, n in pairs:
            if _fits(d, n, data):
                out.setdefault(d, []).append(n)
        return out

    blocks: list[tuple[str, dict]] = []
    for model in models:
        per_model: dict = {"model": model}
        if EDIT_OVERRIDES.get(model):
            per_model["edit"] = EDIT_OVERRIDES[model]
        main = sized((d, n) for d in EDIT_DATA for n in s.n_edits)
        for d, counts in main.items():
            axes = {
                **per_model,
                "edit_method": list(LOCATE_THEN_EDIT),
                "edit_data": name[d],
                "n_edits": counts,
            }
            blocks.append(("edited, no FT", {**axes, **ft_block("none")}))
            for method in ("lora", "dora", "full"):
                blocks.append(("LoRA / DoRA / full FT", {**axes, **ft_block(method)}))
        for d, counts in sized((d, n) for d in EDIT_DATA for n in s.count_edits).items():
            axes = {
                **per_model,
                "edit_method": list(LOCATE_THEN_EDIT),
                "edit_data": name[d],
                "n_edits": counts,
            }
            blocks.append(("edited, no FT", {**axes, **ft_block("none")}))
            for method in s.count_ft_methods:
                blocks.append(("LoRA / DoRA / full FT", {**axes, **ft_block(method)}))
        if s.hotpotqa_rows:
            for n, method, d, ft in s.hotpotqa_rows:
                if _fits(d, n, data):
                    blocks.append(
                        (
                            "HotpotQA FT",
                            {
                                **per_model,
                                "edit_method": method,
                                "edit_data": name[d],
                                "n_edits": n,
                                **ft_block(ft),
                                "ft_data": "hotpotqa",
                            },
                        )
                    )
        else:
            for d, counts in sized((d, n) for d in EDIT_DATA for n in s.hotpotqa_edits).items():
                blocks.append(
                    (
                        "HotpotQA FT",
                        {
                            **per_model,
                            "edit_method": list(LOCATE_THEN_EDIT),
                            "edit_data": name[d],
                            "n_edits": counts,
                            **ft_block("lora"),
                            "ft_data": "hotpotqa",
                        },
                    )
                )
        counts = sized(("counterfact", n) for n in s.selective_edits).get("counterfact", [])
        if counts:
            blocks.append(
                (
                    "selective layers",
                    {
                        **per_model,
                        "edit_method": "alphaedit",
                        "edit_data": name["counterfact"],
                        "n_edits": counts,
                        **ft_block("lora"),
                        "ft_layers": ["edited", "non-edited"],
                    },
                )
            )
        for d, counts in sized((d, s.seed_edits) for d in EDIT_DATA).items():
            for method in s.seed_ft_methods:
                blocks.append(
                    (
                        "seed replicates",
                        {
                            **per_model,
                            "edit_method": list(LOCATE_THEN_EDIT),
                            "edit_data": name[d],
                            "n_edits": counts,
                            **ft_block(method),
                            "seed": list(s.seeds),
                        },
                    )
                )
        if mend_available(model):
            for d, counts in sized((d, n) for d in EDIT_DATA for n in s.mend_edits).items():
                for method in ("none", "dora"):
                    blocks.append(
                        (
                            "MEND",
                            {
                                **per_model,
                                "edit_method": "mend",
                                "edit_data": name[d],
                                "n_edits": counts,
                                **ft_block(method),
                            },
                        )
                    )
    return blocks


def study_source(
    scale: str,
    models: Iterable[str],
    out: Path | str,
    mend_available: Callable[[str], bool] | None = None,
    data: dict[str, str] | None = None,
) -> dict:
    """The grid as a study description: what a study TOML would hold (recorded in results/study.json)."""
    s = SCALE_SETTINGS.get(scale)
    if s is None:
        raise ValueError(f"unknown scale {scale!r}; use one of {', '.join(SCALES)}")
    blocks = grid_blocks(scale, models, mend_available, data)
    base = {
        "edit_data": field_default(RunConfig, "edit_data"),
        "ft_data": field_default(RunConfig, "ft_data"),
        "ft_examples": s.ft_examples,
        "ft_layers": field_default(RunConfig, "ft_layers"),
        "seed": field_default(RunConfig, "seed"),
        "finetune": dict(s.finetune),
        "evaluate": dict(s.evaluate),
    }
    purposes = sorted({p for p, _ in blocks}, key=list(BLOCK_PURPOSES).index)
    description = f"Reproduction of the paper's claims, scale {scale}. Blocks: " + "; ".join(
        f"{p}: {BLOCK_PURPOSES[p]}" for p in purposes
    )
    # the first block is the [grid], the others [[extra]] blocks, each merged over [config]
    return {
        "name": f"reproduction-{scale}",
        "out": str(out),
        "description": description,
        "config": base,
        "grid": blocks[0][1],
        "extra": [block for _, block in blocks[1:]],
    }


def reproduction_study(
    scale: str,
    models: list[str],
    out: Path,
    *,
    mend_available: Callable[[str], bool] | None = None,
    data: dict[str, str] | None = None,
) -> Study:
    """The reproduction grid for `models` at `scale`, as a Study writing into `out`.

    `mend_available(model)` decides whether MEND configurations are added (default: a trained editor
    exists in the cache, :func:`mend_trained`); `data` maps "counterfact" / "zsre" to request files
    that replace the bundled sets (e.g. a zsRE file with 10,000+ records for the paper scale).
    """
    return Study.from_dict(study_source(scale, models, out, mend_available, data), out=out)


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


def _n_requests(cfg: RunConfig) -> int:
    available = BUNDLED_EDIT_RECORDS.get(cfg.edit_data)
    if available is None:
        return cfg.n_edits
    return max(0, min(cfg.n_edits, available - cfg.edit_offset))


_FT_DEFAULTS = field_defaults(FinetuneConfig)


def _ft_tokens(cfg: RunConfig) -> float:
    settings = {**_FT_DEFAULTS, **cfg.finetune}
    examples = (
        cfg.ft_examples if cfg.ft_examples is not None else BUNDLED_FT_RECORDS.get(cfg.ft_data, 0)
    )
    seen = examples * settings["epochs"]
    if settings.get("max_steps"):
        seen = min(seen, settings["max_steps"] * settings["batch_size"])
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
    if cfg.edit_batch_size:  # sequential batches optimise their own targets
        return (Z_SECONDS_PER_EDIT + KEYS_SECONDS_PER_EDIT) * n
    return KEYS_SECONDS_PER_EDIT * n


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
            add(("statistic", m, layers), m, "statistic", STATISTIC_SECONDS)
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
        seconds = _ft_tokens(cfg) / FT_TOKENS_PER_SECOND.get(
            cfg.ft_method, FT_TOKENS_PER_SECOND["lora"]
        )
        ft_base, ft_edited = ("finetune", m, ft, reqs), ("finetune", edit, ft)
        add(ft_base, m, "finetune", seconds)
        add(ft_edited, m, "finetune", seconds)
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

    Cost model (measured, see the constants of this module): z optimisation 2.8 s per edit (shared
    by MEMIT and AlphaEdit), 0.21 s per edit for the keys and solve, 107 s per statistic; fine-tuning
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
    if cfg.ft_method == "none":
        return "edited, no FT"
    if cfg.ft_data == "hotpotqa":
        return "HotpotQA FT"
    if cfg.ft_layers_label != "all":
        return "selective layers"
    if cfg.seed != 0:
        return "seed replicates"
    return "LoRA / DoRA / full FT"


# --------------------------------------------------------------------------- REPRODUCTION.md

from ..report.reproduction import REPRODUCTION_FILE, Reproduction, write_reproduction  # noqa: E402, F401
