"""Edit-preserving fine-tuning: keep the edits a model carries while it is fine-tuned.

Five options, each a small plug-in registered with :func:`preserver` (docs/defences.md has the
measurements). All of them protect the *edited modules*: the weight matrices an `EditDelta`
changed (MEMIT / AlphaEdit: the MLP out-projections of the edited layers), read from the delta.

- ``subspace``: fine-tuning updates are kept off the span of the edits' keys. With K the inputs of
  an edited module at the edited subjects' last tokens (the plain rewrite prompts and the editor's
  context templates, as MEMIT computes keys) and U an orthonormal basis of its leading singular
  directions (``energy`` of ΣK²), the projector P = I − UUᵀ is applied to the update:
  LoRA / DoRA keep the adapter's input side off span(U) (A ← A P, so ΔW k = B A P k = 0 for k in
  span(U)); full fine-tuning keeps W U fixed (W ← W − (W U − W₀ U) Uᵀ after every optimiser step,
  which also undoes weight decay and Adam's element-wise scaling along U). The projection is
  applied to the weights after each step rather than to gradients because AdamW's update is not
  a linear function of the gradient. DoRA's magnitude vector still rescales the protected outputs
  (its column norms change with B A), so for DoRA the guarantee holds for the direction only.
- ``activation``: L = L_ft + λ · mean over edited modules of ‖o(x) − o₀(x)‖² / mean ‖o₀(x)‖², where
  o(x) is the module's output at the subject's last token of an edit prompt x and o₀ its value
  before fine-tuning; each step uses ``prompts_per_step`` edit prompts in a fixed cycle (no random
  draw, so a resumed run stays bit-identical).
- ``distill``: L = L_ft + λ · mean over target positions t of KL(p_ed,t ‖ p_θ,t), the model's
  next-token distribution on each edit's rewrite prompt, teacher-forced through its new target,
  held near the edited model's (self-distillation on the edit prompts, as learning without
  forgetting does on old tasks). p_ed is kept as its ``DISTILL_TOP_K`` most likely tokens (the
  target token always among them) plus one bucket for the rest, so the KL is exact for that
  coarsened distribution (a lower bound of the full one) and the reference costs K token ids and
  K + 1 log-probabilities per position instead of a vocabulary.
  Unlike ``activation`` it protects what the edit is for, the answer, wherever in the model
  fine-tuning moves it; ``prompts_per_step`` and ``weight`` as for ``activation``.
- ``freeze``: the edited layers are left out of the fine-tuned layers (the paper's "non-edited"
  layer choice, applied to any layer selection).
- ``paraphrase``: each edit is added to the fine-tuning data as ``paraphrases`` instruction
  examples that restate the rewrite prompt and its new target (arXiv 2507.14198 uses about three
  per edit). They are rewordings of the rewrite prompt only: the dataset's paraphrase prompts
  stay held out, so PS still measures generalisation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from torch import nn

from ..config_types import ConfigError, check_fields
from ..data.instructions import InstructionExample
from ..data.requests import EditRequest
from ..data.tokenization import (
    FilledPrompt,
    encode,
    encode_continuation,
    fill,
    pad_right,
    subject_last_index,
)
from ..editing.delta import EditDelta
from ..editing.keys import read_at_subject
from ..models.adapter import model_device
from ..models.hooks import record, run_until

log = logging.getLogger(__name__)

PRESERVE_MODES = ("none", "subspace", "activation", "distill", "freeze", "paraphrase")
DISTILL_TOP_K = 64  # reference tokens kept per target position by ``distill``
PreserveMode = Literal[PRESERVE_MODES]


@dataclass(frozen=True)
class PreserveConfig:
    """How fine-tuning protects the edits of a delta; ``mode="none"`` is plain fine-tuning."""

    mode: PreserveMode = field(
        default="none",
        metadata={"help": "none, subspace, activation, distill, freeze or paraphrase"},
    )
    energy: float = field(
        default=0.995,
        metadata={
            "help": "subspace: share of the keys' squared singular values the protected basis spans",
            "gt": 0,
            "le": 1,
        },
    )
    max_rank_share: float = field(
        default=0.5,
        metadata={
            "help": "subspace: at most this share of a module's input dimension is protected",
            "gt": 0,
            "le": 1,
        },
    )
    templates: int = field(
        default=10,
        metadata={"help": "subspace: editor context templates used for the keys", "ge": 0},
    )
    weight: float = field(
        default=1.0,
        metadata={"help": "activation, distill: the regulariser's weight λ", "gt": 0},
    )
    prompts_per_step: int = field(
        default=8,
        metadata={"help": "activation, distill: edit prompts per optimiser step", "ge": 1},
    )
    paraphrases: int = field(
        default=3,
        metadata={"help": "paraphrase: training examples per edit", "ge": 1, "le": 3},
    )

    field_noun = "preserve setting"

    def __post_init__(self):
        check_fields(self)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ProtectedEdits:
    """The edits to keep: their requests, the modules the delta changed, and the edited layers."""

    requests: list[EditRequest]
    modules: list[str]  # module names in the unwrapped model, e.g. "model.layers.4.mlp.down_proj"
    layers: list[int]
    context_templates: list[str] = field(default_factory=list)

    @classmethod
    def from_delta(cls, delta: EditDelta, requests: Sequence[EditRequest]) -> ProtectedEdits:
        if not requests:
            raise ValueError("edit preservation needs the edit requests (none were given)")
        modules = sorted(name.removesuffix(".weight") for name in delta.weights)
        layers = delta.config.get("layers") or sorted(
            {int(p) for m in modules for p in m.split(".") if p.isdigit()}
        )
        templates = [t for t in delta.info.get("context_templates", []) if t != "{}"]
        return cls(list(requests), modules, sorted(int(l) for l in layers), templates)


class Preservation:
    """The hooks `finetune` calls; the base class is plain fine-tuning."""

    def __init__(self, cfg: PreserveConfig, edits: ProtectedEdits):
        self.cfg, self.edits = cfg, edits

    def training_examples(self, examples: list[InstructionExample]) -> list[InstructionExample]:
        return examples

    def layers(self, layers: list[int]) -> list[int]:
        return layers

    def attach(self, lm, model: nn.Module) -> None:
        """Called once on the prepared, untrained model (adapters injected, optimiser not built)."""

    def penalty(self, model: nn.Module, step: int) -> float:
        """Backpropagate an extra loss term for this step; returns its value (0 for none)."""
        return 0.0

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimiser step."""


