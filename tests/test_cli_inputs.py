"""Property-style: generated bad option values make `editdecay edit` fail fast and cleanly.

For every generated case: exit code 2, one line naming the option, field or file, no traceback, no
model loaded, and a pre-filled finished `--out` left byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import editdecay.study.edit as edit_job
import editdecay.study.edit_run as edit_run
from editdecay.cli import app

RNG = random.Random(20240601)
N_PER_KIND = 3


def _words(k: int = 1) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(RNG.choice(letters) for _ in range(RNG.randint(3, 9))) for _ in range(k)]


def _bad_methods():
    return [(["--method", f"memit{w}"], "method: unknown edit method") for w in _words(N_PER_KIND)]


def _bad_layers():
    cases = [(["--layers", str(RNG.randint(4, 60))], "--layers: layer") for _ in range(N_PER_KIND)]
    cases.append((["--layers", f"2-{RNG.randint(5, 40)}"], "--layers: layer"))
    cases.append((["--layers", "x,y"], "--layers expects"))
    return cases


def _bad_counts():
    cases = [(["--n", str(-RNG.randint(0, 10**6))], "n: expected an integer >= 1") for _ in "ab"]
    cases.append((["--offset", str(-RNG.randint(1, 99))], "offset: expected an integer >= 0"))
    cases.append((["--batch-size", "-2"], "batch_size: expected"))
    return cases


def _bad_sets():
    int_fields = ["targets.steps", "templates.length", "statistic.max_tokens"]
    float_fields = ["targets.lr", "mom2_update_weight"]
    cases = [(["--set", f"{f}={w}"], f"{f}: expected") for f, w in zip(int_fields, _words(3))]
    cases += [
        (["--set", f"{f}={w}"], f"{f}: expected a number") for f, w in zip(float_fields, _words(2))
    ]
    cases.append((["--set", f"targets.{_words()[0]}=1"], "unknown config field"))
    cases.append((["--set", "targets.steps"], "--set expects KEY=VALUE"))
    return cases


def _bad_models():
    return [(["--model", f"no-such-{w}"], "unknown model") for w in _words(N_PER_KIND)]


def _bad_data(tmp: Path):
    missing = tmp / f"{_words()[0]}.jsonl"
    broken = tmp / "broken.jsonl"
    broken.write_text("{not json\n")
    empty_records = tmp / "records.jsonl"
    empty_records.write_text(json.dumps({"case_id": "x", "prompt": "no subject"}) + "\n")
    return [
        (["--data-file", str(missing)], missing.name),
        (["--data", _words()[0]], "is neither a known dataset"),
        (["--data-file", str(broken)], "broken.jsonl, line 1: malformed JSON"),
        (["--data-file", str(empty_records)], "records.jsonl: no valid edit request"),
        (["--offset", "10000000"], "--data counterfact: no valid edit requests"),
        (["--config", str(tmp / "none.toml")], "--config"),
    ]


def _cases(tmp: Path):
    groups = [_bad_methods(), _bad_layers(), _bad_counts(), _bad_sets(), _bad_models()]
    return [c for g in groups for c in g] + _bad_data(tmp)


@pytest.fixture
def finished_out(tmp_path) -> Path:
    """A finished run directory (as `editdecay edit` leaves it) that no bad call may touch."""
    out = tmp_path / "finished"
    (out / "delta").mkdir(parents=True)
    (out / "delta" / "delta.safetensors").write_bytes(b"\x00weights")
    (out / "delta" / "delta.json").write_text("{}")
    (out / "summary.json").write_text(json.dumps({"job_digest": "another run", "method": "memit"}))
    for name in ("edits.csv", "edits.parquet", "requests.jsonl", "edit.log"):
        (out / name).write_text(f"{name} of the finished run\n")
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_generated_bad_options_fail_in_one_line_before_the_model(
    finished_out, tmp_path, monkeypatch
):
    def no_model(*a, **kw):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(edit_run, "load_model", no_model)
    runner = CliRunner(env={"EDITDECAY_NO_PROGRESS": "1"})
    (tmp_path / "inputs").mkdir()
    cases = _cases(tmp_path / "inputs")  # files written outside `finished_out`
    before = _hashes(finished_out)
    assert len(cases) >= 25
    for args, expected in cases:
        argv = ["edit", "--model", "tiny-llama", "--out", str(finished_out), *args]
        t0 = time.perf_counter()
        result = runner.invoke(app, argv)
        seconds = time.perf_counter() - t0
        output = result.output.strip()
        assert result.exit_code == 2, (args, output, result.exception)
        assert len(output.splitlines()) == 1, (args, output)
        assert output.startswith("error: ") and expected in output, (args, output)
        assert "Traceback" not in output, args
        assert seconds < 1.0, (args, seconds)
        assert _hashes(finished_out) == before, args
        assert not edit_job.work_dir(finished_out).exists(), args


def test_a_bad_option_creates_no_out_directory(tmp_path):
    runner = CliRunner(env={"EDITDECAY_NO_PROGRESS": "1"})
    out = tmp_path / "never"
    for args, _ in _bad_methods() + _bad_layers() + _bad_sets() + _bad_models():
        result = runner.invoke(app, ["edit", "--model", "tiny-llama", "--out", str(out), *args])
        assert result.exit_code == 2, (args, result.output)
    assert list(tmp_path.iterdir()) == []
