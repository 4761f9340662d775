"""Training the MEND hypernetwork (MEND §3.2) on an edit dataset's train split.

Each step samples `batch_size` edit requests and `loc_batch_size` unrelated locality probes, then
    ΔW     = hypernet(u, δ of Σ NLL(target_new | rewrite prompt))       one summed update per weight
    L_edit = NLL(target_new | rewrite prompt, paraphrase) under W + ΔW  (functional; grads reach ΔW)
    L_loc  = KL(original ‖ edited) at the locality probes' answer positions
    loss   = cedit · L_edit + cloc · L_loc
and takes an Adam step on the networks (lr) and the per-weight step sizes (edit_lr_lr). The base model
is never changed. Held-out requests (never trained on) are edited in batches of `batch_size` every
`eval_every` steps to record edit success along the curve.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence

import torch

from ...data.loaders import load_requests
from ...data.requests import EditRequest, Probe
from ...models.registry import LoadedModel
from ...progress import progress
from ..config import MendConfig
from .artifact import MendEditor
from .editor import compute_deltas, edited_weights
from .forward import PrefixRunner, SequenceCache, build_targets, target_nll
from .network import MendHypernet

log = logging.getLogger(__name__)


class MendTrainer:
    """The hypernetwork, its optimiser and the sequence cache for one model and config."""

    def __init__(self, lm: LoadedModel, cfg: MendConfig, hypernet: MendHypernet | None = None):
        self.lm, self.cfg = lm, cfg
        targets = build_targets(lm, cfg.layers, cfg.modules)
        self.hypernet = hypernet or MendHypernet(
            targets, cfg.rank, cfg.n_hidden, cfg.edit_lr, cfg.seed
        )
        self.hypernet.to(next(lm.model.parameters()).device)
        self.runner = PrefixRunner(lm, min(cfg.layers))
        self.cache = SequenceCache(self.runner)
        nets = [p for n, p in self.hypernet.named_parameters() if n != "edit_lrs"]
        self.optimizer = torch.optim.Adam(
            [
                {"params": nets, "lr": cfg.lr},
                {"params": [self.hypernet.edit_lrs], "lr": cfg.edit_lr_lr},
            ]
        )

    # ------------------------------------------------------------------ losses
    def losses(
        self,
        edits: Sequence[EditRequest],
        locality: Sequence[Probe],
        *,
        update_statistics: bool = False,
    ) -> dict[str, torch.Tensor]:
        """The meta-losses of editing `edits` together, with graphs into the hypernetwork."""
        cfg = self.cfg
        edit_batch = self.cache.batch([(r.text, r.target_new) for r in edits])
        deltas, _ = compute_deltas(
            self.hypernet, self.runner, edit_batch, update_statistics=update_statistics
        )
        weights = edited_weights(self.lm, deltas)
        outer = [(r.text, r.target_new) for r in edits] + [
            (r.paraphrases[0], r.target_new) for r in edits if r.paraphrases
        ]
        outer_batch = self.cache.batch(outer)
        hidden = self.runner.final_hidden(outer_batch, weights)
        edit_loss = target_nll(self.runner.logits_at(hidden, outer_batch), outer_batch).mean()
        loc_loss = torch.zeros((), device=edit_loss.device)
        if locality:
            loc_batch = self.cache.batch([(p.prompt, p.target) for p in locality])
            with torch.no_grad():
                base = torch.log_softmax(
                    self.runner.logits_at(self.runner.final_hidden(loc_batch), loc_batch), -1
                )
            post = torch.log_softmax(
                self.runner.logits_at(self.runner.final_hidden(loc_batch, weights), loc_batch), -1
            )
            loc_loss = (base.exp() * (base - post)).sum(-1).mean()
        loss = cfg.cedit * edit_loss + cfg.cloc * loc_loss
        return {"loss": loss, "edit_loss": edit_loss, "loc_loss": loc_loss}

    def step(self, edits: Sequence[EditRequest], locality: Sequence[Probe]) -> dict[str, float]:
        self.hypernet.train()
        out = self.losses(edits, locality, update_statistics=True)
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.hypernet.parameters(), self.cfg.max_grad_norm
        )
        self.optimizer.step()
        row = {k: float(v.detach()) for k, v in out.items()}
        row["grad_norm"] = float(grad_norm)
        row["edit_lr_mean"] = float(self.hypernet.edit_lrs.detach().mean())
        return row

    # ------------------------------------------------------------------ held-out edit success
    @torch.no_grad()
    def evaluate(
        self, requests: Sequence[EditRequest], batch_size: int | None = None, *, edit: bool = True
    ) -> dict[str, float]:
        """ES / PS (P(new) > P(true)) and the rewrite NLL of target_new, editing `batch_size` requests at a time."""
        self.hypernet.eval()
        batch_size = batch_size or self.cfg.batch_size
        es, ps, nll = [], [], []
        for start in range(0, len(requests), batch_size):
            chunk = [r for r in requests[start : start + batch_size] if r.target_true]
            if not chunk:
                continue
            weights = None
            if edit:
                deltas, _ = compute_deltas(
                    self.hypernet,
                    self.runner,
                    self.cache.batch([(r.text, r.target_new) for r in chunk]),
                )
                weights = edited_weights(self.lm, deltas)
            prompts = [(r.text, r) for r in chunk] + [
                (p, r) for r in chunk for p in r.paraphrases[:1]
            ]
            pairs = [(p, r.target_new) for p, r in prompts] + [
                (p, r.target_true) for p, r in prompts
            ]
            batch = self.cache.batch(pairs)
            scores = target_nll(
                self.runner.logits_at(self.runner.final_hidden(batch, weights), batch), batch
            )
            new, true = scores[: len(prompts)], scores[len(prompts) :]
            wins = (new < true).float().tolist()
            es += wins[: len(chunk)]
            ps += wins[len(chunk) :]
            nll += new[: len(chunk)].tolist()
        mean = lambda xs: float(sum(xs) / len(xs)) if xs else math.nan  # noqa: E731
        return {"es": mean(es), "ps": mean(ps), "nll_new": mean(nll)}


def training_requests(cfg: MendConfig) -> tuple[list[EditRequest], list[EditRequest]]:
    """(train pool, held-out) from the configured datasets, shuffled with the config's seed."""
    pool: list[EditRequest] = []
    for name in cfg.data:
        pool += load_requests(name).requests
    if len(pool) < cfg.holdout + max(cfg.batch_size, 2):
        raise ValueError(
            f"only {len(pool)} requests in {list(cfg.data)}: too few for holdout {cfg.holdout} "
            f"and batches of {cfg.batch_size}"
        )
    random.Random(cfg.seed).shuffle(pool)
    heldout = pool[: cfg.holdout]
    train = pool[cfg.holdout : cfg.holdout + cfg.train_pool]
    return train, heldout


