"""The settings tables of a study besides its configurations: `[config.evaluate]` (what every
evaluate stage measures) and `[analyse]` (the activation analysis of a finished run)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from ..config_types import check_fields, drop_defaults
from ..schema import DS_MODES

DsMode = Literal[tuple(DS_MODES)]
# fields written into stage keys only when set away from their defaults
EVALUATE_ADDED = ("ds_num_beams",)


@dataclass(frozen=True)
class EvaluateSettings:
    """What is measured on every model state (M, M_ed, M_ft, M_ed_ft)."""

    ds_per_task: int = field(
        default=10,
        metadata={"help": "commonsense test items per task for DS (0 skips DS)", "ge": 0},
    )
    ds_modes: tuple[DsMode, ...] = field(
        default=("generate", "rank"),
        metadata={
            "help": "'generate' (LLM-Adapters protocol) and/or 'rank' (option log-likelihoods)",
            "label": "DS mode",
        },
    )
    ds_seed: int = field(default=0, metadata={"help": "seed of the DS item sample"})
    ds_max_new_tokens: int = field(
        default=32, metadata={"help": "greedy tokens generated per DS answer", "ge": 1}
    )
    ds_num_beams: int = field(
        default=1,
        metadata={
            "help": "beams of the DS generation (1: greedy; the paper's protocol: 4)",
            "ge": 1,
        },
    )
    ppl_tokens: int = field(
        default=4096,
        metadata={
            "help": "held-out WikiText tokens for perplexity (0 skips); shorter than `editdecay edit`'s "
            "because a study measures every state at every checkpoint of every configuration",
            "ge": 0,
        },
    )
    answer_tokens: int = field(
        default=8,
        metadata={
            "help": "greedy continuation of each rewrite prompt kept for flip examples (0 skips)",
            "ge": 0,
        },
    )

    field_noun = "evaluate setting"

    def __post_init__(self):
        check_fields(self)

    def to_dict(self) -> dict:
        """The settings as hashed into stage keys; fields added later are left out at their
        defaults, so every existing configuration keeps its keys."""
        return drop_defaults(self, asdict(self), EVALUATE_ADDED)


@dataclass(frozen=True)
class AnalyseSettings:
    """A study's `[analyse]` table: run the activation analysis (`editdecay analyse`) on the
    finished run before the report is written."""

    max_edits: int = field(
        default=100, metadata={"help": "edit prompts read per configuration", "ge": 1}
    )
    ft_prompts: int = field(
        default=50, metadata={"help": "fine-tuning prompts sampled per configuration", "ge": 0}
    )
    umap: bool = field(
        default=True, metadata={"help": "also write the UMAP projection (needs umap-learn)"}
    )
    known_facts: int = field(
        default=200,
        metadata={
            "help": "facts of the edit set screened for what M already knows, the own-knowledge "
            "baseline (0: none)",
            "ge": 0,
        },
    )

    field_noun = "analyse setting"

    def __post_init__(self):
        check_fields(self)
