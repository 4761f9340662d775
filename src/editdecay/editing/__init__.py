"""Editors: each turns (model, requests, config) into an EditDelta and leaves the model unchanged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..models.registry import REGISTRY, LoadedModel
from .alphaedit import AlphaEditState, alphaedit_edit
from .config import AlphaEditConfig, MemitConfig, MendConfig, RomeConfig, default_layers
from .delta import EditDelta
from .memit import memit_edit
from .mend import mend_edit
from .mend.artifact import artifact_digest as mend_artifact_digest
from .rome import rome_edit


@dataclass(frozen=True)
class EditorSpec:
    """An edit method: `edit(lm, requests, cfg, stats=None[, state=None]) -> EditDelta`.

    Stateful editors (memory of earlier batches) take and return a state; `load_state` turns the
    tensors saved with a delta back into the editor's state object. Editors with `shares_targets`
    accept `prepared=` (the output of `memit.prepare`), so methods that differ only in their solve
    can reuse one target optimisation.
    """

    name: str
    description: str
    config_class: type
    edit: Callable[..., EditDelta]
    state_class: type | None = None
    shares_targets: bool = False
    artifact_digest: Callable[..., str] | None = (
        None  # (lm, cfg) -> hash of a trained editor it loads
    )

    @property
    def stateful(self) -> bool:
        return self.state_class is not None

    def load_state(self, tensors: dict | None):
        return self.state_class.from_tensors(tensors) if tensors else self.state_class()


EDITORS: dict[str, EditorSpec] = {
    "memit": EditorSpec(
        "memit",
        "MEMIT: multi-layer closed-form batch update of MLP out-projections",
        MemitConfig,
        memit_edit,
        shares_targets=True,
    ),
    "alphaedit": EditorSpec(
        "alphaedit",
        "AlphaEdit: MEMIT's update projected onto the preserved keys' null space",
        AlphaEditConfig,
        alphaedit_edit,
        AlphaEditState,
        shares_targets=True,
    ),
    "rome": EditorSpec(
        "rome",
        "ROME: one rank-one update of one MLP out-projection per fact, applied in turn",
        RomeConfig,
        rome_edit,
    ),
    "mend": EditorSpec(
        "mend",
        "MEND: a trained hypernetwork turns the edit gradient of the last layers' MLPs "
        "into one summed update (train it first: `editdecay mend-train`)",
        MendConfig,
        mend_edit,
        artifact_digest=mend_artifact_digest,
    ),
}


def get_editor(method: str) -> EditorSpec:
    try:
        return EDITORS[method]
    except KeyError:
        raise ValueError(
            f"unknown edit method {method!r}; available: {', '.join(EDITORS)}"
        ) from None


def default_config(method: str, lm: LoadedModel, overrides: dict | None = None):
    """The method's defaults with this model's edit layers and measured settings (the registry's
    `edit_defaults`), then `overrides` (dotted keys)."""
    spec = get_editor(method)
    registered = REGISTRY[lm.name].default_edit_layers if lm.name in REGISTRY else ()
    window = tuple(registered) or default_layers(lm.n_layers)
    cls = spec.config_class
    if hasattr(
        cls, "layers_for_depth"
    ):  # placed by depth (MEND: the last layers), not by the MEMIT window
        cfg = cls(layers=cls.layers_for_depth(lm.n_layers))
    else:
        cfg = cls(layers=cls.layers_from_window(window))
    measured = REGISTRY[lm.name].edit_defaults.get(method, {}) if lm.name in REGISTRY else {}
    if measured or overrides:
        cfg = cfg.with_overrides(**{**measured, **(overrides or {})})
    for layer in cfg.layers:
        lm.adapter.check_layer(lm.model, layer)
    return cfg


__all__ = ["EDITORS", "EditorSpec", "get_editor", "default_config", "EditDelta"]
