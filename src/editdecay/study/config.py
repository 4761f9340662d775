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

Every value is checked against its field's type, choices and range when the study is loaded (before
any model loads): a wrong one is a ConfigError naming the field and the block it was written in.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ..attacks.probes import AttackKind
from ..config_types import (
    ConfigError,
    build,
    check_fields,
    check_value,
    drop_defaults,
    field_default,
)
from ..data.loaders import ZSRE_TARGETS
from ..editing.config import EDIT_METHODS, EditMethod, check_overrides, has_field
from ..finetuning.preserve import PreserveMode
from ..finetuning.tuner import FinetuneConfig, LayerChoice
from ..models.registry import DEFAULT_MODEL
from ..schema import FT_METHODS, FT_NONE
from .settings import AnalyseSettings, EvaluateSettings  # noqa: F401  (re-exported)
from .store import canonical_json

FtMethod = Literal[FT_METHODS]
ZsreTarget = Literal[ZSRE_TARGETS]


# fields written into hashed dicts only when set away from their defaults
RUN_ADDED = ("data_seed", "zsre_target", "attack", "attack_settings", "ft_preserve")


# reset to their defaults when ft_method is "none": fine-tuning settings then mean nothing, and
# one configuration must not become many
FT_ONLY_FIELDS = (
    "ft_data",
    "ft_examples",
    "ft_layers",
    "ft_preserve",
    "seed",
    "data_seed",
    "finetune",
)


