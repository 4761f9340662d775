"""MEND (Mitchell et al. 2022, "Fast Model Editing at Scale"): a hypernetwork, trained once per model,
that maps the edit loss's rank-one gradient factors (u, δ) of each edited weight to an update.

    editor = train_mend(lm, MendConfig(...))      # or `editdecay mend-train`
    editor.save()                                 # <cache>/mend/<model name>/
    delta = mend_edit(lm, requests, cfg)          # an EditDelta, like every other editor

Modules: `network` (normalisers, low-rank residual MLP, per-shape networks, step sizes), `forward`
(tokenised batches, the split forward pass, (u, δ) capture), `editor` (ΔW and `mend_edit`), `train`
(the meta-training loop) and `artifact` (the versioned on-disk editor).
"""

from .artifact import (
    FORMAT_VERSION,
    MendEditor,
    MendNotTrainedError,
    default_editor_dir,
    load_editor,
)
from .editor import compute_deltas, edited_weights, mend_edit
from .forward import PrefixRunner, SequenceCache, build_targets, capture
from .network import EditTarget, GradientNet, LowRankResidual, MendHypernet, RunningNorm
from .train import MendTrainer, train_mend, training_requests

__all__ = [
    "FORMAT_VERSION",
    "MendEditor",
    "MendNotTrainedError",
    "default_editor_dir",
    "load_editor",
    "compute_deltas",
    "edited_weights",
    "mend_edit",
    "PrefixRunner",
    "SequenceCache",
    "build_targets",
    "capture",
    "EditTarget",
    "GradientNet",
    "LowRankResidual",
    "MendHypernet",
    "RunningNorm",
    "MendTrainer",
    "train_mend",
    "training_requests",
]
