"""evaluation/activations.py: residual streams at subject/prompt positions, the §2.7 geometry, UMAP."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from editdecay.analysis.rank_tests import compare_groups
from editdecay.data.tokenization import encode, fill, subject_last_index
from editdecay.evaluation.activations import (
    GEOMETRY_COLUMNS,
    as_filled,
    displacement_geometry,
    hidden_states,
    overlap_score,
    silhouette,
    umap_projection,
)
from editdecay.models.hooks import edit_output

PROMPTS = [
    fill("{} was born in the city of", "Danielle Darrieux"),
    fill("The mother tongue of {} is", "Edwin of Northumbria"),
    fill("{} plays the", "Toko Yasuda"),
    fill("In a surprising turn of events last year, {} moved to", "Laurent Cars"),
    fill("{}, a family of lichens, belongs to the order", "Ramalinaceae"),
]


@pytest.fixture(scope="module")
def base_states(tiny_lm):
    return hidden_states(tiny_lm, PROMPTS)


def test_shapes_dtype_and_device(tiny_lm, base_states):
    d = tiny_lm.model.config.hidden_size
    assert set(base_states) == {"subject_last", "prompt_last"}
    for h in base_states.values():
        assert h.shape == (len(PROMPTS), tiny_lm.n_layers, d)
        assert h.dtype == torch.float32 and h.device.type == "cpu"


def test_agrees_with_a_plain_forward_pass_of_each_prompt_alone(tiny_lm, base_states):
    """Batching and right padding change nothing beyond float tolerance; layer l is block l's
    output (HF's hidden_states[l + 1]; its last entry has the final norm applied)."""
    tok, model = tiny_lm.tokenizer, tiny_lm.model
    final_norm = model.get_submodule(tiny_lm.adapter.final_norm)
    small_batches = hidden_states(tiny_lm, PROMPTS, batch_tokens=24)  # several padded batches
    for i, prompt in enumerate(PROMPTS):
        ids = encode(tok, prompt.text)
        cols = {"subject_last": subject_last_index(tok, prompt), "prompt_last": len(ids) - 1}
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        for pos, col in cols.items():
            expected = torch.stack([ref[layer + 1][0, col] for layer in range(len(ref) - 1)])
            for got in (base_states[pos][i], small_batches[pos][i]):
                torch.testing.assert_close(got[:-1], expected[:-1], atol=1e-5, rtol=1e-5)
                with torch.no_grad():
                    torch.testing.assert_close(
                        final_norm(got[-1]), expected[-1], atol=1e-5, rtol=1e-5
                    )


def test_edit_requests_and_plain_texts(tiny_lm, cf_requests):
    from_requests = hidden_states(tiny_lm, cf_requests, positions=("subject_last",))
    from_filled = hidden_states(tiny_lm, [as_filled(r) for r in cf_requests])
    torch.testing.assert_close(from_requests["subject_last"], from_filled["subject_last"])
    texts = [r.text for r in cf_requests]
    plain = hidden_states(tiny_lm, texts, positions=("prompt_last",))
    torch.testing.assert_close(plain["prompt_last"], from_filled["prompt_last"])
    with pytest.raises(ValueError, match="no subject"):
        hidden_states(tiny_lm, texts)
    with pytest.raises(ValueError, match="unknown position"):
        hidden_states(tiny_lm, PROMPTS, positions=("first",))


def test_a_state_against_itself_is_zero_with_defined_cosines(base_states):
    h = base_states["subject_last"]
    geometry = displacement_geometry(h, h, h, h)
    assert list(geometry.columns) == [*GEOMETRY_COLUMNS, "n_prompts"]
    assert (geometry["n_prompts"] == len(PROMPTS)).all()
    assert not geometry.isna().any().any()
    assert (geometry.drop(columns=["layer", "n_prompts"]) == 0).all().all()


def _one_by_one(lm, layer: int | None = None, vector: torch.Tensor | None = None):
    """Each prompt's states from its own forward pass (so unshifted values match bit for bit), with
    `vector` added to block `layer`'s output at the subject's last token when given."""
    out = {"subject_last": [], "prompt_last": []}
    for prompt in PROMPTS:
        col = subject_last_index(lm.tokenizer, prompt)

        def add_at_subject(hidden, col=col):
            hidden = hidden.clone()
            hidden[:, col] += vector
            return hidden

        if vector is None:
            states = hidden_states(lm, [prompt])
        else:
            with edit_output(lm.model, lm.adapter.block_name(layer), add_at_subject):
                states = hidden_states(lm, [prompt])
        for pos in out:
            out[pos].append(states[pos][0])
    return {pos: torch.stack(rows) for pos, rows in out.items()}


def test_an_injected_shift_is_recovered_at_its_layer_and_position(tiny_lm):
    layer = 1
    vector = torch.linspace(-1.0, 1.0, tiny_lm.model.config.hidden_size)
    base = _one_by_one(tiny_lm)
    shifted = _one_by_one(tiny_lm, layer, vector)
    h, moved = base["subject_last"], shifted["subject_last"]
    # M_ed and M_ft carry the same shift; M_ed_ft = M_ed (nothing on top of the edit)
    per_prompt = displacement_geometry(h, moved, moved, moved, per_prompt=True)
    before = per_prompt[per_prompt["layer"] < layer]
    at = per_prompt[per_prompt["layer"] == layer]
    after = per_prompt[per_prompt["layer"] > layer]
    assert (before[["norm_ed", "norm_ft", "norm_ed_ft"]] == 0).all().all()
    assert at["norm_ed"].to_numpy() == pytest.approx(float(vector.norm()), rel=1e-5)
    assert (after["norm_ed"] > 1e-3).all()  # propagated through the later blocks
    shifted_rows = per_prompt[per_prompt["layer"] >= layer]
    assert shifted_rows["cos_ed_ft"].to_numpy() == pytest.approx(1.0)
    assert (before["cos_ed_ft"] == 0).all()  # zero displacements: 0 by the ε rule, not NaN
    assert (per_prompt[["cos_edft_ft", "cos_edft_ed"]] == 0).all().all()  # d_ed_ft = 0
    # the last prompt token is not shifted at the injection layer, only later (through attention)
    h_last = base["prompt_last"]
    last = displacement_geometry(h_last, shifted["prompt_last"], h_last, h_last)
    assert (last.loc[last["layer"] <= layer, "norm_ed"] == 0).all()
    assert (last.loc[last["layer"] > layer, "norm_ed"] > 0).all()


def test_geometry_follows_the_paper_equations():
    """d_ed_ft is measured from M_ed (Eqn 5), norm_ed_ft from M (Eqn 2); cosines per Eqn 6."""
    h = torch.zeros(1, 1, 2)
    h_ed = torch.tensor([[[1.0, 0.0]]])
    h_ft = torch.tensor([[[0.0, 2.0]]])
    h_ed_ft = torch.tensor([[[1.0, 3.0]]])
    row = displacement_geometry(h, h_ed, h_ft, h_ed_ft).iloc[0]
    assert row["norm_ed"] == pytest.approx(1.0)
    assert row["norm_ft"] == pytest.approx(2.0)
    assert row["norm_ed_ft"] == pytest.approx(np.sqrt(10.0))
    assert row["cos_ed_ft"] == pytest.approx(0.0)
    assert row["cos_edft_ft"] == pytest.approx(1.0)  # d_ed_ft = (0, 3) ∥ d_ft
    assert row["cos_edft_ed"] == pytest.approx(0.0)
    with pytest.raises(ValueError):
        displacement_geometry(h, h_ed, h_ft, torch.zeros(1, 2, 2))


def test_compare_groups_on_per_prompt_norms():
    rng = np.random.default_rng(0)
    n, layers, d = 20, 3, 8
    h = torch.zeros(n, layers, d)
    direction = torch.as_tensor(rng.normal(size=(n, layers, d)), dtype=torch.float32)
    direction /= direction.norm(dim=-1, keepdim=True)
    scale = torch.ones(n, 1, 1)
    scale[:10] = 3.0  # the first ten ("stable") prompts move three times as far
    h_ed = h + scale * direction
    per_prompt = displacement_geometry(h, h_ed, h, h_ed, per_prompt=True)
    groups = ["stable"] * 10 + ["erased"] * 10
    result = compare_groups(per_prompt, groups, layer=1)
    assert result.mean_first == pytest.approx(3.0) and result.mean_second == pytest.approx(1.0)
    assert result.test.effect == 1.0 and result.test.p < 1e-3
    same = compare_groups(per_prompt, ["stable", "erased"] * 10, layer=1, measure="norm_ft")
    assert same.test.p == pytest.approx(1.0)  # norm_ft is 0 throughout: no shift


def _blob(rng, center, n=40, dim=3, spread=0.3):
    return center + spread * rng.normal(size=(n, dim))


def test_overlap_score_separated_and_overlapped():
    rng = np.random.default_rng(0)
    separated = {"M_ed": _blob(rng, 0.0), "M_ft": _blob(rng, 10.0), "M_ed_ft": _blob(rng, 10.0)}
    score = overlap_score({"M_ed": separated["M_ed"], "M_ft": separated["M_ft"]})
    assert score.silhouette > 0.8 and np.isnan(score.probe_nearer_share)
    assert overlap_score(separated).probe_nearer_share == 1.0
    one_blob = _blob(rng, 0.0, n=120)
    labels = np.array(["M", "M_ed", "M_ft", "M_ed_ft"] * 30)
    mixed = overlap_score(one_blob, labels)
    assert abs(mixed.silhouette) < 0.1
    assert 0.2 < mixed.probe_nearer_share < 0.8


def test_silhouette_against_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    points = np.concatenate([_blob(rng, 0.0, 15), _blob(rng, 1.0, 10), _blob(rng, 5.0, 1)])
    labels = np.array(["a"] * 15 + ["b"] * 10 + ["c"])
    assert silhouette(points, labels) == pytest.approx(metrics.silhouette_score(points, labels))


def test_umap_projection_keeps_separated_states_apart():
    pytest.importorskip("umap")
    rng = np.random.default_rng(0)
    states = {
        "M": _blob(rng, 0.0, 30, dim=16),
        "M_ed": _blob(rng, 0.0, 30, dim=16),
        "M_ft": _blob(rng, 4.0, 30, dim=16),
        "M_ed_ft": _blob(rng, 4.0, 30, dim=16),
    }
    embedding = umap_projection(states, n_neighbors=10, seed=0)
    assert {k: v.shape for k, v in embedding.items()} == {k: (30, 3) for k in states}
    assert overlap_score(embedding).probe_nearer_share == 1.0
    unedited_vs_ft = np.concatenate([embedding["M"], embedding["M_ed"]]), embedding["M_ft"]
    pair = overlap_score({"M": unedited_vs_ft[0], "M_ft": unedited_vs_ft[1]})
    assert pair.silhouette > 0.5
    again = umap_projection(states, n_neighbors=10, seed=0)
    np.testing.assert_allclose(again["M_ed_ft"], embedding["M_ed_ft"])
