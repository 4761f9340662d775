"""Forward-hook context managers: read a module's input/output, edit a block's output, stop early,
replay blocks whose output is already known.

Decoder blocks return a tensor in some transformers versions and a tuple `(hidden, ...)` in
others (pitfall P3); every helper here goes through `hidden_of` / `replace_hidden` so both work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


def hidden_of(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def replace_hidden(output, hidden: torch.Tensor):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class StopForward(Exception):
    """Raised by a hook to end a forward pass once everything needed has been recorded."""


class Recorder:
    """What `record` captured: `inputs[name]` / `outputs[name]` (the hidden tensor, not a tuple)."""

    def __init__(self) -> None:
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}


@contextmanager
def record(
    model: nn.Module,
    names: list[str],
    *,
    inputs: bool = False,
    outputs: bool = False,
    stop_after: str | None = None,
    detach: bool = True,
) -> Iterator[Recorder]:
    """Record the first positional input and/or the output of each named module.

    With `stop_after`, a `StopForward` is raised once that module has run; wrap the forward call
    in `suppress_stop()` (or call `run_until`) to swallow it.
    """
    rec = Recorder()
    handles = []

    def make_hook(name: str):
        def hook(module, args, output):
            if inputs:
                x = args[0]
                rec.inputs[name] = x.detach() if detach else x
            if outputs:
                h = hidden_of(output)
                rec.outputs[name] = h.detach() if detach else h
            if name == stop_after:
                raise StopForward

        return hook

    for name in names:
        handles.append(model.get_submodule(name).register_forward_hook(make_hook(name)))
    if stop_after is not None and stop_after not in names:
        handles.append(model.get_submodule(stop_after).register_forward_hook(make_hook(stop_after)))
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()


@contextmanager
def edit_output(
    model: nn.Module, name: str, fn: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """Replace module `name`'s output hidden state h by fn(h) during the context."""

    def hook(module, args, output):
        return replace_hidden(output, fn(hidden_of(output)))

    handle = model.get_submodule(name).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def replay_blocks(
    blocks: Sequence[nn.Module], output: Callable[[], torch.Tensor], as_tuple: bool
) -> Iterator[None]:
    """Skip the computation of `blocks`: each call returns `output()` (in the block's own output
    form, a tensor or a 1-tuple), and forward hooks on the blocks still run on it. For a run of
    leading blocks whose result was recorded earlier and cannot have changed."""

    def forward(*args, **kwargs):
        h = output()
        return (h,) if as_tuple else h

    saved = [b.__dict__.get("forward") for b in blocks]  # an instance-level forward (accelerate)
    for b in blocks:
        b.forward = forward
    try:
        yield
    finally:
        for b, f in zip(blocks, saved):
            if f is None:
                del b.forward
            else:
                b.forward = f


def run_until(model: nn.Module, **forward_kwargs) -> None:
    """Run a forward pass, treating a `StopForward` from a hook as normal completion."""
    try:
        model(**forward_kwargs)
    except StopForward:
        pass
