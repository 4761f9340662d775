"""Study files: one TOML file names a base configuration and the axes of a grid over it.

name = "default"
out = "runs/default"            # run directory (relative to the current directory)
snapshot_every = 25             # fine-tuning steps between resumable snapshots (results do not depend on it)

[config]                        # one configuration (every field of RunConfig)
model = "smollm2-135m"
edit_method = "memit"
n_edits = 50
ft_method = "lora"
[config.edit]                   # overrides of the editor's typed config (dotted keys allowed)
[config.edit.alphaedit]         # overrides for one method only
[config.finetune]               # FinetuneConfig fields
max_steps = 20
[config.evaluate]               # EvaluateSettings fields

[grid]                          # axes: the cartesian product of these lists replaces [config]'s values
edit_method = ["memit", "alphaedit"]
ft_method = ["none", "lora", "dora", "full"]
"finetune.lr" = [1e-4, 2e-4]    # nested fields by dotted name

[[extra]]                       # further single configurations (or grids) merged over [config]
ft_layers = ["edited", "non-edited"]
ft_method = "lora"
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .store import canonical_json

FT_METHODS = ("none", "lora", "dora", "full")


@dataclass(frozen=True)
class EvaluateSettings:
    """What is measured on every model state (M, M_ed, M_ft, M_ed_ft)."""

    ds_per_task: int = field(
        default=10, metadata={"help": "commonsense test items per task for DS (0 skips DS)"}
    )
    ds_modes: tuple[str, ...] = field(
        default=("generate", "rank"),
        metadata={
            "help": "'generate' (LLM-Adapters protocol) and/or 'rank' (option log-likelihoods)"
        },
    )
    ds_seed: int = 0
    ds_max_new_tokens: int = 32
    ppl_tokens: int = field(
        default=4096, metadata={"help": "held-out WikiText tokens for perplexity (0 skips)"}
    )
    answer_tokens: int = field(
        default=8,
        metadata={
            "help": "greedy continuation of each rewrite prompt kept for flip examples (0 skips)"
        },
    )


@dataclass(frozen=True)
class RunConfig:
    """One configuration of a study: which model, which edits, which fine-tuning, which seed."""

    model: str = "smollm2-135m"
    edit_method: str = "memit"
    edit_data: str = field(
        default="counterfact", metadata={"help": "dataset name or a path to a request file"}
    )
    n_edits: int = 100
    edit_offset: int = 0
    edit_batch_size: int | None = field(
        default=None, metadata={"help": "sequential batches of this size"}
    )
    edit_seed: int = 0
    edit: dict = field(
        default_factory=dict, metadata={"help": "editor config overrides (dotted keys)"}
    )
    ft_method: str = field(default="lora", metadata={"help": "none, lora, dora or full"})
    ft_data: str = field(
        default="commonsense", metadata={"help": "commonsense, hotpotqa or an instruction file"}
    )
    ft_examples: int | None = field(
        default=1000, metadata={"help": "fine-tuning examples (None = all)"}
    )
    ft_layers: str | tuple[int, ...] = field(
        default="all", metadata={"help": "all, edited, non-edited or a list"}
    )
    seed: int = field(
        default=0, metadata={"help": "fine-tuning seed: data sample, order, adapter init, dropout"}
    )
    finetune: dict = field(default_factory=dict, metadata={"help": "FinetuneConfig overrides"})
    evaluate: EvaluateSettings = EvaluateSettings()

    def __post_init__(self):
        if self.ft_method not in FT_METHODS:
            raise ValueError(
                f"ft_method {self.ft_method!r} unknown; use one of {', '.join(FT_METHODS)}"
            )
        if self.n_edits <= 0:
            raise ValueError(f"n_edits must be positive, got {self.n_edits}")
        if isinstance(self.ft_layers, (list, tuple)):
            object.__setattr__(self, "ft_layers", tuple(int(x) for x in self.ft_layers))
        elif not isinstance(self.ft_layers, str):
            raise ValueError(
                f"ft_layers must be all, edited, non-edited or a list of layers, got {self.ft_layers!r}"
            )
        if not self.edit_batch_size or self.edit_batch_size >= self.n_edits:
            object.__setattr__(self, "edit_batch_size", None)  # one batch, however it was written
        for name in ("edit_data", "ft_data"):
            value = getattr(self, name)
            if Path(value).is_file():
                object.__setattr__(self, name, str(Path(value).resolve()))
        if (
            self.ft_method == "none"
        ):  # fine-tuning settings mean nothing here: one configuration, not many
            for name in ("ft_data", "ft_examples", "ft_layers", "seed", "finetune"):
                object.__setattr__(self, name, copy.deepcopy(_DEFAULTS[name]))

    def to_dict(self) -> dict:
        return json.loads(canonical_json(asdict(self)))

    @property
    def ft_layers_label(self) -> str:
        return (
            self.ft_layers
            if isinstance(self.ft_layers, str)
            else ",".join(map(str, self.ft_layers))
        )

    @property
    def config_id(self) -> str:
        """Readable and unique: the main axes, then a hash of the whole configuration."""
        digest = hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()[:6]
        data = (
            Path(self.edit_data).stem
            if ("/" in self.edit_data or self.edit_data.endswith(".json"))
            else self.edit_data
        )
        ft = (
            "noft"
            if self.ft_method == "none"
            else f"{self.ft_method}-{_slug(self.ft_data)}-{self.ft_layers_label}"
        )
        return f"{_slug(self.model)}.{self.edit_method}-{_slug(data)}{self.n_edits}.{ft}.s{self.seed}.{digest}"

    def columns(self) -> dict:
        """The columns every result row of this configuration carries."""
        return {
            "config_id": self.config_id,
            "model": self.model,
            "edit_method": self.edit_method,
            "edit_data": self.edit_data,
            "n_edits": self.n_edits,
            "ft_method": self.ft_method,
            "ft_data": self.ft_data if self.ft_method != "none" else "",
            "ft_layers": self.ft_layers_label,
            "seed": self.seed,
        }

    @staticmethod
    def from_dict(d: dict) -> RunConfig:
        known = {f.name for f in fields(RunConfig)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown configuration field(s) {unknown}; known: {', '.join(sorted(known))}"
            )
        d = dict(d)
        if "evaluate" in d:
            ev = dict(d["evaluate"])
            bad = sorted(set(ev) - {f.name for f in fields(EvaluateSettings)})
            if bad:
                raise ValueError(f"unknown evaluate setting(s) {bad}")
            if "ds_modes" in ev:
                ev["ds_modes"] = tuple(ev["ds_modes"])
            d["evaluate"] = EvaluateSettings(**ev)
        return RunConfig(**d)


_DEFAULTS = {
    "ft_data": "commonsense",
    "ft_examples": 1000,
    "ft_layers": "all",
    "seed": 0,
    "finetune": {},
}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in str(text)).strip("-")


@dataclass
class Study:
    name: str
    out: Path
    configs: list[RunConfig]
    source: dict  # the parsed study file, recorded with the results
    snapshot_every: int = 25

    @staticmethod
    def load(path: str | Path, out: str | Path | None = None) -> Study:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"study file {path}: {e}") from None
        return Study.from_dict(raw, out=out, default_name=path.stem)

    @staticmethod
    def from_dict(raw: dict, out: str | Path | None = None, default_name: str = "study") -> Study:
        unknown = sorted(
            set(raw) - {"name", "out", "config", "grid", "extra", "description", "snapshot_every"}
        )
        if unknown:
            raise ValueError(
                f"unknown study section(s) {unknown}; use name, out, config, grid, extra"
            )
        base = raw.get("config", {})
        blocks = [raw.get("grid", {})] + list(raw.get("extra", []))
        configs: list[RunConfig] = []
        seen: set[str] = set()
        for block in blocks:
            for cfg in expand(base, block):
                if cfg.config_id not in seen:
                    seen.add(cfg.config_id)
                    configs.append(cfg)
        name = raw.get("name", default_name)
        return Study(
            name,
            Path(out or raw.get("out", f"runs/{name}")),
            configs,
            raw,
            int(raw.get("snapshot_every", 25)),
        )


def expand(base: dict, axes: dict) -> list[RunConfig]:
    """The cartesian product of `axes` (lists; scalars are single values) applied over `base`."""
    names = list(axes)
    values = [
        v if isinstance(v, list) and not _one_layer_list(k, v) else [v] for k, v in axes.items()
    ]
    out = []
    for combo in itertools.product(*values) if names else [()]:
        d = copy.deepcopy(base)
        for k, v in zip(names, combo):
            _set_dotted(d, k, v)
        out.append(RunConfig.from_dict(d))
    return out


def _one_layer_list(key: str, value: list) -> bool:
    """`ft_layers = [10, 11]` is one explicit layer list, not an axis (an axis of lists is a list of lists)."""
    return key == "ft_layers" and bool(value) and all(isinstance(x, int) for x in value)


def _set_dotted(d: dict, key: str, value) -> None:
    head, _, rest = key.partition(".")
    if rest and head not in ("edit", "finetune", "evaluate"):
        raise ValueError(f"grid axis {key!r}: only edit.*, finetune.* and evaluate.* may be dotted")
    if rest:
        d.setdefault(head, {})[rest] = value  # editor overrides keep their own dotted names
    elif isinstance(value, dict) and isinstance(d.get(head), dict):
        merged = dict(
            d[head]
        )  # a table in [grid] / [[extra]] is merged over [config]'s, key by key
        for k, v in value.items():
            merged[k] = (
                {**merged[k], **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
            )
        d[head] = merged
    else:
        d[head] = value