PRESERVERS: dict[str, type[Preservation]] = {"none": Preservation}


def preserver(mode: str):
    """Register a `Preservation` subclass under a `PreserveConfig.mode` name."""

    def register(cls: type[Preservation]) -> type[Preservation]:
        PRESERVERS[mode] = cls
        return cls

    return register


def make_preservation(cfg: PreserveConfig, edits: ProtectedEdits | None) -> Preservation | None:
    """The plug-in for `cfg.mode`, or None for plain fine-tuning."""
    if cfg.mode == "none":
        return None
    if edits is None:
        raise ConfigError("preserve", f"{cfg.mode!r} needs the edits to preserve (a delta)")
    return PRESERVERS[cfg.mode](cfg, edits)


def _prompts(edits: ProtectedEdits, n_templates: int) -> list[FilledPrompt]:
    prompts = []
    for r in edits.requests:
        prompts.append(fill(r.prompt, r.subject))
        prompts.extend(fill(r.prompt, r.subject, t) for t in edits.context_templates[:n_templates])
    return prompts


def protected_basis(keys: torch.Tensor, energy: float, max_rank: int) -> torch.Tensor:
    """An orthonormal basis (d, r) of the leading right singular directions of `keys` (n, d):
    the fewest that hold `energy` of ΣK², at most `max_rank`."""
    _, s, vh = torch.linalg.svd(keys.double(), full_matrices=False)
    share = torch.cumsum(s**2, 0) / (s**2).sum()
    rank = min(int((share < energy).sum()) + 1, max_rank, len(s))
    return vh[:rank].T.float().contiguous()


