"""The artifact store: stage records carry the digest of every output file; `verify` rehashes them and
a later stage refuses an input whose files changed since publishing."""

from __future__ import annotations

import json

import pytest
import torch

from editdecay.editing.delta import EditDelta
from editdecay.integrity import sha256_file
from editdecay.study import stages
from editdecay.study.store import ArtifactStore, Stage, StageIntegrityError


def _publish(store: ArtifactStore, stage: Stage, files: dict[str, bytes]) -> None:
    with store.claim(stage) as work:
        for rel, data in files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_bytes(data)
        store.publish(stage, work, {"note": "test"})


@pytest.fixture
def published(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    stage = Stage.make("evaluate", {"state": "M"})
    _publish(store, stage, {"metrics.json": b"{}", "final/weights.safetensors": b"w" * 100})
    return store, stage


def test_publish_records_the_digest_of_every_output_file(published):
    store, stage = published
    record = store.record(stage)
    root = store.path(stage)
    assert record["files"] == {
        "final/weights.safetensors": sha256_file(root / "final/weights.safetensors"),
        "metrics.json": sha256_file(root / "metrics.json"),
    }
    assert store.verify(stage) == {}
    assert stage.key == Stage.make("evaluate", {"state": "M"}).key  # outputs are not in the key


def test_done_does_not_hash(published, monkeypatch):
    store, stage = published

    def no_hashing(path):
        raise AssertionError("done() hashed a file")

    monkeypatch.setattr("editdecay.study.store.sha256_file", no_hashing)
    assert store.done(stage)


def test_verify_reports_changed_missing_and_unrecorded_files(published):
    store, stage = published
    root = store.path(stage)
    (root / "final/weights.safetensors").write_bytes(b"w" * 99 + b"x")
    (root / "metrics.json").unlink()
    (root / "extra.csv").write_text("a\n")
    assert store.verify(stage) == {
        "final/weights.safetensors": "changed",
        "metrics.json": "missing",
    }
    assert store.verify(stage, ["final"]) == {"final/weights.safetensors": "changed"}
    assert store.verify(stage, ["extra.csv", "nothing.txt"]) == {
        "extra.csv": "unrecorded",
        "nothing.txt": "missing",
    }


def test_verified_names_the_stage_and_the_file(published):
    store, stage = published
    assert store.verified(stage, "metrics.json") == store.path(stage)
    (store.path(stage) / "final/weights.safetensors").write_bytes(b"short")
    with pytest.raises(StageIntegrityError) as err:
        store.verified(stage, "final")
    message = str(err.value)
    assert message.startswith(f"stage evaluate/{stage.key}: final/weights.safetensors changed")
    assert "refusing it as an input" in message


def test_a_stage_published_before_digests_is_not_verified(published):
    store, stage = published
    path = store.path(stage) / "stage.json"
    record = json.loads(path.read_text())
    del record["files"]
    path.write_text(json.dumps(record))
    (store.path(stage) / "metrics.json").write_text("changed")
    assert store.verify(stage) == {}


# --------------------------------------------------------------------------- refused as an input


@pytest.fixture
def edit_and_evaluate(tmp_path, tiny_lm):
    """A published edit stage holding a small delta, and the evaluate stage of M_ed that reads it."""
    store = ArtifactStore(tmp_path / "store")
    model = {"model": tiny_lm.name, "fingerprint": tiny_lm.fingerprint}
    edit = Stage.make("edit", {**model, "method": "memit"})
    base = Stage.make("evaluate", {**model, "state": "M", "step": 0})
    name = tiny_lm.adapter.mlp_out_weight_name(1)
    shape = dict(tiny_lm.model.named_parameters())[name].shape
    delta = EditDelta({name: torch.full(shape, 1e-3)}, "memit", {}, [], tiny_lm.fingerprint)
    with store.claim(edit) as work:
        delta.save(work / "delta")
        store.publish(edit, work, {"layers": [1]})
    evaluate = Stage.make("evaluate", {**model, "state": "M_ed", "step": 0}, (edit, base))
    pool = stages.ModelPool()
    pool._models[tiny_lm.name] = tiny_lm
    return store, edit, evaluate, pool


def test_an_intact_edit_stage_is_loaded_as_an_input(edit_and_evaluate, tiny_lm):
    store, _, evaluate, pool = edit_and_evaluate
    lm, step, cleanup = stages.model_state(evaluate, store, pool)
    cleanup()  # reverts the delta: the shared model is left as it was
    assert step == 0


def test_an_edit_stage_modified_after_publishing_is_refused_as_an_input(edit_and_evaluate):
    store, edit, evaluate, pool = edit_and_evaluate
    delta_file = store.path(edit) / "delta" / "delta.safetensors"
    data = bytearray(delta_file.read_bytes())
    data[-4:] = b"\x00\x00\x80\x3f"  # one weight becomes 1.0: a valid file, different bytes
    delta_file.write_bytes(bytes(data))
    assert store.verify(edit) == {"delta/delta.safetensors": "changed"}
    with pytest.raises(
        StageIntegrityError, match=rf"stage edit/{edit.key}: delta/delta\.safetensors changed"
    ):
        stages.model_state(evaluate, store, pool)


def test_modified_targets_are_refused_as_an_input(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    targets = Stage.make("targets", {"layers": [1]})
    with store.claim(targets) as work:
        from safetensors.torch import save_file

        save_file(
            {"z": torch.zeros(2, 4), "h_init": torch.zeros(2, 4)}, str(work / "targets.safetensors")
        )
        (work / "targets.json").write_text(
            json.dumps(
                {"templates": [], "delta_norm": [], "final_nll": [], "steps": [], "timings": {}}
            )
        )
        store.publish(targets, work, {})
    assert stages._load_prepared(store, targets, None).targets.z.shape == (2, 4)
    (store.path(targets) / "targets.json").write_text("{}")
    with pytest.raises(
        StageIntegrityError, match=rf"stage targets/{targets.key}: targets\.json changed"
    ):
        stages._load_prepared(store, targets, None)
