"""An edit as a first-class object: {parameter name → ΔW} plus everything needed to trust and reuse it.

On disk a delta is two files in one directory:
- `delta.safetensors`: under each edited parameter's own name (e.g. `model.layers.4.mlp.down_proj.weight`)
  the full ΔW in that parameter's shape, so any tool can apply it by addition;
- `delta.json`: method, config, request ids, model fingerprint, statistic keys, seeds, diagnostics,
  and the SHA-256 of each tensor file (`sha256`: file name → digest);
- `state.safetensors` (editors with memory, e.g. AlphaEdit's Σ K Kᵀ): what sequential editing resumes from.

`load` refuses a tensor file whose digest differs from the recorded one, a truncated or corrupt file,
and NaN / inf values (deltas written before digests were recorded load unverified); `apply` refuses
non-finite ΔW too. `apply` adds ΔW and keeps the replaced tensors, so `revert` restores the weights
bit for bit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..integrity import (
    NonFiniteError,
    check_finite,
    count_nonfinite,
    load_tensors,
    save_tensors,
    verify_checksum,
)
from ..io import atomic_write
from ..models.registry import fingerprint as model_fingerprint

log = logging.getLogger(__name__)

# the `sha256` field is optional: deltas written before it have the same version
FORMAT_VERSION = 1
WEIGHTS_FILE, STATE_FILE, META_FILE = "delta.safetensors", "state.safetensors", "delta.json"


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
            self._check_finite_weight(name, dw)
        saved = {}
        with torch.no_grad():
            for name, dw in self.weights.items():
                p = params[name]
                saved[name] = p.detach().clone()
                p.add_(dw.to(device=p.device, dtype=p.dtype), alpha=alpha)
        return AppliedDelta(model, saved)

    def combined(self, other: EditDelta, info: dict | None = None) -> EditDelta:
        """The sum of two deltas computed on the same model (ΔW added per parameter): e.g. the
        duplex update of a backdoor, whose trigger and clean groups are solved separately."""
        if other.model_fingerprint != self.model_fingerprint:
            raise FingerprintMismatchError(
                f"cannot add deltas of different models ({self.model_fingerprint} and "
                f"{other.model_fingerprint})"
            )
        weights = {name: dw.clone() for name, dw in self.weights.items()}
        for name, dw in other.weights.items():
            if name in weights and weights[name].shape != dw.shape:
                raise ValueError(
                    f"ΔW for {name}: shapes {tuple(weights[name].shape)} and {tuple(dw.shape)}"
                )
            weights[name] = weights[name] + dw if name in weights else dw.clone()
        return EditDelta(
            weights=weights,
            method=self.method,
            config=self.config,
            request_ids=[*self.request_ids, *other.request_ids],
            model_fingerprint=self.model_fingerprint,
            statistic_keys={**other.statistic_keys, **self.statistic_keys},
            seeds={**other.seeds, **self.seeds},
            info=info if info is not None else {"parts": [self.info, other.info]},
        )

    def norms(self, model: nn.Module | None = None) -> dict[str, float]:
        """‖ΔW‖_F per parameter, relative to ‖W‖_F when a model is given."""
        params = dict(model.named_parameters()) if model is not None else {}
        out = {}
        for name, dw in self.weights.items():
            n = float(dw.float().norm())
            out[name] = n / float(params[name].float().norm()) if name in params else n
        return out

    def _check_finite_weight(self, name: str, dw: torch.Tensor) -> None:
        bad = count_nonfinite(dw)
        if bad:
            raise NonFiniteError(
                f"this {self.method} delta: tensor {name!r} has {bad} non-finite values; not applied"
            )

    def save(self, directory: str | Path) -> Path:
        """Write the tensor files, then delta.json with their digests (so it is complete last)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        digests = {
            WEIGHTS_FILE: save_tensors(
                directory / WEIGHTS_FILE,
                self.weights,
                metadata={"method": self.method, "model_fingerprint": self.model_fingerprint},
            )
        }
        if self.state:
            digests[STATE_FILE] = save_tensors(directory / STATE_FILE, self.state)
        elif (directory / STATE_FILE).exists():  # left by an earlier save into this directory
            (directory / STATE_FILE).unlink()
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
            "sha256": digests,
        }
        atomic_write(
            directory / META_FILE,
            lambda p: p.write_text(json.dumps(meta, indent=1, default=str)),
        )
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> EditDelta:
        """Read a saved delta, refusing changed, truncated or corrupt files and NaN / inf values."""
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{directory}: unsupported delta format version {meta.get('format_version')}"
            )
        files = _tensor_files(directory, meta)
        weights = _load_checked(directory / WEIGHTS_FILE, files.get(WEIGHTS_FILE))
        state = (
            _load_checked(directory / STATE_FILE, files.get(STATE_FILE))
            if STATE_FILE in files
            else {}
        )
        return cls(
            weights=weights,
            method=meta["method"],
            config=meta["config"],
            request_ids=meta["request_ids"],
            model_fingerprint=meta["model_fingerprint"],
            statistic_keys=meta.get("statistic_keys", {}),
            seeds=meta.get("seeds", {}),
            info=meta.get("info", {}),
            state=state,
        )


def _tensor_files(directory: Path, meta: dict) -> dict[str, str | None]:
    """The tensor files of a saved delta → their recorded digests (None for deltas without any)."""
    if "sha256" in meta:
        return dict(meta["sha256"])
    log.debug("%s: a delta written before checksums were recorded; loaded unverified", directory)
    present = [f for f in (WEIGHTS_FILE, STATE_FILE) if (directory / f).exists()]
    return dict.fromkeys([WEIGHTS_FILE, *present])


def _load_checked(path: Path, digest: str | None) -> dict[str, torch.Tensor]:
    if digest is not None:
        verify_checksum(path, digest)
    tensors = load_tensors(path)
    check_finite(tensors, str(path))
    return tensors


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
