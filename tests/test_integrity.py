"""Loading never runs code and notices damage: safetensors helpers, resume points (safetensors + JSON),
and sequential editing's progress resumed without torch.load."""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from editdecay.editing import EditorSpec
from editdecay.editing.delta import EditDelta
from editdecay.editing.sequential import edit_sequentially
from editdecay.integrity import (
    ChecksumMismatchError,
    IntegrityError,
    NonFiniteError,
    check_finite,
    load_resume_point,
    load_tensors,
    remove_resume_point,
    save_resume_point,
)


class _RunsCode:
    """Unpickling this creates `marker`: what an untrusted .pt file could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (Path(self.marker),)


def _old_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"next": 2, "payload": _RunsCode(marker)}))


def test_load_tensors_names_a_truncated_or_corrupt_file(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"a": torch.randn(8, 8)}, str(path))
    raw = path.read_bytes()
    path.write_bytes(raw[:-5])
    with pytest.raises(IntegrityError, match=rf"{path}: truncated or corrupt safetensors file"):
        load_tensors(path)
    path.write_bytes(b"\xff" * 32)
    with pytest.raises(IntegrityError, match="truncated or corrupt"):
        load_tensors(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_tensors(tmp_path / "absent.safetensors")


def test_check_finite_counts_per_tensor():
    t = torch.zeros(4, 4)
    t[0, :3] = float("nan")
    t[1, 0] = -float("inf")
    check_finite({"ok": torch.ones(2), "ints": torch.arange(3)}, "x")
    with pytest.raises(NonFiniteError, match=r"^where: tensor 'bad' has 4 non-finite values$"):
        check_finite({"ok": torch.ones(2), "bad": t}, "where")


def test_resume_point_round_trips_tensors_and_json(tmp_path):
    tensors = {
        "a.b": torch.arange(6, dtype=torch.int64),
        "s": torch.tensor(3.5),
        "u": torch.ones(2, dtype=torch.uint8),
    }
    meta = {"step": 3, "losses": [0.1, float(1 / 3)], "nested": {"t": (1, 2)}}
    save_resume_point(tmp_path / "rp", tensors, meta)
    got_tensors, got_meta = load_resume_point(tmp_path / "rp")
    assert got_tensors.keys() == tensors.keys()
    assert all(
        torch.equal(got_tensors[k], v) and got_tensors[k].dtype == v.dtype
        for k, v in tensors.items()
    )
    assert got_meta == {"step": 3, "losses": [0.1, 1 / 3], "nested": {"t": [1, 2]}}
    assert load_resume_point(tmp_path / "absent") is None


def test_resume_point_refuses_non_json_metadata(tmp_path):
    with pytest.raises(TypeError, match="tensors belong in the safetensors part"):
        save_resume_point(tmp_path / "rp", {}, {"t": torch.zeros(1)})


def test_a_kill_between_the_tensor_and_json_writes_leaves_the_previous_state(tmp_path, monkeypatch):
    save_resume_point(tmp_path / "rp", {"w": torch.zeros(3)}, {"step": 1})

    def killed(path, write):
        raise KeyboardInterrupt

    import editdecay.integrity as integrity

    real = integrity.atomic_write
    monkeypatch.setattr(
        integrity, "atomic_write", lambda p, w: killed(p, w) if p.suffix == ".json" else real(p, w)
    )
    with pytest.raises(KeyboardInterrupt):
        save_resume_point(tmp_path / "rp", {"w": torch.ones(3)}, {"step": 2})
    monkeypatch.undo()
    tensors, meta = load_resume_point(tmp_path / "rp")
    assert meta == {"step": 1} and torch.equal(tensors["w"], torch.zeros(3))
    save_resume_point(tmp_path / "rp", {"w": torch.ones(3)}, {"step": 2})
    assert len(list((tmp_path / "rp").glob("tensors-*.safetensors"))) == 1  # the older ones removed


def test_a_damaged_resume_point_is_ignored_with_a_warning(tmp_path, caplog):
    save_resume_point(tmp_path / "rp", {"w": torch.zeros(3)}, {"step": 1})
    (tensor_file,) = (tmp_path / "rp").glob("tensors-*.safetensors")
    tensor_file.write_bytes(tensor_file.read_bytes()[:-4] + b"\x00\x00\x80\x7f")  # one +inf
    with caplog.at_level(logging.WARNING):
        assert load_resume_point(tmp_path / "rp") is None
    assert "checksum mismatch" in caplog.text
    (tmp_path / "rp" / "state.json").write_text("{not json")
    assert load_resume_point(tmp_path / "rp") is None


@pytest.mark.parametrize("old_name", ["rp.pt", "rp"])
def test_an_old_pickle_file_is_removed_unread(old_name, tmp_path, caplog):
    marker = tmp_path / "code-ran"
    _old_pickle(tmp_path / old_name, marker)
    with caplog.at_level(logging.WARNING):
        assert load_resume_point(tmp_path / "rp") is None
    assert "ignoring and removing" in caplog.text and old_name in caplog.text
    assert not marker.exists() and not (tmp_path / old_name).exists()
    remove_resume_point(tmp_path / "rp")


def test_checksum_mismatch_is_a_value_error():
    assert issubclass(ChecksumMismatchError, ValueError) and issubclass(NonFiniteError, ValueError)


# --------------------------------------------------------------------------- sequential editing progress


@dataclasses.dataclass(frozen=True)
class _Cfg:
    scale: float = 1e-3

    def to_dict(self) -> dict:
        return {"scale": self.scale, "layers": (1,)}


class _CountState:
    """A stateful editor's memory: how many requests it has seen."""

    def __init__(self, n: int = 0):
        self.n = n

    @classmethod
    def from_tensors(cls, tensors):
        return cls(int(tensors["n"]))


