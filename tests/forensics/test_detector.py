"""The hidden-state edit detector: features on the tiny model, a fit that separates what is
separable and finds nothing in noise, AUROC from ranks, and a save/load round trip."""

from __future__ import annotations

import pytest
import torch

from editdecay.forensics.detector import DetectorConfig, EditDetector, auroc, fact_features
from editdecay.integrity import IntegrityError


def test_features_on_the_tiny_model(tiny_lm, cf_requests):
    cfg = DetectorConfig(batch=3)
    layers = cfg.layers_for(tiny_lm.n_layers)
    assert layers == (0, 1, 2, 3)
    features = fact_features(tiny_lm, cf_requests, cfg)
    hidden = tiny_lm.model.config.hidden_size
    assert features.shape == (len(cf_requests), len(layers) * hidden + 2)
    norms = features[:, :hidden].norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    top1 = features[:, -2]
    assert ((top1 > 0) & (top1 <= 1)).all() and (features[:, -1] >= 0).all()
    assert torch.equal(features, fact_features(tiny_lm, cf_requests, DetectorConfig(batch=1)))
    with pytest.raises(ValueError, match="out of range"):
        DetectorConfig(layers=(7,)).layers_for(tiny_lm.n_layers)


def _data(shift: float, n: int = 60, dim: int = 20, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    edited = torch.randn(n, dim, generator=gen)
    edited[:, 0] += shift
    return edited, torch.randn(n, dim, generator=gen)


def test_detector_finds_a_separable_signal_and_not_noise():
    det = EditDetector.fit(*_data(4.0))
    test_edited, test_unedited = _data(4.0, seed=1)
    found = auroc(det.score(test_edited), det.score(test_unedited))
    assert found > 0.95
    noise = EditDetector.fit(*_data(0.0))
    test_edited, test_unedited = _data(0.0, seed=2)
    assert 0.3 < auroc(noise.score(test_edited), noise.score(test_unedited)) < 0.7
    with pytest.raises(ValueError, match="edited and unedited"):
        EditDetector.fit(torch.zeros(0, 3), torch.zeros(2, 3))


def test_auroc_from_ranks():
    assert auroc([3, 4], [1, 2]) == 1.0
    assert auroc([1, 2], [3, 4]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5


def test_save_load_round_trip_and_corruption(tmp_path):
    det = EditDetector.fit(*_data(2.0), DetectorConfig(layers=(1, 2)))
    det.save(tmp_path / "d")
    back = EditDetector.load(tmp_path / "d")
    x = _data(2.0, seed=3)[0]
    assert torch.equal(det.score(x), back.score(x)) and back.config.layers == (1, 2)
    blob = (tmp_path / "d" / "detector.safetensors").read_bytes()
    (tmp_path / "d" / "detector.safetensors").write_bytes(blob[:-8])
    with pytest.raises(IntegrityError):
        EditDetector.load(tmp_path / "d")