@dataclass(frozen=True)
class RunConfig:
    """One configuration of a study: which model, which edits, which fine-tuning, which seed."""

    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "registered model name, HF model directory or cached HF id"},
    )
    edit_method: EditMethod = field(
        default="memit", metadata={"help": "memit, alphaedit, rome or mend"}
    )
    edit_data: str = field(
        default="counterfact", metadata={"help": "dataset name or a path to a request file"}
    )
    n_edits: int = field(default=100, metadata={"help": "edit requests", "ge": 1})
    edit_offset: int = field(default=0, metadata={"help": "valid records skipped first", "ge": 0})
    edit_batch_size: int | None = field(
        default=None,
        metadata={"help": "sequential batches of this size (None or 0: one batch)", "ge": 0},
    )
    zsre_target: ZsreTarget = field(
        default="alt",
        metadata={
            "help": "zsRE edit target: 'alt' (the MEND split's alternative answer) or 'answer' "
            "(answers[0], the paper's code)"
        },
    )
    attack: AttackKind | None = field(
        default=None,
        metadata={
            "help": "plant this attack instead of edit_data's requests: backdoor, task-backdoor, "
            "misinformation or bias (editdecay/attacks/)"
        },
    )
    attack_settings: dict = field(
        default_factory=dict,
        metadata={
            "help": "the attack kind's settings (e.g. trigger, n_edit; see `editdecay attack`)"
        },
    )
    edit_seed: int = field(default=0, metadata={"help": "seed of the editor's context templates"})
    edit: dict = field(
        default_factory=dict,
        metadata={
            "help": "editor config overrides (dotted keys; a table named after a method applies to it only)"
        },
    )
    ft_method: FtMethod = field(
        default="lora",
        metadata={"help": "none, lora, dora or full"},
    )
    ft_data: str = field(
        default="commonsense", metadata={"help": "commonsense, hotpotqa or an instruction file"}
    )
    ft_examples: int | None = field(
        default=1000, metadata={"help": "fine-tuning examples (None = all)", "ge": 1}
    )
    ft_layers: LayerChoice | tuple[int, ...] = field(
        default="all", metadata={"help": "all, edited, non-edited or a list", "ge": 0}
    )
    ft_preserve: PreserveMode = field(
        default="none",
        metadata={
            "help": "edit-preserving fine-tuning of the edited model: none, subspace, activation, "
            "freeze or paraphrase (its settings: finetune.preserve)"
        },
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "fine-tuning seed: order, adapter init, dropout (and the data when data_seed is None)"
        },
    )
    data_seed: int | None = field(
        default=None,
        metadata={"help": "seed of the fine-tuning data sample and validation split (None: seed)"},
    )
    finetune: dict = field(default_factory=dict, metadata={"help": "FinetuneConfig overrides"})
    evaluate: EvaluateSettings = EvaluateSettings()

    field_noun = "configuration field"

    def __post_init__(self):
        check_fields(self)
        self._check_edit()
        try:
            FinetuneConfig.check_overrides(self.finetune)
        except ConfigError as err:
            raise err.within("finetune") from None
        if not self.edit_batch_size or self.edit_batch_size >= self.n_edits:
            object.__setattr__(self, "edit_batch_size", None)  # one batch, however it was written
        for name in ("edit_data", "ft_data"):
            value = getattr(self, name)
            if Path(value).is_file():
                object.__setattr__(self, name, str(Path(value).resolve()))
        if self.ft_method == FT_NONE:
            for name in FT_ONLY_FIELDS:
                object.__setattr__(self, name, field_default(RunConfig, name))
        if self.attack is not None:
            self._check_attack()
        elif self.attack_settings:
            raise ConfigError("attack_settings", "given without an attack kind (set `attack`)")

    def _check_attack(self) -> None:
        """An attack configuration edits its attack set: the editor must plant it, and its label
        columns say which attack (edit_data "attack:<kind>", n_edits the set's requests)."""
        from ..attacks.run import attack_requests, check_attack_settings

        if self.edit_method == "mend":
            raise ConfigError(
                "edit_method", "mend cannot plant an attack: use memit, alphaedit or rome"
            )
        if self.edit_batch_size:
            raise ConfigError("edit_batch_size", "an attack is planted in one batch")
        try:
            check_attack_settings(self.attack, self.attack_settings)
        except ConfigError as err:
            raise err.within("attack_settings") from None
        object.__setattr__(self, "edit_data", f"attack:{self.attack}")
        object.__setattr__(self, "n_edits", attack_requests(self.attack, self.attack_settings))

    def editor_overrides(self, method: str | None = None) -> dict:
        """The `edit` overrides that apply to `method` (default: this configuration's): plain keys
        apply to every method, a table named after a method (`[config.edit.alphaedit]`) or a key
        prefixed with it (`alphaedit.nullspace_threshold`, as a grid axis writes it) to that one."""
        method = method or self.edit_method
        return {**self._plain_edit(), **self._own_edit(method)}

    def _plain_edit(self) -> dict:
        return {k: v for k, v in self.edit.items() if k.partition(".")[0] not in EDIT_METHODS}

    def _own_edit(self, method: str) -> dict:
        own = {}
        for key, value in self.edit.items():
            head, _, rest = key.partition(".")
            if key == method:
                own.update(value)
            elif head == method and rest:
                own[rest] = value
        return own

    def _check_edit(self) -> None:
        """The editor overrides against the editor configs: this method's, and those of every method
        with a table of its own. A plain key that no editor has is refused; one that only other
        editors have is left to the plan, which refuses it for this method (as it always did)."""
        for key, value in self.edit.items():
            if key in EDIT_METHODS and not isinstance(value, dict):
                raise ConfigError(
                    f"edit.{key}", f"expected a table of {key} settings, got {value!r}"
                )
        plain = self._plain_edit()
        for key in plain:
            if not any(has_field(method, key) for method in EDIT_METHODS):
                check_overrides(self.edit_method, {key: plain[key]}, "edit")  # unknown: refused
        for method in EDIT_METHODS:
            own = self._own_edit(method)
            if method == self.edit_method or own:
                known = {k: v for k, v in plain.items() if has_field(method, k)}
                name = "edit" if method == self.edit_method else f"edit.{method}"
                check_overrides(method, {**known, **own}, name)

    @property
    def sample_seed(self) -> int:
        """The seed of the fine-tuning data sample."""
        return self.seed if self.data_seed is None else self.data_seed

    def to_dict(self) -> dict:
        d = drop_defaults(self, asdict(self), RUN_ADDED)
        d["evaluate"] = self.evaluate.to_dict()
        return json.loads(canonical_json(d))

    @property
    def ft_layers_label(self) -> str:
        return (
            self.ft_layers
            if isinstance(self.ft_layers, str)
            else ",".join(map(str, self.ft_layers))
        )

    @property
    def edit_layers_label(self) -> str:
        """The layers this configuration's editor is told to edit, space-separated ("" = its default)."""
        layers = self.editor_overrides().get("layers")
        return " ".join(str(int(x)) for x in layers) if layers else ""

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
        if self.ft_preserve != "none":
            ft += f"-keep-{self.ft_preserve}"
        return f"{_slug(self.model)}.{self.edit_method}-{_slug(data)}{self.n_edits}.{ft}.s{self.seed}.{digest}"

    def columns(self) -> dict:
        """The columns every result row of this configuration carries."""
        return {
            "config_id": self.config_id,
            "model": self.model,
            "edit_method": self.edit_method,
            "edit_data": self.edit_data,
            "n_edits": self.n_edits,
            "edit_layers": self.edit_layers_label,
            "ft_method": self.ft_method,
            "ft_data": self.ft_data if self.ft_method != "none" else "",
            "ft_layers": self.ft_layers_label,
            "ft_preserve": self.ft_preserve,
            "seed": self.seed,
        }

    @staticmethod
    def from_dict(d: dict) -> RunConfig:
        """A configuration from a study's table; unknown keys and ill-typed values are ConfigErrors."""
        return build(RunConfig, check_value(d, dict, ""))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in str(text)).strip("-")


