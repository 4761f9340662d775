"""Why edits decay, in activation space (PAPER §2.7, "Activation analysis"; claim 12 of §4).

`hidden_states` reads the residual stream after every block at chosen token positions, one forward
pass per batch; `displacement_geometry` turns the four states M, M_ed, M_ft, M_ed_ft of the same
prompts into the paper's per-layer magnitudes (Eqn 2) and displacement cosines (Eqns 3–6);
`umap_projection` and `overlap_score` give the UMAP picture and a number for which states overlap.
Group comparisons (stable vs erased edits) are in `analysis/rank_tests.py:compare_groups`.

The paper does not say which tensor or position it reads (PAPER §5); here it is the block output
(the residual stream, before any final norm) at the subject's last token and at the prompt's last.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..data.requests import EditRequest
from ..data.tokenization import FilledPrompt, encode, fill, pad_right, subject_last_index
from ..models.adapter import model_device
from ..models.hooks import StopForward, hidden_of, run_until
from ..models.registry import LoadedModel

log = logging.getLogger(__name__)

POSITIONS = ("subject_last", "prompt_last")
DEFAULT_BATCH_TOKENS = 8192

PromptLike = str | FilledPrompt | EditRequest


def as_filled(prompt: PromptLike) -> FilledPrompt:
    """A prompt with its subject span: an EditRequest's rewrite prompt, or a plain text (no subject)."""
    if isinstance(prompt, FilledPrompt):
        return prompt
    if isinstance(prompt, EditRequest):
        return fill(prompt.prompt, prompt.subject)
    return FilledPrompt(str(prompt), 0, 0)


def token_index(tokenizer, prompt: FilledPrompt, ids: list[int], position: str) -> int:
    """Index in `ids` (the prompt's own encoding) of a named position."""
    if position == "prompt_last":
        return len(ids) - 1
    if position == "subject_last":
        if prompt.subject_end <= prompt.subject_start:
            raise ValueError(
                f"prompt {prompt.text!r} has no subject; pass an EditRequest or FilledPrompt, "
                "or ask only for positions=('prompt_last',)"
            )
        return subject_last_index(tokenizer, prompt, ids)
    raise ValueError(f"unknown position {position!r}; known: {', '.join(POSITIONS)}")


@torch.no_grad()
def hidden_states(
    lm: LoadedModel,
    prompts: Sequence[PromptLike],
    positions: Sequence[str] = POSITIONS,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
) -> dict[str, torch.Tensor]:
    """The residual stream after every block at each prompt's `positions`.

    Returns {position: (n_prompts, n_layers, d) float32 CPU tensor}, layer l being block l's output.
    Prompts are right-padded by hand and positions come from each row's own ids (pitfall P1); each
    batch of at most `batch_tokens` tokens (padding included) is one forward pass, stopped after the
    last block. The model runs in eval mode (dropout off) and its mode is restored afterwards.
    """
    if not prompts:
        raise ValueError("no prompts")
    positions = tuple(positions)
    tok = lm.tokenizer
    filled = [as_filled(p) for p in prompts]
    encoded = [encode(tok, p.text) for p in filled]
    if any(not ids for ids in encoded):
        raise ValueError("a prompt encodes to no tokens")
    index = torch.tensor(
        [[token_index(tok, p, ids, pos) for pos in positions] for p, ids in zip(filled, encoded)]
    )
    gathered: list[torch.Tensor | None] = [None] * len(prompts)
    with _eval_mode(lm.model):
        for batch in length_batches([len(ids) for ids in encoded], batch_tokens):
            acts = _forward_batch(lm, [encoded[i] for i in batch], index[batch])
            for row, prompt_i in enumerate(batch):
                gathered[prompt_i] = acts[row]
    stacked = torch.stack(gathered)  # (n_prompts, n_layers, n_positions, d)
    return {pos: stacked[:, :, j].contiguous() for j, pos in enumerate(positions)}