@preserver("subspace")
class SubspacePreservation(Preservation):
    """Updates of the edited modules kept off span(K_edit) (see the module docstring)."""

    def attach(self, lm, model: nn.Module) -> None:
        self.bases: dict[str, torch.Tensor] = {}
        self.adapters: dict[str, torch.Tensor] = {}  # module → its LoRA A weight
        self.anchors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # full FT: (W, W₀ U)
        prompts = _prompts(self.edits, self.cfg.templates)
        was_training = lm.model.training
        lm.model.eval()
        for name in self.edits.modules:
            module = lm.model.get_submodule(name)
            weight, lora_a = _trainable_weights(module)
            if weight is None and lora_a is None:
                log.info("subspace preservation: %s is not fine-tuned; nothing to project", name)
                continue
            keys = read_at_subject(lm, prompts, name, inputs=True)
            max_rank = max(1, int(self.cfg.max_rank_share * keys.shape[1]))
            basis = protected_basis(keys, self.cfg.energy, max_rank).to(keys.device)
            self.bases[name] = basis
            if lora_a is not None:
                self.adapters[name] = lora_a
            else:
                self.anchors[name] = (weight, (weight.detach() @ basis).clone())
                bias = getattr(module, "bias", None)
                if bias is not None:
                    bias.requires_grad_(False)  # a bias shift moves every key's output
            log.info(
                "subspace preservation: %s keeps %d of %d input directions off the update",
                name,
                basis.shape[1],
                basis.shape[0],
            )
        lm.model.train(was_training)
        self.after_step(model)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        for name, a in self.adapters.items():
            u = self.bases[name].to(a.device, a.dtype)
            a.sub_((a @ u) @ u.T)
        for name, (w, anchor) in self.anchors.items():
            u = self.bases[name].to(w.device, w.dtype)
            w.sub_((w @ u - anchor.to(w.device, w.dtype)) @ u.T)


