"""The second-moment statistic C = E[k kᵀ] at the MLP out-projection inputs, its cache and cache key."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import editdecay.editing.statistics as statistics
from editdecay.data.corpus import token_windows
from editdecay.editing.statistics import (
    SecondMoment,
    StatisticSpec,
    corpus_texts,
    second_moments,
    statistic_key,
)
from editdecay.models.registry import fingerprint


def _no_compute(*args, **kwargs):
    raise AssertionError("_compute was called: the statistic was not taken from the cache")


@torch.no_grad()
def _manual_second_moments(lm, layers, spec):
    """E[kkᵀ] over every token of every window, one unpadded window per forward, via plain hooks."""
    texts, _ = corpus_texts(spec.corpus)
    windows = token_windows(lm.tokenizer, texts, window=spec.window, max_tokens=spec.max_tokens)
    sums = {layer: torch.zeros(128, 128, dtype=torch.float64) for layer in layers}
    seen: dict[int, torch.Tensor] = {}
    handles = [
        lm.model.get_submodule(f"model.layers.{layer}.mlp.down_proj").register_forward_hook(
            lambda mod, args, out, layer=layer: seen.__setitem__(layer, args[0])
        )
        for layer in layers
    ]
    count = 0
    try:
        for w in windows:
            lm.model(input_ids=torch.tensor([w], device=lm.model.device))
            for layer in layers:
                x = seen[layer][0].double()  # (len(w), 128)
                assert x.shape == (len(w), 128)
                sums[layer] += (x.T @ x).cpu()
            count += len(w)
    finally:
        for h in handles:
            h.remove()
    return {layer: sums[layer] / count for layer in layers}, count


def test_matches_a_manual_mean_of_kkt(tiny_lm, tiny_stats, tiny_stat_spec):
    manual, count = _manual_second_moments(tiny_lm, [1, 2, 3], tiny_stat_spec)
    assert count == 2000  # the budget is met exactly (the crossing window is truncated)
    for layer in (1, 2, 3):
        sm = tiny_stats[layer]
        assert isinstance(sm, SecondMoment)
        assert sm.layer == layer
        assert sm.module == f"model.layers.{layer}.mlp.down_proj"
        assert sm.n_tokens == count
        assert sm.matrix.dtype == torch.float32 and sm.matrix.shape == (128, 128)
        C = sm.matrix.double()
        rel = float((C - manual[layer]).norm() / manual[layer].norm())
        assert rel < 1e-5, (layer, rel)
        torch.testing.assert_close(
            C, manual[layer], rtol=1e-3, atol=1e-6 * float(manual[layer].abs().max())
        )


def test_is_symmetric_positive_semidefinite(tiny_stats):
    for layer, sm in tiny_stats.items():
        C = sm.matrix.double()
        torch.testing.assert_close(C, C.T, rtol=1e-6, atol=1e-9)
        eig = torch.linalg.eigvalsh((C + C.T) / 2)
        assert eig.min() >= -1e-6 * eig.max(), layer
        assert eig.max() > 0
        assert torch.all(torch.diagonal(C) > 0), layer  # every hidden unit is active on some token


def test_layers_differ(tiny_stats):
    assert not torch.allclose(tiny_stats[1].matrix, tiny_stats[2].matrix)
    assert len({sm.key for sm in tiny_stats.values()}) == 3


def test_second_call_loads_from_cache(
    tiny_lm, tiny_stats, tiny_stat_spec, tiny_stats_dir, monkeypatch
):
    files = sorted(p.name for p in tiny_stats_dir.glob("*.safetensors"))
    assert files == sorted(f"{sm.key}.safetensors" for sm in tiny_stats.values())
    monkeypatch.setattr(statistics, "_compute", _no_compute)
    again = second_moments(tiny_lm, [3, 1, 2], tiny_stat_spec, cache_dir=tiny_stats_dir)
    assert list(again) == [3, 1, 2]  # in the order asked for
    for layer in (1, 2, 3):
        assert torch.equal(again[layer].matrix, tiny_stats[layer].matrix)
        assert again[layer].n_tokens == tiny_stats[layer].n_tokens
        assert again[layer].key == tiny_stats[layer].key


def test_only_missing_layers_are_computed(
    tiny_lm, tiny_stats, tiny_stat_spec, tiny_stats_dir, tmp_path, monkeypatch
):
    cache = tmp_path / "stats"
    cache.mkdir()
    for layer in (1, 2):  # layers 1 and 2 cached, 0 not
        name = f"{tiny_stats[layer].key}.safetensors"
        (cache / name).write_bytes((tiny_stats_dir / name).read_bytes())
    calls = []
    real = statistics._compute

    def spy(lm, layers, spec, texts):
        calls.append(list(layers))
        return real(lm, layers, spec, texts)

    monkeypatch.setattr(statistics, "_compute", spy)
    out = second_moments(tiny_lm, [0, 1, 2], tiny_stat_spec, cache_dir=cache)
    assert calls == [[0]]
    assert torch.equal(out[1].matrix, tiny_stats[1].matrix)
    assert out[0].n_tokens == 2000
    assert (cache / f"{out[0].key}.safetensors").is_file()


def test_a_different_spec_is_not_served_from_the_cache(
    tiny_lm, tiny_stats, tiny_stats_dir, monkeypatch
):
    monkeypatch.setattr(statistics, "_compute", _no_compute)
    with pytest.raises(AssertionError, match="_compute was called"):
        second_moments(
            tiny_lm, [1], StatisticSpec(max_tokens=1000, window=128), cache_dir=tiny_stats_dir
        )


def test_default_cache_dir_follows_editdecay_cache(tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setenv("EDITDECAY_CACHE", str(tmp_path))
    spec = StatisticSpec(max_tokens=300, window=64)
    out = second_moments(tiny_lm, [2], spec)
    assert out[2].n_tokens == 300
    assert (tmp_path / "stats" / f"{out[2].key}.safetensors").is_file()
    monkeypatch.setattr(statistics, "_compute", _no_compute)
    assert torch.equal(second_moments(tiny_lm, [2], spec)[2].matrix, out[2].matrix)


def test_batch_size_does_not_change_the_statistic(tiny_lm, tmp_path):
    spec = StatisticSpec(max_tokens=600, window=64, batch_windows=1)
    a = second_moments(tiny_lm, [1], spec, cache_dir=tmp_path / "a")[1]
    b = second_moments(
        tiny_lm, [1], dataclasses.replace(spec, batch_windows=7), cache_dir=tmp_path / "b"
    )[1]
    assert a.n_tokens == b.n_tokens == 600
    torch.testing.assert_close(a.matrix, b.matrix, rtol=1e-4, atol=1e-9)


# --------------------------------------------------------------------------- the cache key


@pytest.fixture(scope="module")
def digest():
    return corpus_texts("wikitext-2-test")[1]


def test_key_is_deterministic_and_matches_the_stored_statistic(
    tiny_lm, tiny_stats, tiny_stat_spec, digest
):
    key = statistic_key(tiny_lm, 1, tiny_stat_spec, digest)
    assert key == statistic_key(tiny_lm, 1, StatisticSpec(max_tokens=2000, window=128), digest)
    assert key == tiny_stats[1].key


def test_key_changes_with_layer_budget_window_dtype_and_corpus(tiny_lm, tiny_stat_spec, digest):
    base = statistic_key(tiny_lm, 1, tiny_stat_spec, digest)
    variants = [
        statistic_key(tiny_lm, 2, tiny_stat_spec, digest),
        statistic_key(tiny_lm, 1, dataclasses.replace(tiny_stat_spec, max_tokens=2001), digest),
        statistic_key(tiny_lm, 1, dataclasses.replace(tiny_stat_spec, max_tokens=None), digest),
        statistic_key(tiny_lm, 1, dataclasses.replace(tiny_stat_spec, window=256), digest),
        statistic_key(tiny_lm, 1, dataclasses.replace(tiny_stat_spec, dtype="float64"), digest),
        statistic_key(tiny_lm, 1, tiny_stat_spec, "0" * 16),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_key_changes_when_the_weights_change(tiny_lm, tiny_stat_spec, digest):
    model = copy.deepcopy(tiny_lm.model)
    assert fingerprint(model) == tiny_lm.fingerprint  # same weights, same fingerprint
    with torch.no_grad():
        model.get_submodule("model.layers.2.self_attn.q_proj").weight[3, 5] += 1e-3
    fp = fingerprint(model)
    assert fp != tiny_lm.fingerprint
    changed = dataclasses.replace(tiny_lm, model=model, fingerprint=fp)
    assert statistic_key(changed, 1, tiny_stat_spec, digest) != statistic_key(
        tiny_lm, 1, tiny_stat_spec, digest
    )


@pytest.mark.parametrize("layer", [4, 7, -1])
def test_layer_out_of_range_raises(tiny_lm, tiny_stat_spec, tmp_path, layer):
    with pytest.raises(ValueError, match=r"out of range.*0\.\.3"):
        second_moments(tiny_lm, [1, layer], tiny_stat_spec, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing computed or written


def test_unknown_corpus_raises(tiny_lm, tmp_path):
    with pytest.raises(ValueError, match="unknown statistic corpus"):
        second_moments(tiny_lm, [1], StatisticSpec(corpus="c4", max_tokens=100), cache_dir=tmp_path)


class _BosTokenizer:
    """Wraps a tokenizer so that plain text starts with a BOS token (as Llama's and Gemma's do)."""

    bos_token_id = 1

    def __init__(self, inner):
        self.inner, self.pad_token_id = inner, inner.pad_token_id

    def __call__(self, text, add_special_tokens=True, **kw):
        ids = list(self.inner(text, add_special_tokens=False)["input_ids"])
        return {"input_ids": ([1] if add_special_tokens else []) + ids}


def test_windows_start_with_bos_only_when_the_tokenizer_adds_one(tiny_lm):
    from editdecay.editing.statistics import bos_prefix, bos_windows

    windows = [[5, 6, 7], [8, 9]]
    bos_tok = _BosTokenizer(tiny_lm.tokenizer)
    assert bos_prefix(bos_tok) == [1]
    assert bos_windows(bos_tok, windows) == [[1, 5, 6, 7], [1, 8, 9]]
    if not bos_prefix(tiny_lm.tokenizer):
        assert bos_windows(tiny_lm.tokenizer, windows) == windows


def test_the_cache_key_records_the_bos_choice(tiny_lm, tiny_stat_spec, digest):
    from editdecay.editing.statistics import bos_prefix
    from editdecay.models.registry import LoadedModel

    bos_lm = LoadedModel(
        tiny_lm.name,
        tiny_lm.model,
        _BosTokenizer(tiny_lm.tokenizer),
        tiny_lm.adapter,
        tiny_lm.fingerprint,
    )
    if bos_prefix(tiny_lm.tokenizer) != [1]:  # the tiny tokenizer adds no BOS (or another)
        assert statistic_key(bos_lm, 1, tiny_stat_spec, digest) != statistic_key(
            tiny_lm, 1, tiny_stat_spec, digest
        )
