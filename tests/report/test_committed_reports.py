"""The committed reports regenerate from their committed tables, byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from editdecay.report import write_report, write_reproduction

RESULTS = Path(__file__).resolve().parents[2] / "results"
REPORTS = [
    "ft-methods",
    "selective-layers",
    "reproduction",
    "defences/study",
    "defences/distill",
    "defences/attack-preserve",
    "edit-layers",
    "attacks/persistence-smollm2-backdoor",
    "attacks/persistence-smollm2-kinds",
]


@pytest.mark.parametrize("name", REPORTS)
def test_committed_report_regenerates_identically(tmp_path, monkeypatch, name):
    committed = RESULTS / name
    if not (committed / "results" / "decay.csv").is_file():
        pytest.skip(f"{committed} holds no tables")
    run_dir = tmp_path / "results" / name
    shutil.copytree(committed / "results", run_dir / "results")
    monkeypatch.chdir(tmp_path)
    relative = Path("results") / name
    write_report(relative)
    outputs = ["report.md"]
    if (committed / "REPRODUCTION.md").is_file():
        write_reproduction(relative)
        outputs.append("REPRODUCTION.md")
    for output in outputs:
        regenerated = (run_dir / output).read_text(encoding="utf-8")
        assert regenerated == (committed / output).read_text(encoding="utf-8"), (
            f"{name}/{output} differs from what its tables give now: regenerate it with "
            f"`editdecay report results/{name}`"
        )