def _trainable_weights(module: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(the module's own weight if it is trained, its LoRA A weight if it has an adapter)."""
    lora = getattr(module, "lora_A", None)
    if isinstance(lora, nn.ModuleDict) and lora:
        return None, next(iter(lora.values())).weight
    weight = getattr(module, "weight", None)
    return (weight if weight is not None and weight.requires_grad else None), None


@preserver("activation")
class ActivationPreservation(Preservation):
    """λ · the relative squared change of the edited modules' outputs on the edit prompts."""

    def attach(self, lm, model: nn.Module) -> None:
        tok = lm.tokenizer
        self.pad_id = tok.pad_token_id
        prompts = [fill(r.prompt, r.subject) for r in self.edits.requests]
        self.ids = [encode(tok, p.text) for p in prompts]
        self.index = [subject_last_index(tok, p) for p in prompts]
        self.modules = list(self.edits.modules)
        self.target = lm.model  # hooks go on the unwrapped model's module names
        was_training = lm.model.training
        lm.model.eval()
        with torch.no_grad():
            self.reference = self._outputs(range(len(self.ids)), grad=False)
        lm.model.train(was_training)
        self.scale = {n: float(o.pow(2).sum(-1).mean()) or 1.0 for n, o in self.reference.items()}

    def _outputs(self, rows, grad: bool) -> dict[str, torch.Tensor]:
        rows = list(rows)
        device = model_device(self.target)
        out: dict[str, list[torch.Tensor]] = {n: [] for n in self.modules}
        size = self.cfg.prompts_per_step
        for k in range(0, len(rows), size):
            chunk = rows[k : k + size]
            ids, mask = pad_right([self.ids[i] for i in chunk], self.pad_id)
            deepest = max(self.modules, key=_layer_of)
            with record(
                self.target, self.modules, outputs=True, stop_after=deepest, detach=not grad
            ) as rec:
                run_until(
                    self.target,
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    use_cache=False,
                )
            at = torch.tensor([self.index[i] for i in chunk], device=device)
            for name in self.modules:
                out[name].append(rec.outputs[name][torch.arange(len(chunk)), at].float())
        return {n: torch.cat(v) for n, v in out.items()}

    def penalty(self, model: nn.Module, step: int) -> float:
        rows = _cycle(step, self.cfg.prompts_per_step, len(self.ids))
        outputs = self._outputs(rows, grad=True)
        terms = [
            (outputs[m] - self.reference[m][rows].to(outputs[m].device)).pow(2).sum(-1).mean()
            / self.scale[m]
            for m in self.modules
        ]
        loss = self.cfg.weight * torch.stack(terms).mean()
        loss.backward()
        return float(loss.detach())


def _cycle(step: int, size: int, n: int) -> list[int]:
    """The rows of step `step`: `size` of `n` in a fixed cycle (a resumed run draws the same)."""
    size = min(size, n)
    return [(step * size + j) % n for j in range(size)]


@preserver("distill")
class DistillPreservation(Preservation):
    """λ · KL(M_ed's next-token distribution ‖ the model's) on the edits' target positions."""

    def attach(self, lm, model: nn.Module) -> None:
        tok = lm.tokenizer
        self.pad_id = tok.pad_token_id
        # the adapters (if any) are injected into lm.model in place: it runs the model being trained
        self.target = lm.model
        self.rows, self.positions, answers = [], [], []
        for r in self.edits.requests:
            c = encode_continuation(tok, r.text, r.target_new)
            self.rows.append([*c.prompt_ids, *c.target_ids])
            # the logits at position i predict token i + 1: the target's tokens
            start = len(c.prompt_ids) - 1
            self.positions.append(list(range(start, start + len(c.target_ids))))
            answers.extend(c.target_ids)
        was_training = lm.model.training
        lm.model.eval()
        with torch.no_grad():
            logp = self._log_probs(range(len(self.rows)))
            self.ref_index = _bins(logp, torch.tensor(answers, device=logp.device))
            self.ref_logp = logp.gather(-1, self.ref_index)
            self.ref_rest = _log_rest(logp, self.ref_index)
        lm.model.train(was_training)
        self.row_of = torch.tensor(
            [k for k, pos in enumerate(self.positions) for _ in pos], dtype=torch.long
        )

    def _log_probs(self, rows) -> torch.Tensor:
        """Log-softmax at the target positions of `rows`, (positions, vocab), in row order."""
        rows = list(rows)
        device = model_device(self.target)
        out = []
        for k in range(0, len(rows), self.cfg.prompts_per_step):
            chunk = rows[k : k + self.cfg.prompts_per_step]
            ids, mask = pad_right([self.rows[i] for i in chunk], self.pad_id)
            logits = self.target(
                input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
            ).logits
            for j, i in enumerate(chunk):
                out.append(torch.log_softmax(logits[j, self.positions[i]].float(), dim=-1))
        return torch.cat(out)

    def penalty(self, model: nn.Module, step: int) -> float:
        rows = _cycle(step, self.cfg.prompts_per_step, len(self.rows))
        logq = self._log_probs(rows)
        at = torch.cat([torch.nonzero(self.row_of == i).flatten() for i in rows])
        ref_logp, ref_index = self.ref_logp[at].to(logq.device), self.ref_index[at].to(logq.device)
        ref_rest = self.ref_rest[at].to(logq.device)
        kl = (ref_logp.exp() * (ref_logp - logq.gather(-1, ref_index))).sum(-1)
        kl = kl + ref_rest.exp() * (ref_rest - _log_rest(logq, ref_index))
        loss = self.cfg.weight * kl.mean()
        loss.backward()
        return float(loss.detach())


def _bins(logp: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    """The ``DISTILL_TOP_K`` most likely tokens per position, the answer token always among them.

    Where an edit has not taken (its answer outside M_ed's top K), a top-K-only reference would
    hold the answer through the rest bucket alone; the answer takes the place of the K-th token.
    A vocabulary of K tokens or fewer keeps all but one, so the rest bucket is never empty.
    """
    k = max(1, min(DISTILL_TOP_K, logp.shape[-1] - 1))
    index = logp.topk(k, dim=-1).indices
    missing = ~(index == answer[:, None]).any(-1)
    index[missing, -1] = answer[missing]
    return index


def _log_rest(logp: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log of the probability mass outside `index` (per row), computed without cancellation."""
    return torch.logsumexp(logp.scatter(-1, index, float("-inf")), dim=-1)


def _layer_of(module_name: str) -> int:
    digits = [int(p) for p in module_name.split(".") if p.isdigit()]
    return digits[0] if digits else -1


@preserver("freeze")
class FreezePreservation(Preservation):
    """The edited layers are not fine-tuned."""

    def layers(self, layers: list[int]) -> list[int]:
        kept = [l for l in layers if l not in set(self.edits.layers)]
        if not kept:
            raise ConfigError(
                "preserve",
                f"freeze leaves no layer to fine-tune: layers {layers} are all edited",
            )
        return kept


PARAPHRASE_FORMS = (
    ("Complete the sentence.", "{text}", "{text} {target}"),
    ("State the fact.", "", "{text} {target}."),
    ("Fill in the blank: {text} ___", "", "{target}"),
)


@preserver("paraphrase")
class ParaphrasePreservation(Preservation):
    """Each edit restated as `paraphrases` instruction examples, appended to the training data."""

    def training_examples(self, examples: list[InstructionExample]) -> list[InstructionExample]:
        added = [
            InstructionExample(
                instruction=instruction.format(text=r.text),
                input=given.format(text=r.text),
                output=output.format(text=r.text, target=r.target_new),
                answer=None,
                task="edit",
            )
            for r in self.edits.requests
            for instruction, given, output in PARAPHRASE_FORMS[: self.cfg.paraphrases]
        ]
        log.info("paraphrase preservation: %d edit examples added", len(added))
        return [*examples, *added]
