"""Typed, documented hyper-parameters for the locate-then-edit methods.

Every field has a default chosen for the bundled SmolLM2-135M (see docs/hyperparameters.md for the
measurements behind them); `for_model` fills in per-model layer choices. Configs round-trip through
plain dicts (JSON/TOML) so they can be stored beside every delta. Every config checks its fields
(types, choices, ranges) when it is built, with the messages of :mod:`editdecay.config_types`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from ..config_types import (
    ConfigError,
    build,
    check_fields,
    check_value,
    expected,
    field_type,
    require,
    unknown_field,
)
from .statistics import StatisticSpec

NullspaceRule = Literal["relative", "absolute", "keep"]


@dataclass(frozen=True)
class TargetConfig:
    """Optimisation of the target residual vectors z (MEMIT §1.4)."""

    lr: float = field(default=0.5, metadata={"help": "Adam learning rate for δ (v_lr)", "gt": 0})
    steps: int = field(
        default=25,
        metadata={"help": "maximum optimisation steps per request (v_num_grad_steps)", "ge": 1},
    )
    clamp_norm_factor: float = field(
        default=4.0, metadata={"help": "‖δ‖ ≤ factor·‖h_init‖ after every step", "gt": 0}
    )
    weight_decay: float = field(
        default=1e-3,
        metadata={"help": "v_weight_decay; the term is wd·‖δ‖/‖h_init‖² (P15)", "ge": 0},
    )
    kl_factor: float = field(
        default=0.0625,
        metadata={"help": "weight of KL(now‖init) on the '{subject} is a' prompt", "ge": 0},
    )
    early_stop_loss: float = field(
        default=5e-2,
        metadata={"help": "a request stops once its total loss is below this", "ge": 0},
    )
    batch_requests: int = field(
        default=64, metadata={"help": "requests optimised together (memory ∝ this)", "ge": 1}
    )
    reuse_prefix: bool = field(
        default=True,
        metadata={
            "help": "compute the positions before the subject's last token once and reuse their keys/values"
        },
    )

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class TemplateConfig:
    """Context templates prefixed to every prompt for keys and targets (MEMIT §1.2), seeded (P12)."""

    seed_words: tuple[str, ...] = field(
        default=("The", "Therefore", "Because", "I", "You"),
        metadata={"help": "each template continues one of these words"},
    )
    length: int = field(default=10, metadata={"help": "tokens generated per template", "ge": 1})
    top_k: int = field(default=5, metadata={"help": "top-k sampling of the continuation", "ge": 1})
    seed: int = field(default=0, metadata={"help": "seed of the sampling"})

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class LocateEditConfig:
    """Shared by the locate-then-edit methods: which MLP out-projections, and how z and K are found."""

    layers: tuple[int, ...] = field(
        default=(4, 5, 6, 7, 8), metadata={"help": "edited layers; z at the last", "ge": 0}
    )
    targets: TargetConfig = TargetConfig()
    templates: TemplateConfig = TemplateConfig()
    statistic: StatisticSpec = StatisticSpec()

    method = "locate-edit"

    def __post_init__(self):
        check_fields(self)
        if not self.layers:
            raise expected("layers", "at least one layer", self.layers)
        _check_statistic(self.statistic)

    @classmethod
    def layers_from_window(cls, window: tuple[int, ...]) -> tuple[int, ...]:
        """This method's edit layers, given the model's MEMIT-style layer window."""
        return tuple(window)

    @property
    def z_layer(self) -> int:
        return max(self.layers)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = list(self.layers)
        d["templates"]["seed_words"] = list(self.templates.seed_words)
        return d

    @classmethod
    def from_dict(cls, d: dict):
        return build(cls, d)

    def with_overrides(self, **kw):
        """Override fields, with dotted names for nested ones: {"targets.lr": 0.1, "layers": [3,4]}."""
        return self.from_dict(_merge(self.to_dict(), kw))


@dataclass(frozen=True)
class MemitConfig(LocateEditConfig):
    """MEMIT: multi-layer closed-form update of the MLP out-projections (MEMIT eq. 14)."""

    mom2_update_weight: float = field(
        default=2000.0,
        metadata={
            "help": "λ in ΔW = R Kᵀ (λC + K Kᵀ)⁻¹; 15000 (GPT-J) under-writes on SmolLM2",
            "ge": 0,
        },
    )

    method = "memit"


@dataclass(frozen=True)
class AlphaEditConfig(LocateEditConfig):
    """AlphaEdit: the MEMIT update projected onto the null space of the preserved keys (AlphaEdit eq. 14)."""

    nullspace_rule: NullspaceRule = field(
        default="relative",
        metadata={
            "help": "how the null space of C is chosen: 'relative' (eigenvalue < threshold·max eigenvalue), "
            "'absolute' (eigenvalue < threshold, the reference rule) or 'keep' (the `threshold` "
            "smallest-eigenvalue directions, an integer)"
        },
    )
    nullspace_threshold: float = field(
        default=1e-2, metadata={"help": "τ of the chosen rule", "gt": 0}
    )
    l2: float = field(
        default=10.0,
        metadata={
            "help": "α: the ridge term α·I in the projected solve (the reference L2)",
            "ge": 0,
        },
    )

    method = "alphaedit"

    def __post_init__(self):
        super().__post_init__()
        if self.nullspace_rule == "keep" and not float(self.nullspace_threshold).is_integer():
            raise expected(
                "nullspace_threshold",
                "a whole number of directions for the 'keep' rule",
                self.nullspace_threshold,
            )


@dataclass(frozen=True)
class RomeConfig(LocateEditConfig):
    """ROME: one rank-one update of one MLP out-projection per fact, facts applied one after another."""

    layers: tuple[int, ...] = field(default=(5,), metadata={"help": "the single edited layer"})
    mom2_adjustment: bool = field(
        default=True,
        metadata={
            "help": "u = C⁻¹k*/‖C⁻¹k*‖ (original ROME) instead of k*/‖k*‖ (EasyEdit's Llama setting)"
        },
    )

    method = "rome"

    def __post_init__(self):
        super().__post_init__()
        if len(self.layers) != 1:
            raise expected("layers", "exactly one layer (ROME edits one MLP)", self.layers)

    @classmethod
    def layers_from_window(cls, window: tuple[int, ...]) -> tuple[int, ...]:
        """The second layer of the window (the references' Llama choice: 5 within 4–8)."""
        return (window[1] if len(window) > 1 else window[0],)


@dataclass(frozen=True)
class MendConfig:
    """MEND (Mitchell et al. 2022): a trained hypernetwork turns the edit loss's gradient into the update.

    For every edited weight W (out × in) the layer input u and the output gradient δ of the edit loss
    are normalised, passed through a low-rank MLP shared by the weights of one shape, and recombined
    as ΔW = −edit_lr · Σ_tokens δ̃ ũᵀ (summed over every request of a batch). The architecture and
    training fields below are fixed once the editor is trained; at edit time the trained editor's own
    values are used and only `layers`, `modules` and `artifact` are read.
    """

    layers: tuple[int, ...] = field(
        default=(27, 28, 29),
        metadata={
            "help": "edited layers; `default_config` picks the last three of any model",
            "ge": 0,
        },
    )
    modules: tuple[str, ...] = field(
        default=("mlp.down_proj", "mlp.up_proj"),
        metadata={
            "help": "edited linear modules, relative to each decoder block (Llama-family names)"
        },
    )
    rank: int = field(
        default=256,
        metadata={"help": "rank of each low-rank residual layer of the hypernetwork", "ge": 1},
    )
    n_hidden: int = field(
        default=1,
        metadata={"help": "hidden (ReLU) layers; the network has n_hidden + 1 layers", "ge": 0},
    )
    lr: float = field(
        default=1e-4, metadata={"help": "Adam learning rate of the hypernetwork", "gt": 0}
    )
    edit_lr: float = field(
        default=1e-4,
        metadata={"help": "initial per-weight step size of the pseudo-gradient", "gt": 0},
    )
    edit_lr_lr: float = field(
        default=1e-4, metadata={"help": "Adam learning rate of the learned step sizes", "ge": 0}
    )
    cedit: float = field(
        default=0.1,
        metadata={"help": "weight of the edit loss NLL(target_new) after the edit", "ge": 0},
    )
    cloc: float = field(
        default=1.0,
        metadata={"help": "weight of KL(original ‖ edited) on unrelated prompts", "ge": 0},
    )
    steps: int = field(
        default=1000, metadata={"help": "training steps (one batch of edits each)", "ge": 1}
    )
    batch_size: int = field(
        default=10, metadata={"help": "edits per training step, summed into one ΔW", "ge": 1}
    )
    loc_batch_size: int = field(
        default=10, metadata={"help": "unrelated locality prompts per training step", "ge": 1}
    )
    max_grad_norm: float = field(
        default=100.0, metadata={"help": "gradient-norm clip of the training step", "gt": 0}
    )
    data: tuple[str, ...] = field(
        default=("counterfact-train",),
        metadata={
            "help": "bundled training datasets (the CounterFact train split; optionally zsre)"
        },
    )
    train_pool: int = field(
        default=2000,
        metadata={
            "help": "training requests drawn from `data` (their activations below the edited layers are cached)",
            "ge": 1,
        },
    )
    holdout: int = field(
        default=50,
        metadata={"help": "requests kept out of training to measure edit success", "ge": 0},
    )
    eval_every: int = field(
        default=100, metadata={"help": "steps between held-out evaluations", "ge": 1}
    )
    seed: int = field(
        default=0, metadata={"help": "seed of initialisation, data split and sampling"}
    )
    artifact: str | None = field(
        default=None,
        metadata={"help": "directory of the trained editor; None: <cache>/mend/<model name>"},
    )

    method = "mend"
    # The edit job seeds every method's context templates through this key; MEND has none.
    _IGNORED_OVERRIDES = ("templates.seed",)

    def __post_init__(self):
        check_fields(self)
        for name in ("layers", "modules", "data"):
            if not getattr(self, name):
                raise expected(name, "at least one entry", getattr(self, name))

    @classmethod
    def layers_for_depth(cls, n_layers: int) -> tuple[int, ...]:
        """The last three layers (EasyEdit's MEND setting), whatever the MEMIT window is."""
        return tuple(range(max(0, n_layers - 3), n_layers))

    @classmethod
    def quick(cls, **kw) -> MendConfig:
        """A few dozen steps at small rank: tests and smoke runs."""
        base = dict(
            rank=8,
            steps=30,
            batch_size=4,
            loc_batch_size=4,
            lr=1e-3,
            train_pool=64,
            holdout=8,
            eval_every=10,
        )
        base.update(kw)
        return cls(**base)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"], d["modules"], d["data"] = (
            list(self.layers),
            list(self.modules),
            list(self.data),
        )
        return d

    @classmethod
    def from_dict(cls, d: dict):
        return build(cls, d)

    def with_overrides(self, **kw):
        """Override fields by name ({"rank": 64, "layers": [27, 28, 29]})."""
        kw = {k: v for k, v in kw.items() if k not in self._IGNORED_OVERRIDES}
        return self.from_dict(_merge(self.to_dict(), kw))