STUDY_KEYS = (
    "name",
    "out",
    "description",
    "snapshot_every",
    "config",
    "grid",
    "extra",
    "analyse",
)


@dataclass
class Study:
    name: str
    out: Path
    configs: list[RunConfig]
    source: dict = field(metadata={"help": "the parsed study file, recorded with the results"})
    snapshot_every: int = field(
        default=25,
        metadata={
            "help": "fine-tuning steps between resumable snapshots (results do not depend on it; 0: none)",
            "ge": 0,
        },
    )
    analyse: AnalyseSettings | None = field(
        default=None,
        metadata={"help": "the [analyse] table: activation analysis after the run (None: not run)"},
    )

    def __post_init__(self):
        check_fields(self)

    @staticmethod
    def load(path: str | Path, out: str | Path | None = None) -> Study:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"study file {path}: {e}") from None
        try:
            return Study.from_dict(raw, out=out, default_name=path.stem)
        except ConfigError as err:
            raise err.located(f"{err.where} of {path}" if err.where else str(path)) from None

    @staticmethod
    def from_dict(raw: dict, out: str | Path | None = None, default_name: str = "study") -> Study:
        unknown = sorted(set(raw) - set(STUDY_KEYS))
        if unknown:
            raise ValueError(f"unknown study section(s) {unknown}; use {', '.join(STUDY_KEYS)}")
        for key, tp in (("name", str), ("out", str), ("description", str), ("config", dict)):
            if key in raw:
                check_value(raw[key], tp, key)
        base = raw.get("config", {})
        grid = check_value(raw.get("grid", {}), dict, "grid")
        extra = check_value(raw.get("extra", []), list[dict], "extra")
        blocks = [("[grid]", grid)] + [(f"[[extra]] {i}", b) for i, b in enumerate(extra, 1)]
        configs: list[RunConfig] = []
        seen: set[str] = set()
        for where, block in blocks:
            with _located(where, block):
                expanded = expand(base, block)
            for cfg in expanded:
                if cfg.config_id not in seen:
                    seen.add(cfg.config_id)
                    configs.append(cfg)
        name = raw.get("name", default_name)
        snapshot_every = raw.get("snapshot_every", field_default(Study, "snapshot_every"))
        analyse = (
            build(AnalyseSettings, check_value(raw["analyse"], dict, "analyse"), "analyse")
            if "analyse" in raw
            else None
        )
        return Study(
            name, Path(out or raw.get("out", f"runs/{name}")), configs, raw, snapshot_every, analyse
        )


@contextmanager
def _located(where: str, block: dict) -> Iterator[None]:
    """Name the block a wrong value was written in: the grid/extra block when it sets that field,
    else [config]."""
    try:
        yield
    except ConfigError as err:
        head = err.field.partition(".")[0].partition("[")[0]
        in_block = head in {k.partition(".")[0] for k in block}
        raise err.located(where if in_block else "[config]") from None


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