def _fake_editor(tiny_lm, calls: list) -> EditorSpec:
    """Adds a ΔW that depends on the current weights and the state, so a wrong resume shows."""
    name = tiny_lm.adapter.mlp_out_weight_name(1)

    def edit(lm, batch, cfg, state):
        calls.append(batch[0].case_id)
        w = dict(lm.model.named_parameters())[name].detach()
        dw = cfg.scale * (torch.tanh(w) + state.n)
        return EditDelta(
            {name: dw},
            "fake",
            cfg.to_dict(),
            [r.case_id for r in batch],
            lm.fingerprint,
            state={"n": torch.tensor(state.n + len(batch))},
        )

    return EditorSpec("fake", "test editor", _Cfg, edit, _CountState)


def test_interrupted_sequential_progress_resumes_bit_identical(tiny_lm, cf_requests, tmp_path):
    calls: list = []
    whole = edit_sequentially(tiny_lm, cf_requests, _fake_editor(tiny_lm, calls), _Cfg(), 1)
    calls.clear()
    spec = _fake_editor(tiny_lm, calls)

    def dies_on_third(lm, batch, cfg, state):
        if len(calls) == 2:
            raise KeyboardInterrupt
        return spec.edit(lm, batch, cfg, state)

    progress = tmp_path / "sequential"
    with pytest.raises(KeyboardInterrupt):
        edit_sequentially(
            tiny_lm,
            cf_requests,
            dataclasses.replace(spec, edit=dies_on_third),
            _Cfg(),
            1,
            progress_file=progress,
        )
    assert (progress / "state.json").is_file()
    assert json.loads((progress / "state.json").read_text())["meta"]["next"] == 2
    calls.clear()
    resumed = edit_sequentially(tiny_lm, cf_requests, spec, _Cfg(), 1, progress_file=progress)
    assert calls == [r.case_id for r in cf_requests[2:]] and not progress.exists()
    assert all(torch.equal(resumed.weights[n], w) for n, w in whole.weights.items())
    assert torch.equal(resumed.state["n"], whole.state["n"])


def test_progress_of_another_sequence_is_refused(tiny_lm, cf_requests, tmp_path):
    calls: list = []
    spec = _fake_editor(tiny_lm, calls)

    def dies_on_second(lm, batch, cfg, state):
        if calls:
            raise KeyboardInterrupt
        return spec.edit(lm, batch, cfg, state)

    progress = tmp_path / "sequential"
    with pytest.raises(KeyboardInterrupt):
        edit_sequentially(
            tiny_lm,
            cf_requests,
            dataclasses.replace(spec, edit=dies_on_second),
            _Cfg(),
            1,
            progress_file=progress,
        )
    with pytest.raises(ValueError, match="belongs to another sequential edit"):
        edit_sequentially(tiny_lm, cf_requests, spec, _Cfg(scale=2e-3), 1, progress_file=progress)
    remove_resume_point(progress)


def test_an_old_sequential_pt_is_ignored_and_the_sequence_starts_over(
    tiny_lm, cf_requests, tmp_path, caplog
):
    marker = tmp_path / "code-ran"
    _old_pickle(tmp_path / "sequential.pt", marker)
    calls: list = []
    with caplog.at_level(logging.WARNING):
        edit_sequentially(
            tiny_lm,
            cf_requests,
            _fake_editor(tiny_lm, calls),
            _Cfg(),
            2,
            progress_file=tmp_path / "sequential",
        )
    assert "ignoring and removing" in caplog.text and not marker.exists()
    assert calls == [cf_requests[0].case_id, cf_requests[2].case_id]  # every batch ran
    assert not (tmp_path / "sequential.pt").exists()
