"""`editdecay edit` resumes after a kill -9 at any phase, and never corrupts a finished --out.

The kill test runs the CLI as a subprocess on the tiny model with `EDITDECAY_TEST_KILL_AFTER=<phase>`
(`os._exit(137)` right after that phase is saved), once per phase in turn: each run resumes from
the phases the previous one saved and dies after the next. The final run's outputs must equal an
uninterrupted run's: delta tensors exactly, edits.csv bytes, summary.json minus timings.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import editdecay.study.edit_run as edit_run
from editdecay.cli import app
from editdecay.editing.delta import EditDelta
from editdecay.study.edit import UNSTABLE_SUMMARY_KEYS, work_dir
from editdecay.study.edit_run import KILL_AFTER_ENV, PHASES

FAST = [
    "edit", "--model", "tiny-llama", "--n", "2", "--stat-tokens", "2000", "--ppl-tokens", "256",
    "--set", "targets.steps=2", "--set", "templates.length=2",
]  # fmt: skip
EDITDECAY = Path(sys.executable).with_name("editdecay")


def _cli(out: Path, kill_after: str | None = None, extra=()) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDITDECAY_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    env.pop(KILL_AFTER_ENV, None)
    if kill_after:
        env[KILL_AFTER_ENV] = kill_after
    argv = [str(EDITDECAY), "--device", "cpu", *FAST, *extra, "--out", str(out)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def _summary(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    return {k: v for k, v in summary.items() if k not in UNSTABLE_SUMMARY_KEYS}


def _assert_same_outputs(a: Path, b: Path) -> None:
    da, db = EditDelta.load(a / "delta"), EditDelta.load(b / "delta")
    assert da.weights.keys() == db.weights.keys()
    for name in da.weights:
        assert torch.equal(da.weights[name], db.weights[name]), name
    assert (a / "edits.csv").read_bytes() == (b / "edits.csv").read_bytes()
    assert (a / "requests.jsonl").read_bytes() == (b / "requests.jsonl").read_bytes()
    assert _summary(a) == _summary(b)


def test_kill_at_every_phase_then_resume_gives_the_uninterrupted_outputs(tmp_path):
    reference = tmp_path / "reference"
    done = _cli(reference)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "killed"
    for phase in PHASES:
        killed = _cli(out, kill_after=phase)
        assert killed.returncode == 137, (phase, killed.stderr)
        assert not out.exists(), phase  # nothing published before the end
        assert (work_dir(out) / "phases" / phase / "phase.json").is_file(), phase
        if phase != PHASES[0]:
            assert f"phase {PHASES[0]}: reusing the saved result" in killed.stderr, phase
    resumed = _cli(out)
    assert resumed.returncode == 0, resumed.stderr
    for phase in PHASES:
        assert f"phase {phase}: reusing the saved result" in resumed.stderr, phase
    assert not work_dir(out).exists()
    _assert_same_outputs(reference, out)


# --------------------------------------------------------------------------- in-process


@pytest.fixture(scope="module")
def runner():
    return CliRunner(env={"EDITDECAY_NO_PROGRESS": "1"})


def _invoke(runner, out: Path, *extra: str):
    result = runner.invoke(app, [*FAST, *extra, "--out", str(out)])
    return result, " ".join(result.output.split())


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_run_is_done_a_different_one_needs_overwrite(runner, tmp_path):
    out = tmp_path / "out"
    first, _ = _invoke(runner, out)
    assert first.exit_code == 0, first.output
    finished = _hashes(out)

    again, text = _invoke(runner, out)
    assert again.exit_code == 0, again.output
    assert "already holds this finished run: nothing to do" in text
    assert _hashes(out) == finished

    other, text = _invoke(runner, out, "--seed", "1")
    assert other.exit_code == 2, other.output
    assert (
        text.startswith(f"error: --out {out} holds a different finished run")
        and "--overwrite" in text
    )
    assert _hashes(out) == finished and not work_dir(out).exists()

    replaced, _ = _invoke(runner, out, "--seed", "1", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((out / "summary.json").read_text())["seed"] == 1


def test_a_failed_job_leaves_the_finished_out_untouched_and_logs_the_error(
    runner, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    assert _invoke(runner, out)[0].exit_code == 0
    finished = _hashes(out)

    def fail_after(phase):
        if phase == "targets":
            raise RuntimeError("simulated failure after the targets")

    monkeypatch.setattr(edit_run, "_kill_hook", fail_after)
    failed, text = _invoke(runner, out, "--set", "targets.lr=0.3", "--overwrite")
    assert failed.exit_code == 2 and text == "error: simulated failure after the targets"
    assert _hashes(out) == finished
    log = (work_dir(out) / "edit.log").read_text()
    assert "ERROR" in log and "simulated failure after the targets" in log


def test_a_changed_setting_recomputes_from_the_first_phase_it_affects(
    runner, tmp_path, monkeypatch
):
    out = tmp_path / "out"

    def stop_at_the_end(phase):
        if phase == PHASES[-1]:
            raise RuntimeError("stopped")

    monkeypatch.setattr(edit_run, "_kill_hook", stop_at_the_end)
    assert _invoke(runner, out)[0].exit_code == 2  # every phase saved, nothing published
    monkeypatch.undo()
    result, _ = _invoke(runner, out, "--set", "mom2_update_weight=5000")
    assert result.exit_code == 0, result.output
    log = (out / "edit.log").read_text()
    for phase in ("statistic", "templates", "targets", "unedited"):
        assert f"phase {phase}: reusing the saved result" in log, phase
    for phase in ("delta", "edited"):
        assert f"phase {phase}: settings changed, recomputing" in log, phase