def length_batches(lengths: Sequence[int], batch_tokens: int) -> Iterator[list[int]]:
    """Indices grouped longest first, each group padding to at most `batch_tokens` (at least one row)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    start = 0
    while start < len(order):
        size = max(1, batch_tokens // lengths[order[start]])
        yield order[start : start + size]
        start += size


def _forward_batch(lm: LoadedModel, rows: list[list[int]], index: torch.Tensor) -> torch.Tensor:
    """(batch, n_layers, n_positions, d) block outputs at `index` (batch, n_positions), float32 CPU."""
    device = model_device(lm.model)
    ids, mask = pad_right(rows, lm.tokenizer.pad_token_id)
    names = [lm.adapter.block_name(layer) for layer in range(lm.n_layers)]
    with _gather_outputs(lm.model, names, index.to(device)) as per_layer:
        run_until(
            lm.model, input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
        )
    return torch.stack([per_layer[name] for name in names], dim=1).float().cpu()


@contextmanager
def _gather_outputs(model: torch.nn.Module, names: list[str], index: torch.Tensor):
    """Keep only the rows' `index` positions of each named block's output (not the whole sequence:
    all layers at once would otherwise hold n_layers full hidden tensors); stop after the last."""
    out: dict[str, torch.Tensor] = {}
    rows = torch.arange(index.shape[0], device=index.device)[:, None]

    def make_hook(name: str):
        def hook(module, args, output):
            out[name] = hidden_of(output)[rows, index]
            if name == names[-1]:
                raise StopForward  # the final norm and LM head are not needed

        return hook

    handles = [model.get_submodule(n).register_forward_hook(make_hook(n)) for n in names]
    try:
        yield out
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def _eval_mode(model: torch.nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


GEOMETRY_COLUMNS = (
    "layer",
    "norm_ed",  # Eqn 2: ‖h_ed − h‖
    "norm_ft",  # Eqn 2: ‖h_ft − h‖
    "norm_ed_ft",  # Eqn 2: ‖h_ed_ft − h‖
    "cos_ed_ft",  # Eqn 6: sim(d_ed, d_ft)
    "cos_edft_ft",  # Eqn 6: sim(d_ed_ft, d_ft)
    "cos_edft_ed",  # Eqn 6: sim(d_ed_ft, d_ed)
)


def displacement_geometry(h, h_ed, h_ft, h_ed_ft, eps: float = 1e-8, per_prompt: bool = False):
    """Per layer, the magnitudes and directions of the edit and fine-tuning shifts (PAPER §2.7).

    Inputs: the same prompts' hidden states under M, M_ed, M_ft, M_ed_ft at one position, each
    (n_prompts, n_layers, d) (a `hidden_states` entry). Computed in float64.

    * Magnitude (Eqn 2): norm_ed = ‖h_ed − h‖₂, norm_ft = ‖h_ft − h‖₂, norm_ed_ft = ‖h_ed_ft − h‖₂.
    * Displacements (Eqns 3–5): d_ed = h_ed − h, d_ft = h_ft − h, d_ed_ft = h_ed_ft − h_ed (the FT
      shift on top of the edit, measured from M_ed, not M).
    * Direction (Eqn 6): cos(a, b) = a·b / (‖a‖‖b‖ + ε); cos_ed_ft = cos(d_ed, d_ft),
      cos_edft_ft = cos(d_ed_ft, d_ft), cos_edft_ed = cos(d_ed_ft, d_ed). A zero displacement
      gives cosine 0 through ε, never NaN.

    Returns the layer means over prompts, columns GEOMETRY_COLUMNS + n_prompts; with `per_prompt`,
    one row per prompt and layer instead, columns prompt + GEOMETRY_COLUMNS (for group splits).
    """
    h, h_ed, h_ft, h_ed_ft = (_as_float64(x) for x in (h, h_ed, h_ft, h_ed_ft))
    if not h.shape == h_ed.shape == h_ft.shape == h_ed_ft.shape or h.dim() != 3:
        raise ValueError("the four states must share one (n_prompts, n_layers, d) shape")
    d_ed, d_ft, d_ed_ft = h_ed - h, h_ft - h, h_ed_ft - h_ed
    measures = {
        "norm_ed": d_ed.norm(dim=-1),
        "norm_ft": d_ft.norm(dim=-1),
        "norm_ed_ft": (h_ed_ft - h).norm(dim=-1),
        "cos_ed_ft": cosine(d_ed, d_ft, eps),
        "cos_edft_ft": cosine(d_ed_ft, d_ft, eps),
        "cos_edft_ed": cosine(d_ed_ft, d_ed, eps),
    }
    n_prompts, n_layers = h.shape[:2]
    table = pd.DataFrame(
        {
            "prompt": np.repeat(np.arange(n_prompts), n_layers),
            "layer": np.tile(np.arange(n_layers), n_prompts),
            **{name: values.reshape(-1).numpy() for name, values in measures.items()},
        }
    )
    if per_prompt:
        return table
    means = table.drop(columns="prompt").groupby("layer", as_index=False).mean()
    return means.assign(n_prompts=n_prompts)[[*GEOMETRY_COLUMNS, "n_prompts"]]


def cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """PAPER Eqn 6's cosine over the last axis: a·b / (‖a‖‖b‖ + ε)."""
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + eps)


