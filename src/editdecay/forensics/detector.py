"""Flag edited facts from hidden states alone (no base model): a probe trained on edits made here.

Features of a fact, read on the model under test for its rewrite prompt (subject filled in):

- the output of a few blocks at the subject's last token, each scaled to unit norm (where a
  locate-then-edit method writes its value; DEED, arXiv 2405.02765, probes hidden states);
- the next-token distribution after the prompt: the top-1 probability and the entropy (an edit
  is optimised to a near-certain answer).

The detector standardises the features and fits an L2-regularised logistic regression (full-batch
L-BFGS) to edited facts (1) against facts of the same dataset that the model was not edited on
(0). Its quality is the AUROC on facts of *another* edited model, P(score(edited) >
score(unedited)), from the Mann–Whitney U statistic. It is saved as safetensors + JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..analysis.rank_tests import mann_whitney_u
from ..config_types import check_fields
from ..data.requests import EditRequest
from ..data.tokenization import encode, fill, pad_right, subject_last_index
from ..integrity import load_tensors, save_tensors, verify_checksum
from ..models.adapter import model_device
from ..models.hooks import record
from ..models.registry import LoadedModel

DETECTOR_FILE, META_FILE = "detector.safetensors", "detector.json"


@dataclass(frozen=True)
class DetectorConfig:
    layers: tuple[int, ...] | None = field(
        default=None,
        metadata={"help": "blocks read at the subject's last token (default: 4 evenly spaced)"},
    )
    l2: float = field(default=1e-2, metadata={"help": "L2 weight of the logistic fit", "ge": 0})
    steps: int = field(default=100, metadata={"help": "L-BFGS iterations", "ge": 1})
    batch: int = field(default=16, metadata={"help": "prompts per forward pass", "ge": 1})

    field_noun = "detector setting"

    def __post_init__(self):
        check_fields(self)

    def layers_for(self, n_layers: int) -> tuple[int, ...]:
        if self.layers is not None:
            bad = [l for l in self.layers if not 0 <= l < n_layers]
            if bad:
                raise ValueError(f"detector layers {bad} out of range 0..{n_layers - 1}")
            return tuple(self.layers)
        return tuple(sorted({round(i * (n_layers - 1) / 3) for i in range(4)}))


@torch.no_grad()
def fact_features(
    lm: LoadedModel, requests: Sequence[EditRequest], cfg: DetectorConfig | None = None
) -> torch.Tensor:
    """(n, features): the unit-norm block outputs at the subject's last token, then top-1
    probability and entropy of the next token (see the module docstring)."""
    cfg = cfg or DetectorConfig()
    layers = cfg.layers_for(lm.n_layers)
    names = [lm.adapter.block_name(l) for l in layers]
    tok, device = lm.tokenizer, model_device(lm.model)
    prompts = [fill(r.prompt, r.subject) for r in requests]
    rows = []
    for k in range(0, len(prompts), cfg.batch):
        chunk = prompts[k : k + cfg.batch]
        ids = [encode(tok, p.text) for p in chunk]
        at = torch.tensor([subject_last_index(tok, p) for p in chunk], device=device)
        last = torch.tensor([len(i) - 1 for i in ids], device=device)
        batch, mask = pad_right(ids, tok.pad_token_id)
        with record(lm.model, names, outputs=True) as rec:
            logits = lm.model(
                input_ids=batch.to(device), attention_mask=mask.to(device), use_cache=False
            ).logits
        picked = torch.arange(len(chunk), device=device)
        hidden = [rec.outputs[n][picked, at].float() for n in names]
        hidden = [h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12) for h in hidden]
        logp = torch.log_softmax(logits[picked, last].float(), dim=-1)
        top1 = logp.max(dim=-1).values.exp()
        entropy = -(logp.exp() * logp).sum(dim=-1)
        rows.append(torch.cat([*hidden, top1[:, None], entropy[:, None]], dim=-1).cpu())
    return torch.cat(rows)


@dataclass
class EditDetector:
    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    config: DetectorConfig
    info: dict = field(default_factory=dict)

    @classmethod
    def fit(
        cls, edited: torch.Tensor, unedited: torch.Tensor, cfg: DetectorConfig | None = None
    ) -> EditDetector:
        cfg = cfg or DetectorConfig()
        if len(edited) == 0 or len(unedited) == 0:
            raise ValueError("the detector needs edited and unedited facts to train on")
        x = torch.cat([edited, unedited]).double()
        y = torch.cat([torch.ones(len(edited)), torch.zeros(len(unedited))]).double()
        mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
        z = (x - mean) / std
        w = torch.zeros(z.shape[1], dtype=torch.double, requires_grad=True)
        b = torch.zeros((), dtype=torch.double, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=cfg.steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y)
            loss = loss + cfg.l2 * (w**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        info = {"n_edited": len(edited), "n_unedited": len(unedited)}
        return cls(mean.float(), std.float(), w.detach().float(), b.detach().float(), cfg, info)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """P(edited) per fact."""
        z = (features.float() - self.mean) / self.std
        return torch.sigmoid(z @ self.weight + self.bias)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"mean": self.mean, "std": self.std, "weight": self.weight, "bias": self.bias}
        digest = save_tensors(directory / DETECTOR_FILE, tensors)
        meta = {"config": asdict(self.config), "info": self.info, "sha256": digest}
        (directory / META_FILE).write_text(json.dumps(meta, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> EditDetector:
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        verify_checksum(directory / DETECTOR_FILE, meta["sha256"])
        t = load_tensors(directory / DETECTOR_FILE)
        raw = meta["config"]
        layers = tuple(raw["layers"]) if raw.get("layers") is not None else None
        cfg = DetectorConfig(**{**raw, "layers": layers})
        return cls(t["mean"], t["std"], t["weight"], t["bias"], cfg, meta.get("info", {}))


def auroc(edited_scores: Sequence[float], unedited_scores: Sequence[float]) -> float:
    """P(score of an edited fact > score of an unedited one), ties counting ½."""
    return mann_whitney_u(
        np.asarray(edited_scores, dtype=float), np.asarray(unedited_scores, dtype=float)
    ).effect
