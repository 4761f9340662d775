"""Target residual vectors z (MEMIT §1.4), optimised for many requests at once.

For request r a free vector δ_r is added to the output of block `z_layer` (or of any named module,
e.g. an MLP out-projection for ROME's v*) at the subject's last
token of 7 sequences: the rewrite prompt inside each context template, teacher-forced on
`target_new`, and the KL prompt "{subject} is a". Per request the loss is

    NLL(target_new) + kl_factor · KL(P_now ‖ P_init) at the KL prompt's subject token
                    + weight_decay · ‖δ_r‖ / ‖h_init,r‖²                       (P15 quirks kept)

and z_r = h_init,r + δ_r. All active requests share one forward/backward per step; Adam state,
step count, early stopping and the clamp to `clamp_norm_factor · ‖h_init‖` are per request, so a
request's result does not depend on which others share its batch.

Positions before the subject's last token do not depend on δ (causal attention), so with
`reuse_prefix` their keys/values are computed once and every step runs only the remaining tokens.
Nor do the blocks below the shifted module: their output over those tokens is recorded at the
first step and replayed at every later one, so a step computes only the blocks from `z_layer` up
(the gradient never reached below it anyway). Logits are computed only at target positions and at
the KL position.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers.cache_utils import DynamicCache

from ..data.requests import EditRequest
from ..data.tokenization import encode, encode_continuation, fill, pad_right, subject_last_index
from ..models.adapter import cache_argument, model_device, output_cache
from ..models.hooks import edit_output, hidden_of, replay_blocks
from ..models.registry import LoadedModel
from ..progress import progress
from .config import TargetConfig

log = logging.getLogger(__name__)


class EditingError(RuntimeError):
    """An editor could not produce a valid update; names the request where it can."""


@dataclass
class TargetResult:
    z: torch.Tensor  # (n, d) targets: the shifted module output at the subject's last token
    h_init: torch.Tensor  # (n, d)
    delta_norm: list[float]
    final_nll: list[float]
    steps: list[int]


@dataclass
class _Row:
    request: int
    ids: list[int]
    lookup: int  # subject-last index in ids
    targets: list[tuple[int, int]]  # (position, token) pairs predicting target tokens
    is_kl: bool


def _rows_for(
    lm: LoadedModel, req_index: int, req: EditRequest, templates: Sequence[str]
) -> list[_Row]:
    tok = lm.tokenizer
    rows = []
    for t in templates:
        filled = fill(req.prompt, req.subject, req.context(t))
        cont = encode_continuation(tok, filled.text, req.target_new)
        ids = list(cont.prompt_ids) + list(cont.target_ids[:-1])
        start = len(cont.prompt_ids) - 1
        rows.append(
            _Row(
                req_index,
                ids,
                subject_last_index(tok, filled),
                [(start + j, t_) for j, t_ in enumerate(cont.target_ids)],
                False,
            )
        )
    kl = fill("{} is a", req.subject)
    rows.append(_Row(req_index, encode(tok, kl.text), subject_last_index(tok, kl), [], True))
    return rows


def optimise_targets(
    lm: LoadedModel,
    requests: Sequence[EditRequest],
    templates: Sequence[str],
    at: int | str,
    cfg: TargetConfig,
    *,
    replay_lower_blocks: bool = True,
) -> TargetResult:
    """z for every request, in chunks of `cfg.batch_requests` requests. `at` is a layer index (the
    block's output, MEMIT's residual stream) or a module name whose output is shifted.
    `replay_lower_blocks=False` recomputes the blocks below `at` at every step (the same result,
    slower; for measuring what the replay saves)."""
    if isinstance(at, int):
        lm.adapter.check_layer(lm.model, at)
        at = lm.adapter.block_name(at)
    parts = []
    chunks = [
        list(range(i, min(i + cfg.batch_requests, len(requests))))
        for i in range(0, len(requests), cfg.batch_requests)
    ]
    for chunk in chunks:
        parts.append(
            _optimise_chunk(
                lm, [requests[i] for i in chunk], templates, at, cfg, replay_lower_blocks
            )
        )
    return TargetResult(
        z=torch.cat([p.z for p in parts]),
        h_init=torch.cat([p.h_init for p in parts]),
        delta_norm=[x for p in parts for x in p.delta_norm],
        final_nll=[x for p in parts for x in p.final_nll],
        steps=[x for p in parts for x in p.steps],
    )


def _optimise_chunk(
    lm: LoadedModel,
    requests: Sequence[EditRequest],
    templates: Sequence[str],
    module: str,
    cfg: TargetConfig,
    replay_lower_blocks: bool,
) -> TargetResult:
    model, adapter = lm.model, lm.adapter
    device = model_device(model)
    rows = [row for i, r in enumerate(requests) for row in _rows_for(lm, i, r, templates)]
    n, d = len(requests), adapter.hidden_dim(model)
    lower = _blocks_unaffected_by(lm, module) if replay_lower_blocks else []
    batch = _Batch(lm, rows, cfg.reuse_prefix, device, lower)

    delta = torch.zeros(n, d, device=device)
    adam = _RowAdam(delta.shape, device, cfg.lr)
    active = torch.ones(n, dtype=torch.bool)
    h_init = kl_init = None
    final_nll = torch.full((n,), float("nan"))
    plain_rows = [
        i * (len(templates) + 1) for i in range(n)
    ]  # rows are request-major, plain template first

    for step in progress(range(cfg.steps), desc=f"targets z ({n} requests)"):
        act_rows = [i for i, r in enumerate(rows) if active[r.request]]
        req_of_row = torch.tensor([rows[i].request for i in act_rows], device=device)
        d_var = delta.detach().clone().requires_grad_(True)
        hidden, h_seen = batch.forward(act_rows, module, d_var[req_of_row])
        if step == 0:  # every row is active at step 0, so act_rows == range(len(rows))
            h_init = h_seen[plain_rows].float()

        nll = _target_nll(lm, rows, batch, act_rows, hidden, req_of_row, n) / len(templates)
        kl_rows = [k for k, i in enumerate(act_rows) if rows[i].is_kl]
        kl_logp = torch.log_softmax(
            adapter.logits(
                model, hidden[kl_rows, [batch.lookup[act_rows[k]] for k in kl_rows]]
            ).float(),
            -1,
        )
        kl_req = torch.tensor([rows[act_rows[k]].request for k in kl_rows], device=device)
        if kl_init is None:  # P_init: the distribution before any step
            kl_init = torch.zeros(n, kl_logp.shape[-1], device=device)
            kl_init[kl_req] = kl_logp.detach()
        kl = torch.zeros(
            n, device=device
        ).index_add(  # KL(P_now ‖ P_init), as the reference computes it (P15)
            0, kl_req, (kl_logp.exp() * (kl_logp - kl_init[kl_req])).sum(-1)
        )
        wd = (
            cfg.weight_decay * d_var.norm(dim=-1) / h_init.norm(dim=-1).clamp(min=1e-6) ** 2
        )  # ‖δ‖, not ‖δ‖² (P15)
        loss = torch.where(active.to(device), nll + cfg.kl_factor * kl + wd, torch.zeros_like(nll))

        if not torch.isfinite(loss).all():
            bad = [requests[i].case_id for i in range(n) if not torch.isfinite(loss[i])]
            raise EditingError(f"non-finite target loss at step {step} for request(s) {bad[:5]}")
        final_nll = torch.where(active, nll.detach().cpu(), final_nll)
        a = active.to(device)
        log.debug(
            "step %d: %d active, mean nll %.3f kl %.3f wd %.4f",
            step,
            int(active.sum()),
            float(nll.detach()[a].mean()),
            float(kl.detach()[a].mean()),
            float(wd.detach()[a].mean()),
        )
        done = (loss.detach().cpu() < cfg.early_stop_loss) & active
        if (
            step == cfg.steps - 1
        ):  # the last iteration measures but takes no step (reference behaviour)
            break
        loss.sum().backward()
        delta = adam.step(delta, d_var.grad, (active & ~done).to(device))
        max_norm = cfg.clamp_norm_factor * h_init.norm(dim=-1, keepdim=True)
        norm = delta.norm(dim=-1, keepdim=True)
        delta = torch.where(norm > max_norm, delta * max_norm / norm, delta)
        active &= ~done
        if not active.any():
            break

    z = (h_init + delta).detach().cpu()
    dn = delta.norm(dim=-1).cpu()
    for i, r in enumerate(requests):
        log.debug(
            "z %s: |delta|=%.3f |h_init|=%.3f nll=%.4f steps=%d",
            r.case_id,
            float(dn[i]),
            float(h_init[i].norm()),
            float(final_nll[i]),
            int(adam.steps[i]),
        )
    return TargetResult(z, h_init.cpu(), dn.tolist(), final_nll.tolist(), adam.steps.cpu().tolist())


def _blocks_unaffected_by(lm: LoadedModel, module: str) -> list[nn.Module]:
    """The leading blocks whose output a shift of `module`'s output cannot change: up to and including
    `module` when it is a block (the shift is added after it), the blocks before the one holding it
    otherwise."""
    model, adapter = lm.model, lm.adapter
    target = model.get_submodule(module)
    for layer in range(adapter.n_layers(model)):
        block = adapter.block_module(model, layer)
        if block is target:
            return [adapter.block_module(model, i) for i in range(layer + 1)]
        if any(m is target for m in block.modules()):
            return [adapter.block_module(model, i) for i in range(layer)]
    return []


def _target_nll(
    lm: LoadedModel,
    rows: list[_Row],
    batch: _Batch,
    act_rows: list[int],
    hidden: torch.Tensor,
    req_of_row: torch.Tensor,
    n: int,
) -> torch.Tensor:
    """Per request, the sum over its template rows of the mean target-token NLL (logits only at targets)."""
    device = hidden.device
    pos_row, pos_col, labels = [], [], []
    for k, i in enumerate(act_rows):
        for p, t in rows[i].targets:
            pos_row.append(k)
            pos_col.append(p - batch.offset[i])
            labels.append(t)
    logits = lm.adapter.logits(
        lm.model, hidden[torch.tensor(pos_row), torch.tensor(pos_col)]
    ).float()
    tok_nll = -torch.log_softmax(logits, -1).gather(
        1, torch.tensor(labels, device=device)[:, None]
    )[:, 0]
    owner = torch.tensor(pos_row, device=device)
    row_nll = torch.zeros(len(act_rows), device=device).index_add(0, owner, tok_nll)
    row_len = torch.zeros(len(act_rows), device=device).index_add(
        0, owner, torch.ones_like(tok_nll)
    )
    row_nll = row_nll / row_len.clamp(min=1)  # KL rows have no targets: 0
    return torch.zeros(n, device=device).index_add(0, req_of_row, row_nll)


class _RowAdam:
    """Adam over the rows of a matrix, each row with its own step count; rows outside `mask` stay frozen
    (moments included), so a request's trajectory does not depend on the others in its batch."""

    def __init__(
        self,
        shape: torch.Size,
        device: torch.device,
        lr: float,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m = torch.zeros(shape, device=device)
        self.v = torch.zeros(shape, device=device)
        self.steps = torch.zeros(shape[0], dtype=torch.long, device=device)

    def step(self, param: torch.Tensor, grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b1, b2 = self.betas
        u = mask[:, None]
        self.steps += mask.long()
        self.m = torch.where(u, b1 * self.m + (1 - b1) * grad, self.m)
        self.v = torch.where(u, b2 * self.v + (1 - b2) * grad * grad, self.v)
        t = self.steps.clamp(min=1)[:, None].float()
        update = self.lr * (self.m / (1 - b1**t)) / ((self.v / (1 - b2**t)).sqrt() + self.eps)
        return torch.where(u, param - update, param)


class _Batch:
    """Right-padded token rows, optionally split at the subject's last token with a cached prefix;
    the output of the `lower` blocks over the suffixes is recorded by the first forward (which runs
    every row) and replayed by the later ones."""

    def __init__(
        self,
        lm: LoadedModel,
        rows: list[_Row],
        reuse_prefix: bool,
        device: torch.device,
        lower: Sequence[nn.Module] = (),
    ):
        self.lm, self.device = lm, device
        self.lower = list(lower)
        self.lower_out: torch.Tensor | None = (
            None  # (rows, width, d): the last lower block's output
        )
        self.lower_as_tuple = False
        self.replaying = False
        pad = lm.tokenizer.pad_token_id
        self.offset = [r.lookup if reuse_prefix else 0 for r in rows]
        self.lookup = [r.lookup - o for r, o in zip(rows, self.offset)]
        suffixes = [r.ids[o:] for r, o in zip(rows, self.offset)]
        self.prefix_len = torch.tensor(self.offset)
        self.ids, self.mask = pad_right(suffixes, pad)
        self.kv = None
        p = int(self.prefix_len.max()) if rows else 0
        self.prefix_mask = torch.zeros((len(rows), p), dtype=torch.long)
        if p > 0 and not self._cache_prefixes(rows, p, pad):
            log.debug(
                "a cache layer keeps fewer than %d positions (sliding window); not reusing prefixes",
                p,
            )
            self.__init__(lm, rows, False, device, lower)

    @torch.no_grad()
    def _cache_prefixes(self, rows: list[_Row], p: int, pad: int) -> bool:
        ids = torch.full((len(rows), p), pad, dtype=torch.long)
        for i, (r, o) in enumerate(zip(rows, self.offset)):
            if o:
                ids[i, p - o :] = torch.tensor(r.ids[:o])
                self.prefix_mask[i, p - o :] = 1
        pos = (self.prefix_mask.cumsum(-1) - 1).clamp(min=0)
        model = self.lm.model
        out = self.lm.adapter.backbone(model)(
            input_ids=ids.to(self.device),
            attention_mask=self.prefix_mask.to(self.device),
            position_ids=pos.to(self.device),
            use_cache=True,
        )
        cache = output_cache(out)
        keep = self.prefix_mask.bool().to(self.device)[:, None, :, None]
        self.kv = []
        for layer in cache.layers:
            k, v = layer.keys, layer.values
            if k.shape[-2] != p:
                self.kv = None
                return False
            # pad slots may hold NaN (fully masked rows); they are masked later, but NaN·0 is NaN
            self.kv.append((torch.where(keep, k, 0.0), torch.where(keep, v, 0.0)))
        return True

    def forward(
        self, act_rows: list[int], block: str, deltas: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the suffixes of `act_rows`, adding deltas[k] to `block`'s output at row k's lookup token.

        Returns the final hidden states (len(act_rows), width, d) and the block's output at the
        lookup tokens before the addition (len(act_rows), d). Rows run in buckets of equal suffix
        length, so no compute is spent on padding (merging neighbouring lengths into fewer, padded
        buckets measured no faster on the CPU).
        """
        lengths = self.mask[act_rows].sum(-1).tolist()
        buckets: dict[int, list[int]] = {}
        for k, n in enumerate(lengths):
            buckets.setdefault(n, []).append(k)
        parts, seen = {}, deltas.new_zeros(deltas.shape).detach()
        for n, ks in buckets.items():
            ks_t = torch.tensor(ks, device=deltas.device)
            look = torch.tensor([self.lookup[act_rows[k]] for k in ks], device=deltas.device)
            rows = torch.arange(len(ks), device=deltas.device)

            def add(h: torch.Tensor, ks_t=ks_t, look=look, rows=rows) -> torch.Tensor:
                seen[ks_t] = h[rows, look].detach().to(seen.dtype)
                return h.index_put((rows, look), deltas[ks_t].to(h.dtype), accumulate=True)

            batch_rows = [act_rows[k] for k in ks]
            with edit_output(self.lm.model, block, add), self._lower_blocks(batch_rows, n):
                parts[n] = self._forward_rows(batch_rows, n)
        # replay only once a forward has recorded every row (step 0 runs them all)
        self.replaying = bool(self.lower) and (self.replaying or len(act_rows) == len(self.offset))
        if len(parts) == 1:
            return next(iter(parts.values())), seen
        first = next(iter(parts.values()))
        hidden = first.new_zeros(len(act_rows), max(lengths), first.shape[-1])
        for n, ks in buckets.items():
            hidden = hidden.index_put(
                (
                    torch.tensor(ks, device=hidden.device)[:, None],
                    torch.arange(n, device=hidden.device)[None],
                ),
                parts[n],
            )
        return hidden, seen

    @contextmanager
    def _lower_blocks(self, rows: list[int], width: int) -> Iterator[None]:
        """Replay the lower blocks' recorded output for `rows`, or record it while they run."""
        if not self.lower:
            yield
            return
        idx = torch.tensor(rows, device=self.device)
        if self.replaying:
            out = self.lower_out
            with replay_blocks(self.lower, lambda: out[idx, :width], self.lower_as_tuple):
                yield
            return

        def keep(module, args, output) -> None:
            h = hidden_of(output).detach()
            if self.lower_out is None:
                self.lower_out = h.new_zeros(len(self.offset), self.ids.shape[1], h.shape[-1])
            self.lower_out[idx, :width] = h
            self.lower_as_tuple = isinstance(output, tuple)

        # prepended, so it sees the block's own output before a hook adds δ to it
        handle = self.lower[-1].register_forward_hook(keep, prepend=True)
        try:
            yield
        finally:
            handle.remove()

    def _forward_rows(self, rows: list[int], width: int) -> torch.Tensor:
        idx = torch.tensor(rows)
        ids, mask = self.ids[idx, :width], self.mask[idx, :width]
        pos = self.prefix_len[idx][:, None] + torch.arange(width)[None]
        kwargs = {}
        backbone = self.lm.adapter.backbone(self.lm.model)
        if self.kv is not None:
            dev_idx = idx.to(self.device)
            cache = DynamicCache(
                ddp_cache_data=[(k[dev_idx], v[dev_idx]) for k, v in self.kv],
                config=self.lm.model.config,
            )
            mask = torch.cat([self.prefix_mask[idx], mask], dim=1)
            kwargs = {cache_argument(backbone): cache, "use_cache": True}
        out = backbone(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=pos.to(self.device),
            **kwargs,
        )
        return out.last_hidden_state