def _as_float64(x) -> torch.Tensor:
    return torch.as_tensor(x).detach().to("cpu", torch.float64)


def umap_projection(
    states: dict[str, np.ndarray],
    n_neighbors: int = 20,
    min_dist: float = 0.1,
    n_components: int = 3,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """One UMAP embedding fitted on all states' points together (PAPER §2.7: 3-D, n_neighbors 20,
    min_dist 0.1), split back per state: {state: (n_points, n_components)}.

    states: e.g. {"M": (n_prompts, d), "M_ed": ..., ...}, one layer's activations per state.
    Needs the optional package umap-learn; seeded UMAP runs single-threaded and is reproducible.
    """
    try:
        import umap
    except ImportError as err:
        raise ImportError("umap_projection needs umap-learn: pip install umap-learn") from err
    names = list(states)
    points = [np.asarray(states[n], dtype=np.float32).reshape(len(states[n]), -1) for n in names]
    reducer = umap.UMAP(
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        n_components=n_components,
        random_state=seed,
        n_jobs=1,  # a seeded UMAP runs on one thread anyway; saying so silences its warning
    )
    embedding = reducer.fit_transform(np.concatenate(points))
    bounds = np.cumsum([0, *(len(p) for p in points)])
    return {n: embedding[bounds[i] : bounds[i + 1]] for i, n in enumerate(names)}


@dataclass(frozen=True)
class Overlap:
    """How separated labelled point clouds are.

    silhouette: the mean silhouette over all points, in [−1, 1]: near 1 the labels form separate
        clusters, near 0 (or below) they overlap.
    probe_nearer_share: the share of `probe` points nearer the `near` label's centroid than the
        `far` label's (claim 12's "M_ed_ft clusters with M_ft": near 1); NaN if a label is absent.
    """

    silhouette: float
    probe_nearer_share: float


def overlap_score(
    embedding: np.ndarray | dict[str, np.ndarray],
    labels: Sequence[str] | None = None,
    *,
    probe: str = "M_ed_ft",
    near: str = "M_ft",
    far: str = "M_ed",
) -> Overlap:
    """Silhouette of the labels and the nearest-centroid share of `probe` (see `Overlap`).

    embedding: (n_points, k) with `labels` (n_points,), or a `umap_projection` result.
    """
    points, labels = _points_and_labels(embedding, labels)
    return Overlap(silhouette(points, labels), _nearer_share(points, labels, probe, near, far))


def _points_and_labels(embedding, labels) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(embedding, dict):
        labels = [name for name, pts in embedding.items() for _ in range(len(pts))]
        embedding = np.concatenate(list(embedding.values()))
    points = np.asarray(embedding, dtype=float)
    if labels is None or len(labels) != len(points):
        raise ValueError("one label per point is needed")
    return points, np.asarray(labels)


def silhouette(points: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette (b − a) / max(a, b): a = mean distance to the point's own label, b = the
    smallest mean distance to another label; a point alone in its label scores 0."""
    names = np.unique(labels)
    if len(names) < 2:
        raise ValueError("the silhouette needs at least two labels")
    dist = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)
    member = labels[None, :] == names[:, None]  # (n_labels, n_points)
    sizes = member.sum(1)
    mean_to = dist @ member.T / sizes  # (n_points, n_labels): mean distance to each label
    own = np.argmax(member.T, axis=1)
    own_size = sizes[own]
    rows = np.arange(len(points))
    a = mean_to[rows, own] * own_size / np.maximum(own_size - 1, 1)  # excluding the point itself
    mean_to[rows, own] = np.inf
    b = mean_to.min(1)
    s = np.where(own_size > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-300), 0.0)
    return float(s.mean())


def _nearer_share(points, labels, probe: str, near: str, far: str) -> float:
    if not all((labels == name).any() for name in (probe, near, far)):
        return float("nan")
    near_c, far_c = points[labels == near].mean(0), points[labels == far].mean(0)
    probe_points = points[labels == probe]
    nearer = np.linalg.norm(probe_points - near_c, axis=1) < np.linalg.norm(
        probe_points - far_c, axis=1
    )
    return float(nearer.mean())
