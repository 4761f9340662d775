"""EditDelta: apply / revert bit for bit, save / load, fingerprint and shape checks (tiny model)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors import safe_open

from editdecay.editing.delta import EditDelta, FingerprintMismatchError
from editdecay.models.registry import fingerprint

LAYERS = (1, 3)


@pytest.fixture
def delta(tiny_lm):
    params = dict(tiny_lm.model.named_parameters())
    g = torch.Generator().manual_seed(0)
    weights = {}
    for layer in LAYERS:
        name = tiny_lm.adapter.mlp_out_weight_name(layer)
        weights[name] = 0.01 * torch.randn(params[name].shape, generator=g)
    return EditDelta(
        weights=weights,
        method="memit",
        config={"layers": list(LAYERS), "mom2_update_weight": 10.0},
        request_ids=["counterfact:0", "counterfact:1"],
        model_fingerprint=tiny_lm.fingerprint,
        statistic_keys={"1": "abc", "3": "def"},
        seeds={"templates": 0},
        info={"targets": {"final_nll": [1.5, 2.5]}, "context_templates": ["{}", "The x. {}"]},
    )


def _snapshot(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _cpu_state(model):
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _assert_state(model, expected):
    state = _cpu_state(model)
    assert state.keys() == expected.keys()
    for k, v in state.items():
        assert torch.equal(v, expected[k]), k


def test_parameter_names_are_the_mlp_out_weights(tiny_lm, delta):
    assert set(delta.weights) == {
        "model.layers.1.mlp.down_proj.weight",
        "model.layers.3.mlp.down_proj.weight",
    }
    assert delta.weights["model.layers.1.mlp.down_proj.weight"].shape == (64, 128)


def test_apply_adds_exactly_and_revert_restores_bit_for_bit(tiny_lm, delta):
    model = tiny_lm.model
    before = _snapshot(model)
    handle = delta.apply(model)
    state = _cpu_state(model)
    for k in before:
        if k in delta.weights:
            assert torch.equal(state[k], before[k] + delta.weights[k]), k
            assert not torch.equal(state[k], before[k])
        else:
            assert torch.equal(state[k], before[k]), k
    assert fingerprint(model) != tiny_lm.fingerprint
    handle.revert()
    _assert_state(model, before)
    assert fingerprint(model) == tiny_lm.fingerprint
    with pytest.raises(RuntimeError, match="already reverted"):
        handle.revert()


def test_apply_with_alpha_scales_the_update(tiny_lm, delta):
    model = tiny_lm.model
    before = _snapshot(model)
    with delta.apply(model, alpha=0.5):
        state = _cpu_state(model)
        for k, dw in delta.weights.items():
            assert torch.equal(state[k], torch.add(before[k], dw, alpha=0.5)), k
    _assert_state(model, before)


def test_context_manager_reverts_on_exit_and_on_error(tiny_lm, delta):
    model = tiny_lm.model
    before = _snapshot(model)
    name = next(iter(delta.weights))
    with delta.apply(model) as applied:
        assert torch.equal(_cpu_state(model)[name], before[name] + delta.weights[name])
    _assert_state(model, before)
    with pytest.raises(RuntimeError, match="already reverted"):
        applied.revert()

    with pytest.raises(KeyError, match="boom"):
        with delta.apply(model):
            raise KeyError("boom")
    _assert_state(model, before)


def test_apply_twice_then_revert_in_reverse_order(tiny_lm, delta):
    model = tiny_lm.model
    before = _snapshot(model)
    first = delta.apply(model)
    second = delta.apply(model, force=True)  # the model's fingerprint changed with the first apply
    second.revert()
    first.revert()
    _assert_state(model, before)


def test_norms(tiny_lm, delta):
    params = dict(tiny_lm.model.named_parameters())
    absolute = delta.norms()
    relative = delta.norms(tiny_lm.model)
    for k, dw in delta.weights.items():
        assert absolute[k] == pytest.approx(float(dw.norm()))
        assert relative[k] == pytest.approx(float(dw.norm() / params[k].norm()))


def test_save_load_round_trip(tmp_path, delta):
    out = delta.save(tmp_path / "d")
    assert (out / "delta.safetensors").is_file() and (out / "delta.json").is_file()
    loaded = EditDelta.load(out)
    assert loaded.weights.keys() == delta.weights.keys()
    for k, w in delta.weights.items():
        assert torch.equal(loaded.weights[k], w), k
    assert loaded.method == delta.method
    assert loaded.config == delta.config
    assert loaded.request_ids == delta.request_ids
    assert loaded.model_fingerprint == delta.model_fingerprint
    assert loaded.statistic_keys == delta.statistic_keys
    assert loaded.seeds == delta.seeds
    assert loaded.info == delta.info


def test_safetensors_file_is_keyed_by_parameter_name_in_parameter_shape(tmp_path, tiny_lm, delta):
    delta.save(tmp_path)
    params = dict(tiny_lm.model.named_parameters())
    with safe_open(str(tmp_path / "delta.safetensors"), framework="pt") as f:
        keys = set(f.keys())
        assert keys == {
            "model.layers.1.mlp.down_proj.weight",
            "model.layers.3.mlp.down_proj.weight",
        }
        for k in keys:
            assert f.get_tensor(k).shape == params[k].shape
        assert f.metadata()["model_fingerprint"] == tiny_lm.fingerprint
        assert f.metadata()["method"] == "memit"
    meta = json.loads((tmp_path / "delta.json").read_text())
    assert meta["parameters"] == {k: list(params[k].shape) for k in keys}
    assert meta["format_version"] == 1


def test_load_rejects_an_unknown_format_version(tmp_path, delta):
    delta.save(tmp_path)
    meta = json.loads((tmp_path / "delta.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "delta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format version"):
        EditDelta.load(tmp_path)


def test_loaded_delta_applies_like_the_original(tmp_path, tiny_lm, delta):
    model = tiny_lm.model
    before = _snapshot(model)
    with delta.apply(model):
        edited = _snapshot(model)
    with EditDelta.load(delta.save(tmp_path)).apply(model):
        _assert_state(model, edited)
    _assert_state(model, before)


@pytest.fixture
def other_model(tiny_lm):
    """A copy of the tiny model with one weight changed: a different fingerprint."""
    model = copy.deepcopy(tiny_lm.model)
    with torch.no_grad():
        model.get_submodule("model.layers.0.mlp.up_proj").weight[0, 0] += 0.5
    return model


def test_fingerprint_mismatch_raises_and_force_applies(other_model, delta):
    before = _snapshot(other_model)
    with pytest.raises(FingerprintMismatchError, match="force=True"):
        delta.apply(other_model)
    _assert_state(other_model, before)
    with delta.apply(other_model, force=True):
        state = _cpu_state(other_model)
        for k, dw in delta.weights.items():
            assert torch.equal(state[k], before[k] + dw)
    _assert_state(other_model, before)


def test_wrong_shape_raises(tiny_lm, delta):
    name = tiny_lm.adapter.mlp_out_weight_name(1)
    bad = EditDelta(
        {name: delta.weights[name].T.contiguous()}, "memit", {}, [], tiny_lm.fingerprint
    )
    before = _snapshot(tiny_lm.model)
    with pytest.raises(ValueError, match="shape"):
        bad.apply(tiny_lm.model)
    _assert_state(tiny_lm.model, before)


def test_unknown_parameter_raises(tiny_lm, delta):
    bad = EditDelta(
        {"model.layers.9.mlp.down_proj.weight": torch.zeros(64, 128)},
        "memit",
        {},
        [],
        tiny_lm.fingerprint,
    )
    before = _snapshot(tiny_lm.model)
    with pytest.raises(KeyError, match="layers.9"):
        bad.apply(tiny_lm.model)
    _assert_state(tiny_lm.model, before)


def test_failed_apply_leaves_the_model_unchanged(other_model, delta):
    """BUG (delta.py, EditDelta.apply): the shape check runs inside the loop that already adds ΔW, so
    when a later weight has the wrong shape the earlier ones stay added and, the handle never being
    returned, nothing can revert them."""
    first, second = list(delta.weights)
    bad = EditDelta(
        {first: delta.weights[first], second: delta.weights[second].T.contiguous()},
        "memit",
        {},
        [],
        "unused",
    )
    before = _snapshot(other_model)
    with pytest.raises(ValueError, match="shape"):
        bad.apply(other_model, force=True)
    _assert_state(other_model, before)


# --------------------------------------------------------------------------- integrity of saved deltas

DOWN_1 = "model.layers.1.mlp.down_proj.weight"


def _overwrite_tensor_bytes(path, name: str, raw: bytes) -> None:
    """Write `raw` at the start of tensor `name`'s data in a safetensors file (header untouched)."""
    data = bytearray(path.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    start = json.loads(data[8 : 8 + header_len])[name]["data_offsets"][0]
    at = 8 + header_len + start
    data[at : at + len(raw)] = raw
    path.write_bytes(bytes(data))


def _rerecord_checksum(directory, file_name="delta.safetensors") -> None:
    """What a writer that really produced the bytes would have recorded."""
    from editdecay.integrity import sha256_file

    meta = json.loads((directory / "delta.json").read_text())
    meta["sha256"][file_name] = sha256_file(directory / file_name)
    (directory / "delta.json").write_text(json.dumps(meta))


def test_save_records_the_sha256_of_each_tensor_file(tmp_path, delta):
    import hashlib

    delta.state = {"layer1.kkt": torch.eye(3)}
    out = delta.save(tmp_path / "delta")
    meta = json.loads((out / "delta.json").read_text())
    assert meta["sha256"] == {
        f: hashlib.sha256((out / f).read_bytes()).hexdigest()
        for f in ("delta.safetensors", "state.safetensors")
    }
    assert torch.equal(EditDelta.load(out).state["layer1.kkt"], torch.eye(3))


def test_a_modified_delta_is_refused_by_its_checksum(tmp_path, delta):
    out = delta.save(tmp_path / "delta")
    _overwrite_tensor_bytes(out / "delta.safetensors", DOWN_1, b"\x00\x00\x80\x3f")  # a finite 1.0
    with pytest.raises(
        ValueError,
        match=r"delta/delta\.safetensors: checksum mismatch \(file changed or truncated since it was written\)",
    ):
        EditDelta.load(out)


def test_a_modified_state_file_is_refused_by_its_checksum(tmp_path, delta):
    delta.state = {"layer1.kkt": torch.eye(3)}
    out = delta.save(tmp_path / "delta")
    _overwrite_tensor_bytes(out / "state.safetensors", "layer1.kkt", b"\x00\x00\x00\x40")
    with pytest.raises(ValueError, match=r"delta/state\.safetensors: checksum mismatch"):
        EditDelta.load(out)


def test_a_truncated_delta_is_refused_naming_the_file(tmp_path, delta):
    from editdecay.integrity import IntegrityError

    out = delta.save(tmp_path / "delta")
    raw = (out / "delta.safetensors").read_bytes()
    (out / "delta.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(IntegrityError, match=r"delta/delta\.safetensors: checksum mismatch"):
        EditDelta.load(out)
    _rerecord_checksum(
        out
    )  # even when the digest matches, the broken file is named, not a raw error
    with pytest.raises(
        IntegrityError, match=r"delta/delta\.safetensors: truncated or corrupt safetensors file"
    ):
        EditDelta.load(out)


def test_nan_written_into_the_file_is_refused_naming_file_and_tensor(tmp_path, delta):
    out = delta.save(tmp_path / "delta")
    nan = torch.full((12,), float("nan")).numpy().tobytes()
    _overwrite_tensor_bytes(out / "delta.safetensors", DOWN_1, nan)
    _rerecord_checksum(out)
    with pytest.raises(
        ValueError,
        match=r"delta/delta\.safetensors: tensor 'model\.layers\.1\.mlp\.down_proj\.weight' has 12 non-finite values",
    ):
        EditDelta.load(out)


def test_a_delta_saved_with_inf_is_refused_when_loaded_and_when_applied(tmp_path, tiny_lm, delta):
    delta.weights[DOWN_1][0, :5] = float("inf")
    delta.weights[DOWN_1][1, 0] = float("nan")
    out = delta.save(tmp_path / "delta")
    with pytest.raises(
        ValueError, match=r"tensor 'model\.layers\.1\.mlp\.down_proj\.weight' has 6"
    ):
        EditDelta.load(out)
    before = _snapshot(tiny_lm.model)
    with pytest.raises(
        ValueError, match=r"'model\.layers\.1\.mlp\.down_proj\.weight' has 6 non-finite"
    ):
        delta.apply(tiny_lm.model)
    _assert_state(tiny_lm.model, before)


def test_an_old_delta_without_checksums_still_loads(tmp_path, delta, caplog):
    out = delta.save(tmp_path / "delta")
    meta = json.loads((out / "delta.json").read_text())
    del meta["sha256"]
    (out / "delta.json").write_text(json.dumps(meta))
    with caplog.at_level("DEBUG", logger="editdecay.editing.delta"):
        loaded = EditDelta.load(out)
    assert all(torch.equal(loaded.weights[k], w) for k, w in delta.weights.items())
    assert "written before checksums were recorded" in caplog.text


def test_saving_without_state_removes_a_stale_state_file(tmp_path, delta):
    delta.state = {"layer1.kkt": torch.eye(3)}
    delta.save(tmp_path / "delta")
    delta.state = {}
    out = delta.save(tmp_path / "delta")
    assert not (out / "state.safetensors").exists()
    assert EditDelta.load(out).state == {}
