"""Editors: each turns (model, requests, config) into an EditDelta and leaves the model unchanged."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..data.requests import EditRequest
from ..models.registry import REGISTRY, LoadedModel
from .config import MemitConfig, default_layers
from .delta import EditDelta
from .memit import memit_edit


@dataclass(frozen=True)
class EditorSpec:
    name: str
    description: str
    config_class: type
    edit: Callable[[LoadedModel, Sequence[EditRequest], object], EditDelta]


EDITORS: dict[str, EditorSpec] = {
    "memit": EditorSpec("memit", "MEMIT: multi-layer closed-form batch update of MLP out-projections",
                        MemitConfig, memit_edit),
}


def get_editor(method: str) -> EditorSpec:
    try:
        return EDITORS[method]
    except KeyError:
        raise ValueError(f"unknown edit method {method!r}; available: {', '.join(EDITORS)}") from None


def default_config(method: str, lm: LoadedModel, overrides: dict | None = None):
    """The method's defaults with this model's edit layers, then `overrides` (dotted keys)."""
    spec = get_editor(method)
    registered = REGISTRY[lm.name].default_edit_layers if lm.name in REGISTRY else ()
    cfg = spec.config_class(layers=tuple(registered) or default_layers(lm.n_layers))
    if overrides:
        cfg = cfg.with_overrides(**overrides)
    for layer in cfg.layers:
        lm.adapter.check_layer(lm.model, layer)
    return cfg


__all__ = ["EDITORS", "EditorSpec", "get_editor", "default_config", "EditDelta"]
