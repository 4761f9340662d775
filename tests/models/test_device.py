"""Choosing the device models run on, and sharing the model cache between parallel workers."""

from __future__ import annotations

import os

import pytest
import torch
from typer.testing import CliRunner

from editdecay.cli import app
from editdecay.models import registry
from editdecay.models.registry import DEVICE_ENV, resolve_device


def test_auto_picks_cuda_only_when_a_gpu_is_visible(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_argument_wins_over_environment(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "no-such-device")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="no-such-device"):
        resolve_device()


@pytest.mark.parametrize(
    "bad, message", [("tpu", "unknown device 'tpu'"), ("meta", "unsupported device 'meta'")]
)
def test_unknown_devices_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        resolve_device(bad)


def test_cuda_without_a_gpu_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        resolve_device("cuda")


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="out of range: 1 CUDA GPU"):
        resolve_device("cuda:3")


def test_load_model_uses_the_environment_device(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    lm = registry.load_model("tiny-llama")
    assert next(lm.model.parameters()).device == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "tpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        registry.load_model("tiny-llama")


def test_cli_rejects_a_bad_device_before_any_work(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    result = CliRunner().invoke(app, ["--device", "tpu", "models"])
    assert result.exit_code == 2
    assert "unknown device 'tpu'" in result.output


def test_cli_device_reaches_model_loading(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    result = CliRunner().invoke(app, ["--device", "cpu", "models"])
    assert result.exit_code == 0, result.output
    assert (
        os.environ[DEVICE_ENV] == "cpu"
    )  # read by every later model load (monkeypatch restores it)


def test_a_cache_directory_published_twice_keeps_the_first(tmp_path):
    final = tmp_path / "model"
    first, second = tmp_path / "a.tmp1", tmp_path / "a.tmp2"
    for d, text in ((first, "first"), (second, "second")):
        d.mkdir()
        (d / "config.json").write_text(text)
    registry._publish_dir(first, final)
    registry._publish_dir(second, final)  # a parallel worker finishing later
    assert (final / "config.json").read_text() == "first"
    assert not second.exists()


def test_publishing_onto_a_file_still_fails(tmp_path):
    (tmp_path / "model").write_text("not a directory")
    tmp = tmp_path / "x.tmp"
    tmp.mkdir()
    (tmp / "f").write_text("x")
    with pytest.raises(OSError):
        registry._publish_dir(tmp, tmp_path / "model")
