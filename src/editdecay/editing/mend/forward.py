"""Running the model for MEND: tokenised prompt+target batches, the edited weights, and (u, δ) capture.

Everything below the first edited layer is the same for the original and every edited model, so
`PrefixRunner` can split a forward pass in two: the hidden state entering the first edited block is
computed once per sequence (and cached while training), and only the blocks from there on are run
for each candidate ΔW. The split is used only after a probe shows that it reproduces the plain
forward pass for this model; otherwise every pass starts from the token ids.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from ...data.tokenization import encode_continuation, pad_right
from ...models.adapter import get_module, model_device
from ...models.hooks import hidden_of
from ...models.registry import LoadedModel
from .network import EditTarget

log = logging.getLogger(__name__)


def build_targets(
    lm: LoadedModel, layers: Sequence[int], modules: Sequence[str]
) -> list[EditTarget]:
    """The edited weights, layer-major: `modules` (relative to each block) of every layer in `layers`."""
    model, adapter = lm.model, lm.adapter
    params = dict(model.named_parameters())
    targets = []
    for layer in layers:
        for rel in modules:
            name = f"{adapter.block_name(layer)}.{rel}"
            adapter.check_layer(model, layer)
            module = get_module(model, name)
            weight = getattr(module, "weight", None)
            if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
                raise ValueError(f"MEND edits 2-D projection weights; {name} has none")
            if f"{name}.weight" not in params:
                raise ValueError(
                    f"{name}.weight is not a parameter of the model (tied or frozen buffer?)"
                )
            if isinstance(module, nn.Linear):
                d_in, d_out, transposed = module.in_features, module.out_features, False
            elif adapter.mlp_out_transposed:  # Conv1D-style (in, out) storage
                (d_in, d_out), transposed = weight.shape, True
            else:
                raise ValueError(f"cannot tell the orientation of {name} ({type(module).__name__})")
            targets.append(
                EditTarget(f"{name}.weight", name, layer, int(d_in), int(d_out), transposed)
            )
    return targets


@dataclass
class Seq:
    """One tokenised prompt + target; `hidden` is the input of the first edited block when cached."""

    ids: tuple[int, ...]
    n_prompt: int
    hidden: torch.Tensor | None = None


@dataclass
class SeqBatch:
    """Right-padded sequences with the positions whose logits predict target tokens.

    pred_rows/pred_cols: where each target token is predicted; labels: the token; pred_seq: its row.
    grad_mask: the tokens whose (u, δ) enter a pseudo-gradient (every real token but a row's last,
    whose output no loss term depends on).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    hidden: torch.Tensor | None
    pred_rows: torch.Tensor
    pred_cols: torch.Tensor
    labels: torch.Tensor
    grad_mask: torch.Tensor

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]


def collate(seqs: Sequence[Seq], pad_id: int, device: torch.device) -> SeqBatch:
    ids, mask = pad_right([s.ids for s in seqs], pad_id)
    rows, cols, labels = [], [], []
    grad_mask = torch.zeros_like(mask, dtype=torch.bool)
    for r, s in enumerate(seqs):
        n = len(s.ids)
        for pos in range(s.n_prompt, n):
            rows.append(r)
            cols.append(pos - 1)
            labels.append(s.ids[pos])
        grad_mask[r, : n - 1] = True
    hidden = None
    if seqs and all(s.hidden is not None for s in seqs):
        width, dim = ids.shape[1], seqs[0].hidden.shape[-1]
        hidden = torch.zeros(len(seqs), width, dim, dtype=seqs[0].hidden.dtype, device=device)
        for r, s in enumerate(seqs):
            hidden[r, : len(s.ids)] = s.hidden.to(device)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long, device=device)  # noqa: E731
    return SeqBatch(
        ids.to(device),
        mask.to(device),
        hidden,
        as_long(rows),
        as_long(cols),
        as_long(labels),
        grad_mask.to(device),
    )


class _SkipBlock(nn.Module):
    """Stands in for a block below the first edited one: passes the hidden state through."""

    def __init__(self, returns_tuple: bool):
        super().__init__()
        self.returns_tuple = returns_tuple

    def forward(self, hidden_states, *args, **kwargs):
        return (hidden_states,) if self.returns_tuple else hidden_states


class _Captured(Exception):
    pass


