"""Resumable fine-tuning snapshots: the complete training state, saved and restored bit for bit.

A snapshot is a directory written by `integrity.save_resume_point`: the tensors in safetensors, as
"weights.<name>", "optim.state.<param index>.<key>", "rng.<generator>" and "best.<name>" (the
trainable weights of the best validation checkpoint so far); the rest (optimiser param groups and
scalars, schedule, Python / numpy generators, progress, validation losses) in JSON. Loading it
executes nothing.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..integrity import as_json, load_resume_point, save_resume_point
from ..models.adapter import model_device

if TYPE_CHECKING:
    from .tuner import FinetuneConfig


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that fine-tuning changes (adapter weights, or the unfrozen weights for full FT)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


_WEIGHTS, _OPTIM_STATE, _RNG, _BEST = "weights.", "optim.state.", "rng.", "best."


def save_snapshot(
    path: Path,
    model,
    opt,
    sched,
    gen,
    cfg: FinetuneConfig,
    n_examples: int,
    losses,
    tokens,
    step,
    epoch_order,
    elapsed,
    validation: list | None = None,
    best: dict[str, torch.Tensor] | None = None,
) -> None:
    """`validation`: the (step, loss) pairs so far; `best`: the best checkpoint's trainable weights."""
    optim_tensors, optim_meta = _flatten_optimizer(opt.state_dict())
    tensors = {
        **{_WEIGHTS + n: t for n, t in trainable_state(model).items()},
        **{_OPTIM_STATE + n: t for n, t in optim_tensors.items()},
        **{_RNG + n: t for n, t in _torch_rng_states(gen, model).items()},
        **{_BEST + n: t for n, t in (best or {}).items()},
    }
    meta = {
        "config": cfg.to_dict(),
        "n_examples": n_examples,
        "optimizer": optim_meta,
        "scheduler": sched.state_dict(),
        "python_rng": _python_rng_to_json(random.getstate()),
        "numpy_rng": _numpy_rng_to_json(np.random.get_state()),
        "losses": list(losses),
        "tokens": tokens,
        "step": step,
        "epoch_order": list(epoch_order),
        "elapsed": elapsed,
        "validation": [list(v) for v in validation or []],
    }
    save_resume_point(path, tensors, meta)


def load_snapshot(path: Path, cfg: FinetuneConfig, n_examples: int) -> dict | None:
    """The snapshot's state, None when there is none (or only an unusable or old torch.save one)."""
    loaded = load_resume_point(path)
    if loaded is None:
        return None
    tensors, meta = loaded
    if meta["config"] != as_json(cfg.to_dict()) or meta["n_examples"] != n_examples:
        raise ValueError(
            f"snapshot {path} belongs to a different fine-tuning run; delete it to start over"
        )
    return {
        **meta,
        "weights": _with_prefix(tensors, _WEIGHTS),
        "optim_tensors": _with_prefix(tensors, _OPTIM_STATE),
        "rng": _with_prefix(tensors, _RNG),
        "best": _with_prefix(tensors, _BEST),
        "validation": [tuple(v) for v in meta.get("validation", [])],
    }


def restore(model, opt, sched, gen, state: dict) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["weights"].items():
            params[name].copy_(value)
    opt.load_state_dict(
        _unflatten_optimizer(state["optim_tensors"], state["optimizer"], opt.state_dict())
    )
    sched.load_state_dict(state["scheduler"])
    gen.set_state(state["rng"]["generator"])
    torch.set_rng_state(state["rng"]["torch"])
    device = model_device(model)
    if device.type == "cuda" and "cuda" in state["rng"]:  # dropout draws from the GPU's generator
        torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    random.setstate(_python_rng_from_json(state["python_rng"]))
    np.random.set_state(_numpy_rng_from_json(state["numpy_rng"]))


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {n[len(prefix) :]: t for n, t in tensors.items() if n.startswith(prefix)}


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimiser state dict as tensors named "<param index>.<key>" and JSON for the rest."""
    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "state_scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict, fresh: dict) -> dict:
    """The inverse of `_flatten_optimizer`; `fresh` (the new optimiser's own state dict) gives the
    param groups' tuples back (e.g. AdamW's betas), which JSON turned into lists."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, values in meta["state_scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [
        {k: tuple(v) if isinstance(like.get(k), tuple) else v for k, v in saved.items()}
        for like, saved in zip(fresh["param_groups"], meta["param_groups"], strict=True)
    ]
    return {"state": state, "param_groups": groups}


def _torch_rng_states(gen, model) -> dict[str, torch.Tensor]:
    states = {"generator": gen.get_state(), "torch": torch.get_rng_state()}
    device = model_device(model)
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _python_rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_rng_from_json(state: list) -> tuple:
    version, internal, gauss = state
    return version, tuple(internal), gauss


def _numpy_rng_to_json(state: tuple) -> list:
    name, keys, pos, has_gauss, cached_gaussian = state
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached_gaussian)]


def _numpy_rng_from_json(state: list) -> tuple:
    name, keys, pos, has_gauss, cached_gaussian = state
    return name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian
