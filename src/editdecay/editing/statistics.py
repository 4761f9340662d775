"""The second-moment statistic C_l = E[k kᵀ] of the MLP out-projection inputs (MEMIT §1.5).

All requested layers are gathered in ONE forward pass that stops right after the highest of them.
Every non-pad token of every window counts; C is the uncentred mean over tokens. Results are cached
on disk under a key made of everything that determines them (model fingerprint, module, corpus
digest, token budget, window, dtype, and the BOS token when the tokenizer adds one), so a stale
statistic cannot be loaded (pitfall P16).

BOS (pitfall P2): every prompt the editors and scorer see starts with the tokenizer's BOS when the
tokenizer adds one to plain text, so every window here does too (:func:`bos_windows`, also used for
held-out perplexity); windows of a tokenizer without BOS are unchanged, and so are their keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..data.corpus import split_articles, token_windows, wikitext_articles
from ..data.tokenization import pad_right
from ..io import atomic_write
from ..models.adapter import model_device
from ..models.hooks import record, run_until
from ..models.registry import LoadedModel, cache_root
from ..progress import progress

log = logging.getLogger(__name__)

STAT_VERSION = 1


@dataclass(frozen=True)
class StatisticSpec:
    """What the statistic is computed over. `max_tokens=None` uses every token of the corpus."""

    corpus: str = "wikitext-2-test"
    max_tokens: int | None = None
    window: int = 512
    dtype: str = "float32"
    batch_windows: int = 8


@dataclass(frozen=True)
class SecondMoment:
    layer: int
    module: str
    matrix: torch.Tensor  # (d_k, d_k), float32
    n_tokens: int
    key: str


def bos_prefix(tokenizer) -> list[int]:
    """[BOS id] when `tokenizer` starts plain text with its BOS token (Llama, Gemma), else []."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if tokenizer is None or bos is None:
        return []
    ids = list(tokenizer("a")["input_ids"])
    return [int(bos)] if ids and ids[0] == bos else []


def bos_windows(tokenizer, windows: list[list[int]]) -> list[list[int]]:
    """The windows `data.corpus.token_windows` cut, each started with BOS when the tokenizer adds one
    to a prompt: the same context the editors' and scorer's prompts have."""
    prefix = bos_prefix(tokenizer)
    return [prefix + w for w in windows] if prefix else windows


def corpus_texts(corpus: str) -> tuple[list[str], str]:
    """The statistic-side texts of a named corpus and a digest of their content."""
    if corpus != "wikitext-2-test":
        raise ValueError(f"unknown statistic corpus {corpus!r}; available: wikitext-2-test")
    stat_articles, _ = split_articles(wikitext_articles())
    texts = [a.text for a in stat_articles]
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    return texts, digest


def statistic_key(lm: LoadedModel, layer: int, spec: StatisticSpec, corpus_digest: str) -> str:
    fields = {
        "v": STAT_VERSION,
        "model": lm.fingerprint,
        "module": lm.adapter.mlp_out_name(layer),
        "corpus": spec.corpus,
        "corpus_digest": corpus_digest,
        "max_tokens": spec.max_tokens,
        "window": spec.window,
        "dtype": spec.dtype,
    }
    bos = bos_prefix(lm.tokenizer)
    if bos:  # BOS-started windows; absent without BOS, so those keys (and caches) stay valid
        fields["bos"] = bos[0]
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


def second_moments(
    lm: LoadedModel,
    layers: list[int],
    spec: StatisticSpec = StatisticSpec(),
    cache_dir: Path | None = None,
) -> dict[int, SecondMoment]:
    """C for each layer, loaded from the cache where present and computed in one pass otherwise."""
    for layer in layers:
        lm.adapter.check_layer(lm.model, layer)
    cache_dir = cache_dir or cache_root() / "stats"
    texts, digest = corpus_texts(spec.corpus)
    out: dict[int, SecondMoment] = {}
    missing = []
    for layer in layers:
        key = statistic_key(lm, layer, spec, digest)
        path = cache_dir / f"{key}.safetensors"
        if path.exists():
            t = load_file(str(path))
            out[layer] = SecondMoment(
                layer, lm.adapter.mlp_out_name(layer), t["matrix"], int(t["n_tokens"]), key
            )
            log.info("statistic for layer %d loaded from cache (%s)", layer, key)
        else:
            missing.append(layer)
    if missing:
        computed = _compute(lm, missing, spec, texts)
        for layer, (mat, n) in computed.items():
            key = statistic_key(lm, layer, spec, digest)
            out[layer] = SecondMoment(layer, lm.adapter.mlp_out_name(layer), mat, n, key)
            _save(
                cache_dir / f"{key}.safetensors",
                mat,
                n,
                {**asdict(spec), "model": lm.fingerprint, "layer": layer, "corpus_digest": digest},
            )
    return {layer: out[layer] for layer in layers}


def _save(path: Path, mat: torch.Tensor, n: int, meta: dict) -> None:
    atomic_write(
        path,
        lambda tmp: save_file(
            {"matrix": mat.contiguous(), "n_tokens": torch.tensor(n)},
            str(tmp),
            metadata={k: str(v) for k, v in meta.items()},
        ),
    )


@torch.no_grad()
def _compute(lm: LoadedModel, layers: list[int], spec: StatisticSpec, texts: list[str]):
    model, adapter = lm.model, lm.adapter
    device = model_device(model)
    windows = token_windows(lm.tokenizer, texts, window=spec.window, max_tokens=spec.max_tokens)
    windows = bos_windows(lm.tokenizer, windows)
    windows.sort(key=len, reverse=True)
    names = {layer: adapter.mlp_out_name(layer) for layer in layers}
    last = names[max(layers)]
    dtype = getattr(torch, spec.dtype)
    sums = {layer: None for layer in layers}
    count = 0
    n_tok = sum(len(w) for w in windows)
    log.info("computing C for layers %s over %d tokens (%d windows)", layers, n_tok, len(windows))
    batches = [
        windows[i : i + spec.batch_windows] for i in range(0, len(windows), spec.batch_windows)
    ]
    for batch in progress(batches, desc="statistic C=E[kk^T]"):
        ids, mask = pad_right(batch, lm.tokenizer.pad_token_id)
        with record(model, list(names.values()), inputs=True, stop_after=last) as rec:
            run_until(
                model, input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
            )
        keep = mask.bool().to(device)
        for layer, name in names.items():
            x = rec.inputs[name][keep].to(dtype)
            xtx = (x.T @ x).double()
            sums[layer] = xtx if sums[layer] is None else sums[layer] + xtx
        count += int(keep.sum())
    return {layer: ((sums[layer] / count).float().cpu(), count) for layer in layers}