class PrefixRunner:
    """Forward passes of `lm`'s backbone, optionally split at block `first_layer` (see the module doc)."""

    def __init__(self, lm: LoadedModel, first_layer: int, *, split: bool = True):
        self.lm = lm
        self.model = lm.model
        self.first_layer = first_layer
        self.backbone = lm.adapter.backbone(lm.model)
        self.device = model_device(lm.model)
        self._blocks = get_module(lm.model, lm.adapter.layers_path)
        prefix = next(n for n, m in lm.model.named_modules() if m is self.backbone)
        self._strip = f"{prefix}." if prefix else ""
        self._returns_tuple = False
        self.split = split and self._verify_split()

    # ----------------------------------------------------------------- the two halves
    @torch.no_grad()
    def prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The hidden state entering block `first_layer` (B, T, d); blocks from there on are not run."""
        block = self._blocks[self.first_layer]
        seen: dict[str, object] = {}

        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            seen["hidden"] = hidden.detach().clone()
            raise _Captured

        handle = block.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except _Captured:
            pass
        finally:
            handle.remove()
        return seen["hidden"]

    def final_hidden(
        self, batch: SeqBatch, weights: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Final-normed hidden states (B, T, d); `weights` (full parameter names) replace the model's."""
        params = {self._relative(n): w for n, w in (weights or {}).items()}
        if self.split and batch.hidden is not None:
            kwargs = dict(
                inputs_embeds=batch.hidden, attention_mask=batch.attention_mask, use_cache=False
            )
            with self._skipping():
                out = functional_call(self.backbone, params, args=(), kwargs=kwargs)
        else:
            kwargs = dict(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
            )
            out = functional_call(self.backbone, params, args=(), kwargs=kwargs)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def logits_at(self, hidden: torch.Tensor, batch: SeqBatch) -> torch.Tensor:
        """Logits (n_target_tokens, vocab) at the positions that predict the batch's target tokens."""
        return self.lm.adapter.logits(self.model, hidden[batch.pred_rows, batch.pred_cols]).float()

    def _relative(self, name: str) -> str:
        if not name.startswith(self._strip):
            raise KeyError(f"{name!r} is not inside the model's backbone")
        return name[len(self._strip) :]

    @contextmanager
    def _skipping(self) -> Iterator[None]:
        originals = [self._blocks[i] for i in range(self.first_layer)]
        try:
            for i in range(self.first_layer):
                self._blocks[i] = _SkipBlock(self._returns_tuple)
            yield
        finally:
            for i, block in enumerate(originals):
                self._blocks[i] = block

    @torch.no_grad()
    def _verify_split(self) -> bool:
        """Does prefix + top reproduce the plain pass on a probe? Also learns the blocks' output type."""
        tok = self.lm.tokenizer
        ids = torch.tensor(
            [tok("The Eiffel Tower is located in the city of Paris")["input_ids"]],
            device=self.device,
        )
        mask = torch.ones_like(ids)
        seen = {}

        def note_type(module, args, output):
            seen["tuple"] = isinstance(output, tuple)

        handle = self._blocks[0].register_forward_hook(note_type)
        try:
            full = self.backbone(input_ids=ids, attention_mask=mask, use_cache=False)
        finally:
            handle.remove()
        self._returns_tuple = bool(seen.get("tuple", False))
        full = full.last_hidden_state if hasattr(full, "last_hidden_state") else full[0]
        batch = SeqBatch(
            ids,
            mask,
            self.prefix(ids, mask),
            *(torch.zeros(0, dtype=torch.long),) * 3,
            torch.ones_like(mask, dtype=torch.bool),
        )
        self.split = True
        top = self.final_hidden(batch)
        ok = torch.allclose(top, full, rtol=1e-4, atol=1e-4 * float(full.abs().max()))
        if not ok:
            log.info(
                "MEND: splitting the forward pass at block %d does not reproduce it for this model; "
                "every pass will start from the token ids",
                self.first_layer,
            )
        return ok


class SequenceCache:
    """Tokenised (prompt, target) pairs with their prefix hidden states, computed once per pair."""

    def __init__(self, runner: PrefixRunner, max_batch_tokens: int = 4096):
        self.runner = runner
        self.tokenizer = runner.lm.tokenizer
        self.max_batch_tokens = max_batch_tokens
        self._seqs: dict[tuple[str, str], Seq] = {}
        self.seconds = 0.0  # spent tokenising and computing prefixes

    def __len__(self) -> int:
        return len(self._seqs)

    def get(self, pairs: Sequence[tuple[str, str]]) -> list[Seq]:
        missing = list(dict.fromkeys(p for p in pairs if p not in self._seqs))
        if missing:
            self._add(missing)
        return [self._seqs[p] for p in pairs]

    def batch(self, pairs: Sequence[tuple[str, str]]) -> SeqBatch:
        return collate(self.get(pairs), self.tokenizer.pad_token_id, self.runner.device)

    def _add(self, pairs: list[tuple[str, str]]) -> None:
        t0 = time.perf_counter()
        seqs = []
        for prompt, target in pairs:
            c = encode_continuation(self.tokenizer, prompt, target)
            seqs.append(Seq(c.prompt_ids + c.target_ids, len(c.prompt_ids)))
        if self.runner.split:
            order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i].ids))
            start = 0
            while start < len(order):
                size = max(1, self.max_batch_tokens // len(seqs[order[start]].ids))
                chunk = order[start : start + size]
                start += size
                ids, mask = pad_right([seqs[i].ids for i in chunk], self.tokenizer.pad_token_id)
                hidden = self.runner.prefix(ids.to(self.runner.device), mask.to(self.runner.device))
                for r, i in enumerate(chunk):
                    seqs[i].hidden = hidden[r, : len(seqs[i].ids)].clone()
        self._seqs.update(zip(pairs, seqs))
        self.seconds += time.perf_counter() - t0


def target_nll(logits: torch.Tensor, batch: SeqBatch) -> torch.Tensor:
    """Per-sequence mean NLL of the target tokens, (B,)."""
    tok_nll = torch.nn.functional.cross_entropy(logits, batch.labels, reduction="none")
    total = torch.zeros(batch.size, dtype=tok_nll.dtype, device=tok_nll.device).index_add(
        0, batch.pred_rows, tok_nll
    )
    count = torch.zeros_like(total).index_add(0, batch.pred_rows, torch.ones_like(tok_nll))
    return total / count.clamp(min=1)


def capture(
    runner: PrefixRunner, batch: SeqBatch, targets: Sequence[EditTarget]
) -> tuple[dict[int, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Each target's layer inputs u and output gradients δ of Σ_rows NLL(target), at `batch.grad_mask` tokens.

    Returns {target index: (u (N, d_in), δ (N, d_out))} and the per-sequence NLL. Every row's loss is
    its own mean token NLL, so a request's δ does not depend on what else is in the batch.
    """
    inputs: dict[int, torch.Tensor] = {}
    outputs: dict[int, torch.Tensor] = {}
    handles = []

    def make_hook(i: int):
        def hook(module, args, kwargs, output):
            if i in outputs:
                raise RuntimeError(f"{targets[i].module} ran twice in one forward pass")
            u = args[0] if args else next(iter(kwargs.values()))
            inputs[i] = u.detach()
            out = hidden_of(output)
            if not out.requires_grad:
                out.requires_grad_(True)
            outputs[i] = out

        return hook

    model = runner.model
    for i, t in enumerate(targets):
        handles.append(
            get_module(model, t.module).register_forward_hook(make_hook(i), with_kwargs=True)
        )
    try:
        with torch.enable_grad():
            hidden = runner.final_hidden(batch)
            nll = target_nll(runner.logits_at(hidden, batch), batch)
            missing = [targets[i].module for i in range(len(targets)) if i not in outputs]
            if missing:
                raise RuntimeError(f"the forward pass never reached {missing}")
            grads = torch.autograd.grad(
                nll.sum(), [outputs[i] for i in range(len(targets))], allow_unused=True
            )
    finally:
        for h in handles:
            h.remove()
    mask = batch.grad_mask
    result = {}
    for i, g in enumerate(grads):
        u = inputs[i]
        g = (
            torch.zeros(*u.shape[:-1], targets[i].d_out, device=u.device, dtype=u.dtype)
            if g is None
            else g
        )
        result[i] = (u[mask].float(), g[mask].float())
    return result, nll.detach()


__all__ = [
    "build_targets",
    "Seq",
    "SeqBatch",
    "collate",
    "PrefixRunner",
    "SequenceCache",
    "target_nll",
    "capture",
]