def _merge(base: dict, overrides: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = out
        for p in parts[:-1]:
            if p not in node or not isinstance(node[p], dict):
                raise unknown_field(dotted, node)
            node = node[p]
        if parts[-1] not in node:
            raise unknown_field(dotted, node)
        node[parts[-1]] = value
    return out


def _check_statistic(spec: StatisticSpec) -> None:
    """StatisticSpec (editing/statistics.py) declares no ranges; these are the ones its use needs."""
    try:
        check_fields(spec)
        require(spec.max_tokens, "max_tokens", int, ge=1)
        require(spec.window, "window", int, ge=2)
        require(spec.batch_windows, "batch_windows", int, ge=1)
    except ConfigError as err:
        raise err.within("statistic") from None


def default_layers(n_layers: int, width: int = 5) -> tuple[int, ...]:
    """A window of `width` consecutive layers starting at ~13% of the depth (the references' 4–8 of 32).

    The window ends before the last layer: z lives at the last edited layer and needs at least one
    block after it to carry the change from the subject token to the target positions.
    """
    start = max(1, round(0.13 * n_layers))
    return tuple(range(start, min(n_layers - 1, start + width)))


CONFIG_CLASSES: dict[str, type] = {
    cls.method: cls for cls in (MemitConfig, AlphaEditConfig, RomeConfig, MendConfig)
}
EDIT_METHODS = tuple(CONFIG_CLASSES)  # the edit methods, in the order `editdecay edit` lists them
EditMethod = Literal[EDIT_METHODS]


def config_class(method: str) -> type:
    """The typed config of an edit method; an unknown method is a ConfigError listing the known ones."""
    return CONFIG_CLASSES[check_value(method, EditMethod, "method", label="edit method")]


def has_field(method: str, name: str) -> bool:
    """Whether `method`'s config takes the override `name` (dotted)."""
    cls = config_class(method)
    if name in getattr(cls, "_IGNORED_OVERRIDES", ()):
        return True
    try:
        field_type(cls, name)
    except ConfigError:
        return False
    return True


def check_overrides(method: str, overrides: dict, name: str = "") -> None:
    """Refuse overrides (dotted keys) that `method`'s config does not have, or whose values do not fit
    its fields, before any model loads; `name` prefixes the fields in the messages ("edit")."""
    try:
        config_class(method)().with_overrides(**overrides)
    except ConfigError as err:
        raise err.within(name) from None


__all__ = [
    "CONFIG_CLASSES",
    "EDIT_METHODS",
    "EditMethod",
    "config_class",
    "check_overrides",
    "has_field",
    "TargetConfig",
    "TemplateConfig",
    "LocateEditConfig",
    "MemitConfig",
    "AlphaEditConfig",
    "RomeConfig",
    "MendConfig",
    "StatisticSpec",
    "default_layers",
]