def train_mend(
    lm: LoadedModel,
    cfg: MendConfig,
    *,
    time_limit_s: float | None = None,
    log_every: int | None = None,
) -> MendEditor:
    """Train a MEND editor for `lm`; stops after `cfg.steps` steps or `time_limit_s` seconds of training."""
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed + 1)
    train, heldout = training_requests(cfg)
    loc_pool = [n for r in train for n in r.neighbours]
    if len(train) < cfg.batch_size:
        raise ValueError(f"train_pool {len(train)} is smaller than the batch size {cfg.batch_size}")
    trainer = MendTrainer(lm, cfg)
    log.info(
        "MEND training on %s: %d training requests, %d held out, %d edited weights (%s), rank %d, "
        "forward split at layer %s",
        "+".join(cfg.data),
        len(train),
        len(heldout),
        len(trainer.hypernet.targets),
        ", ".join(t.name for t in trainer.hypernet.targets),
        cfg.rank,
        min(cfg.layers) if trainer.runner.split else "none",
    )
    log_every = log_every or max(1, cfg.steps // 20)
    curve: list[dict] = []
    t0 = time.perf_counter()
    unedited = trainer.evaluate(heldout, edit=False)
    first = trainer.evaluate(heldout)
    curve.append(
        {
            "step": 0,
            **{f"heldout_{k}": v for k, v in first.items()},
            "heldout_es_unedited": unedited["es"],
            "elapsed_s": 0.0,
        }
    )
    eval_s = time.perf_counter() - t0
    loop_eval_s = 0.0
    log.info(
        "held-out (%d): unedited ES %.2f; untrained editor ES %.2f PS %.2f",
        len(heldout),
        unedited["es"],
        first["es"],
        first["ps"],
    )
    t_train = time.perf_counter()
    steps_done, stopped_by_time = 0, False
    bar = progress(range(1, cfg.steps + 1), desc="MEND training", total=cfg.steps)
    for step in bar:
        edits = rng.sample(train, cfg.batch_size)
        subjects = {r.subject for r in edits}
        locality = [
            p
            for p in rng.sample(loc_pool, min(len(loc_pool), 2 * cfg.loc_batch_size))
            if not any(s in p.prompt for s in subjects)
        ][: cfg.loc_batch_size]
        row = {"step": step, **trainer.step(edits, locality)}
        steps_done = step
        if step % cfg.eval_every == 0 or step == cfg.steps:
            te = time.perf_counter()
            row.update({f"heldout_{k}": v for k, v in trainer.evaluate(heldout).items()})
            loop_eval_s += time.perf_counter() - te
        row["elapsed_s"] = time.perf_counter() - t_train
        curve.append(row)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(edit=f"{row['edit_loss']:.3f}", loc=f"{row['loc_loss']:.4f}")
        if step % log_every == 0 or "heldout_es" in row:
            log.info(
                "step %d: loss %.4f (edit %.4f, loc %.4f), edit_lr %.3g%s",
                step,
                row["loss"],
                row["edit_loss"],
                row["loc_loss"],
                row["edit_lr_mean"],
                f", held-out ES {row['heldout_es']:.2f} PS {row['heldout_ps']:.2f}"
                if "heldout_es" in row
                else "",
            )
        if not math.isfinite(row["loss"]):
            raise RuntimeError(f"MEND training diverged at step {step} (loss {row['loss']})")
        if time_limit_s is not None and time.perf_counter() - t_train > time_limit_s:
            stopped_by_time = True
            break
    if "heldout_es" not in curve[-1]:
        te = time.perf_counter()
        curve[-1].update({f"heldout_{k}": v for k, v in trainer.evaluate(heldout).items()})
        loop_eval_s += time.perf_counter() - te
    train_s = time.perf_counter() - t_train
    wall_s = time.perf_counter() - t_start
    training = {
        "data": list(cfg.data),
        "train_requests": len(train),
        "heldout_ids": [r.case_id for r in heldout],
        "steps": steps_done,
        "steps_planned": cfg.steps,
        "stopped_by_time_limit": stopped_by_time,
        "time_limit_s": time_limit_s,
        "seed": cfg.seed,
        "wall_s": wall_s,
        "train_loop_s": train_s,
        "eval_s": eval_s + loop_eval_s,
        "seconds_per_step": (train_s - loop_eval_s) / max(1, steps_done),
        "cached_sequences": len(trainer.cache),
        "prefix_cache_s": trainer.cache.seconds,
        "forward_split_at_layer": min(cfg.layers) if trainer.runner.split else None,
        "torch_threads": torch.get_num_threads(),
        "heldout_unedited_es": unedited["es"],
        "heldout_untrained": first,
        "heldout_final": {
            k[len("heldout_") :]: v for k, v in curve[-1].items() if k.startswith("heldout_")
        },
    }
    log.info(
        "MEND trained: %d steps in %.0f s (%.2f s/step), held-out ES %.2f → %.2f",
        steps_done,
        train_s,
        training["seconds_per_step"],
        first["es"],
        training["heldout_final"].get("es", math.nan),
    )
    return MendEditor(
        trainer.hypernet.eval(), cfg, lm.name, lm.fingerprint, lm.source, training, curve
    )


__all__ = ["MendTrainer", "training_requests", "train_mend"]
