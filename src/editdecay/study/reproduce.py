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
``medium``  200 edits with every fine-tuning method and 600 with LoRA, 500 fine-tuning examples
            (62 steps of batch 8 at the small scale's rates), DS on 10 items per task, seeds 0-2
            with LoRA, the selective-layer block on CounterFact and zsRE: about 8 hours of
            SmolLM2-135M on a 2-core CPU, sized so the paired bands can decide claims 2-5, 7, 9
            and 10 (see the comment above `MEDIUM` in :mod:`.scales`).
``paper``   PAPER Table 1: 100 / 1,000 / 10,000 edits, the paper's fine-tuning recipe per method
            (`FinetuneConfig.recipe_for`: LoRA/DoRA r 32, alpha 64, lr 2e-4, 3 epochs, batch 16,
            cutoff 256, 100 warm-up steps, 120 validation examples, best checkpoint by validation
            loss; full FT lr 5e-6, batch 32, 2 epochs, cutoff 1024, warm-up ratio 0.1, weight decay
            0.01) on all of the bundled Commonsense training data, bf16 autocast, seeds 0-2 for
            LoRA and DoRA (order and initialisation; the data fixed), 4-beam DS, zsRE toward
            `answers[0]`, the HotpotQA rows of Table 9 and the selective-layer runs of Table 7.
            Meant for GPUs. What still differs from the paper: :data:`PAPER_DEPARTURES`.

Every scale holds what each claim of PAPER §4 needs (see :data:`BLOCK_PURPOSES`): MEMIT and
AlphaEdit on CounterFact and zsRE at two or more edit counts; no FT, LoRA, DoRA and full FT on
Commonsense; HotpotQA fine-tuning on a subset; LoRA on the edited and on the non-edited layers only
(AlphaEdit, CounterFact); a second fine-tuning seed on a subset; MEND (no FT and DoRA, as in the
paper's Table 3) for the models that have a trained MEND editor; edit-only MEMIT and AlphaEdit on
CounterFact at two batch sizes on the default edit layers and on the model's top layers (claim 14).
`--blocks` runs some of these blocks alone (:data:`BLOCK_NAMES`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from ..config_types import field_default
from ..finetuning.tuner import FinetuneConfig
from ..schema import LOCATE_THEN_EDIT
from .config import RunConfig, Study
from .estimate import (  # the grid's cost model, part of this module's API (see __all__)
    BUNDLED_EDIT_RECORDS,
    SMALL_BUDGET_HOURS,
    describe,
    estimate_seconds,
    estimate_table,
    planned_stages,
    relative_cost,
)
from .scales import MEDIUM, PAPER, PAPER_DEPARTURES, SCALE_SETTINGS, SMALL, ScaleSettings  # noqa: F401

SCALES = ("small", "medium", "paper")
DEFAULT_SCALE = "small"
DEFAULT_MODELS = ("smollm2-135m", "gemma3-270m")
DEFAULT_OUT = Path("runs/reproduction")  # results/ holds the committed reproduction
EDIT_DATA = ("counterfact", "zsre")

# Editor overrides per model, applied to every configuration of that model (dotted keys as in a
# study's [config.edit] table; a table named after a method applies to that method only). Empty:
# `default_config` gives each bundled model its edit layers, and the remaining defaults suit both bundled
# models (docs/hyperparameters.md, "Gemma-3 270M").
EDIT_OVERRIDES: dict[str, dict] = {
    "gemma3-270m": {},
}


# What each block of the grid is for (the PAPER §4 claim numbers it serves).
BLOCK_PURPOSES = {
    "edited, no FT": "claims 1-6 (ES of M_ed), 14 (edit sanity), 11 (DS of M_ed)",
    "LoRA / DoRA / full FT": "claims 1 (decay), 2 (full vs PEFT), 3 (LoRA vs DoRA), 4 (AlphaEdit vs MEMIT), "
    "5 (edit count), 6 (zsRE vs CF), 7 (EFR vs ΔES), 11 (DS degradation), t-tests",
    "HotpotQA FT": "claim 9 (knowledge-rich FT data)",
    "selective layers": "claim 10 (LoRA on edited / non-edited layers, AlphaEdit; CounterFact, and zsRE "
    "at medium scale)",
    "seed replicates": "claim 15 and the noise level every verdict is judged against",
    "MEND": "PAPER Table 3 (MEND, no FT and DoRA); only for models with a trained MEND editor",
    "edit layers": "claim 14 (edit-only MEMIT and AlphaEdit on CounterFact at two batch sizes, on the "
    "default edit layers and on a window as wide at the top of the model)",
}
# `editdecay reproduce --blocks`: a short name per block
BLOCK_NAMES = {
    "edited": "edited, no FT",
    "ft-methods": "LoRA / DoRA / full FT",
    "hotpotqa": "HotpotQA FT",
    "selective-layers": "selective layers",
    "seeds": "seed replicates",
    "mend": "MEND",
    "edit-layers": "edit layers",
}


def moved_edit_layers(model: str) -> tuple[int, ...]:
    """The claim-14 window: as many layers as the model's default edit layers, at the top of the
    model, where the keys no longer carry the subject (empty for a model outside the registry).

    It ends one layer below the last, as every window must (editing/config.py `default_layers`): z
    at the last block could not reach the target positions at all, which would make the collapse
    mechanical rather than a consequence of where the facts are read."""
    from ..models.registry import REGISTRY

    spec = REGISTRY.get(model)
    if spec is None or not spec.n_layers or not spec.default_edit_layers:
        return ()
    width = len(spec.default_edit_layers)
    return tuple(range(spec.n_layers - 1 - width, spec.n_layers - 1))


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

    def edit_data(d: str) -> dict:
        """The data axes of a block: the set, and zsRE's target when the scale sets one."""
        target = {"zsre_target": s.zsre_target} if d == "zsre" and s.zsre_target != "alt" else {}
        return {"edit_data": name[d], **target}

    def ft_block(method: str) -> dict:
        block: dict = {"ft_method": method}
        if method != "none" and s.recipe:
            block.update({f"finetune.{k}": v for k, v in FinetuneConfig.recipe_for(method).items()})
        if method != "none" and method in s.lr:
            block["finetune.lr"] = s.lr[method]
        return block

    def sized(pairs: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for d, n in pairs:
            if _fits(d, n, data):
                out.setdefault(d, []).append(n)
        return out

    replicate_data = (
        {"data_seed": s.replicate_data_seed} if s.replicate_data_seed is not None else {}
    )
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
                **edit_data(d),
                "n_edits": counts,
            }
            blocks.append(("edited, no FT", {**axes, **ft_block("none")}))
            for method in ("lora", "dora", "full"):
                blocks.append(("LoRA / DoRA / full FT", {**axes, **ft_block(method)}))
        for d, counts in sized((d, n) for d in EDIT_DATA for n in s.count_edits).items():
            axes = {
                **per_model,
                "edit_method": list(LOCATE_THEN_EDIT),
                **edit_data(d),
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
                                **edit_data(d),
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
                            **edit_data(d),
                            "n_edits": counts,
                            **ft_block("lora"),
                            "ft_data": "hotpotqa",
                        },
                    )
                )
        for d, counts in sized((d, n) for d in s.selective_data for n in s.selective_edits).items():
            blocks.append(
                (
                    "selective layers",
                    {
                        **per_model,
                        "edit_method": "alphaedit",
                        **edit_data(d),
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
                            **edit_data(d),
                            "n_edits": counts,
                            **ft_block(method),
                            "seed": list(s.seeds),
                            **replicate_data,
                        },
                    )
                )
        moved = moved_edit_layers(model)
        for d, counts in sized(("counterfact", n) for n in s.layer_edits).items():
            axes = {
                **per_model,
                "edit_method": list(LOCATE_THEN_EDIT),
                **edit_data(d),
                "n_edits": counts,
                **ft_block("none"),
            }
            blocks.append(("edit layers", axes))
            if moved:
                blocks.append(("edit layers", {**axes, "edit.layers": [list(moved)]}))
        if mend_available(model):
            for d, counts in sized((d, n) for d in EDIT_DATA for n in s.mend_edits).items():
                for method in ("none", "dora"):
                    blocks.append(
                        (
                            "MEND",
                            {
                                **per_model,
                                "edit_method": "mend",
                                **edit_data(d),
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
    only: Iterable[str] | None = None,
) -> dict:
    """The grid as a study description: what a study TOML would hold (recorded in results/study.json).

    `only` keeps the blocks of those short names (:data:`BLOCK_NAMES`); None keeps every block."""
    s = SCALE_SETTINGS.get(scale)
    if s is None:
        raise ValueError(f"unknown scale {scale!r}; use one of {', '.join(SCALES)}")
    blocks = grid_blocks(scale, models, mend_available, data)
    if only is not None:
        wanted = {block_purpose(name) for name in only}
        blocks = [b for b in blocks if b[0] in wanted]
        if not blocks:
            raise ValueError(f"--blocks {','.join(only)}: no configuration at scale {scale}")
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
        "analyse": dict(s.analyse),
    }


def block_purpose(name: str) -> str:
    """The block of a `--blocks` name; an unknown name is refused with the known ones."""
    key = name.strip().lower()
    if key not in BLOCK_NAMES:
        raise ValueError(f"--blocks: unknown block {name!r}; use {', '.join(BLOCK_NAMES)}")
    return BLOCK_NAMES[key]


def reproduction_study(
    scale: str,
    models: list[str],
    out: Path,
    *,
    mend_available: Callable[[str], bool] | None = None,
    data: dict[str, str] | None = None,
    only: Iterable[str] | None = None,
) -> Study:
    """The reproduction grid for `models` at `scale`, as a Study writing into `out`.

    `mend_available(model)` decides whether MEND configurations are added (default: a trained editor
    exists in the cache, :func:`mend_trained`); `data` maps "counterfact" / "zsre" to request files
    that replace the bundled sets (e.g. a zsRE file with 10,000+ records for the paper scale).
    """
    return Study.from_dict(study_source(scale, models, out, mend_available, data, only), out=out)


__all__ = [
    "BLOCK_NAMES",
    "DEFAULT_MODELS",
    "DEFAULT_OUT",
    "PAPER_DEPARTURES",
    "SCALES",
    "SCALE_SETTINGS",
    "SMALL_BUDGET_HOURS",
    "ScaleSettings",
    "describe",
    "estimate_seconds",
    "estimate_table",
    "grid_blocks",
    "planned_stages",
    "relative_cost",
    "reproduction_study",
    "study_source",
]
