"""An edit as a first-class object: {parameter name → ΔW} plus everything needed to trust and reuse it.

On disk a delta is two files in one directory:
- `delta.safetensors`: under each edited parameter's own name (e.g. `model.layers.4.mlp.down_proj.weight`)
  the full ΔW in that parameter's shape, so any tool can apply it by addition;
- `delta.json`: method, config, request ids, model fingerprint, statistic keys, seeds, diagnostics;
- `state.safetensors` (editors with memory, e.g. AlphaEdit's Σ K Kᵀ): what sequential editing resumes from.

`apply` adds ΔW and keeps the replaced tensors, so `revert` restores the weights bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..io import atomic_write
from ..models.registry import fingerprint as model_fingerprint

FORMAT_VERSION = 1


class FingerprintMismatchError(ValueError):
    pass


@dataclass
class EditDelta:
    weights: dict[str, torch.Tensor]
    method: str
    config: dict
    request_ids: list[str]
    model_fingerprint: str
    statistic_keys: dict[str, str] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # diagnostics, context templates, timings
    state: dict[str, torch.Tensor] = field(
        default_factory=dict
    )  # editor state to resume sequential editing

    def apply(self, model: nn.Module, *, force: bool = False, alpha: float = 1.0) -> AppliedDelta:
        """Add ΔW (scaled by `alpha`) to `model` in place; the returned handle reverts it exactly."""
        if not force:
            fp = model_fingerprint(model)
            if fp != self.model_fingerprint:
                raise FingerprintMismatchError(
                    f"this {self.method} delta was computed on model {self.model_fingerprint}, but the target model's "
                    f"fingerprint is {fp} (a different model, or one already changed); pass force=True to apply anyway"
                )
        params = dict(model.named_parameters())
        missing = [n for n in self.weights if n not in params]
        if missing:
            raise KeyError(f"the model has no parameter(s) {missing[:3]} that this delta edits")
        for name, dw in self.weights.items():  # validate everything before changing anything
            if params[name].shape != dw.shape:
                raise ValueError(
                    f"ΔW for {name} has shape {tuple(dw.shape)}, the parameter {tuple(params[name].shape)}"
                )
        saved = {}
        with torch.no_grad():
            for name, dw in self.weights.items():
                p = params[name]
                saved[name] = p.detach().clone()
                p.add_(dw.to(device=p.device, dtype=p.dtype), alpha=alpha)
        return AppliedDelta(model, saved)

    def norms(self, model: nn.Module | None = None) -> dict[str, float]:
        """‖ΔW‖_F per parameter, relative to ‖W‖_F when a model is given."""
        params = dict(model.named_parameters()) if model is not None else {}
        out = {}
        for name, dw in self.weights.items():
            n = float(dw.float().norm())
            out[name] = n / float(params[name].float().norm()) if name in params else n
        return out

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "config": self.config,
            "request_ids": self.request_ids,
            "model_fingerprint": self.model_fingerprint,
            "statistic_keys": self.statistic_keys,
            "seeds": self.seeds,
            "info": self.info,
            "parameters": {n: list(w.shape) for n, w in self.weights.items()},
        }
        atomic_write(
            directory / "delta.safetensors",
            lambda p: save_file(
                {n: w.contiguous().cpu() for n, w in self.weights.items()},
                str(p),
                metadata={"method": self.method, "model_fingerprint": self.model_fingerprint},
            ),
        )
        if self.state:
            atomic_write(
                directory / "state.safetensors",
                lambda p: save_file(
                    {n: t.contiguous().cpu() for n, t in self.state.items()}, str(p)
                ),
            )
        atomic_write(
            directory / "delta.json",
            lambda p: p.write_text(json.dumps(meta, indent=1, default=str)),
        )
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> EditDelta:
        directory = Path(directory)
        meta = json.loads((directory / "delta.json").read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{directory}: unsupported delta format version {meta.get('format_version')}"
            )
        weights = load_file(str(directory / "delta.safetensors"))
        state_file = directory / "state.safetensors"
        return cls(
            weights=weights,
            method=meta["method"],
            config=meta["config"],
            request_ids=meta["request_ids"],
            model_fingerprint=meta["model_fingerprint"],
            statistic_keys=meta.get("statistic_keys", {}),
            seeds=meta.get("seeds", {}),
            info=meta.get("info", {}),
            state=load_file(str(state_file)) if state_file.exists() else {},
        )


class AppliedDelta:
    """Handle returned by `EditDelta.apply`; also a context manager that reverts on exit."""

    def __init__(self, model: nn.Module, saved: dict[str, torch.Tensor]):
        self.model, self._saved = model, saved

    def revert(self) -> None:
        if self._saved is None:
            raise RuntimeError("this delta was already reverted")
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, w in self._saved.items():
                params[name].copy_(w)
        self._saved = None

    def __enter__(self) -> AppliedDelta:
        return self

    def __exit__(self, *exc) -> None:
        if self._saved is not None:
            self.revert()
