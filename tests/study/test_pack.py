"""A packed store (store.pack): small enough to carry, gathers the same tables, and resumes a study
by computing again the packed stages that a stage still to run reads."""

from __future__ import annotations

import copy
import json
import shutil

import pandas as pd
import pytest
from test_pipeline import TINY

from editdecay.study.config import Study
from editdecay.study.pipeline import make_plan, run_study
from editdecay.study.store import RECORD_FILE, THIN_FILE, ArtifactStore, pack

SMALL = 16 << 10  # 16 KiB: the tiny model's deltas and adapters are larger, the tables smaller


def _study(out):
    raw = copy.deepcopy(TINY)
    raw["grid"] = {"ft_method": ["none", "lora"]}
    return Study.from_dict(raw, out=out)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return run_study(_study(out), report=False), out


@pytest.fixture
def packed(finished, tmp_path):
    _, out = finished
    dest = tmp_path / "packed"
    totals = pack(out / "store", dest, SMALL)
    return dest, totals


def _records(root):
    return sorted(p.parent.relative_to(root) for p in root.glob(f"*/*/{RECORD_FILE}"))


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(list(df.columns[:6])).reset_index(drop=True)


def test_pack_keeps_every_record_and_leaves_out_the_large_files(finished, packed):
    _, out = finished
    dest, totals = packed
    assert _records(dest) == _records(out / "store")
    assert totals["stages"] == len(_records(dest))
    thin = {p.parent.parent.name for p in dest.glob(f"*/*/{THIN_FILE}")}
    assert {"edit", "finetune"} <= thin and "evaluate" not in thin
    assert totals["omitted_files"] > 0
    for listing in dest.glob(f"*/*/{THIN_FILE}"):
        for rel, size in json.loads(listing.read_text())["omitted"].items():
            assert size > SMALL and not (listing.parent / rel).exists()
            assert (out / "store" / listing.parent.relative_to(dest) / rel).is_file()
    assert not list(dest.rglob(".*.work")) and not list(dest.rglob(".*.lock"))


def test_packing_again_copies_nothing_new(finished, packed):
    _, out = finished
    dest, _ = packed
    assert pack(out / "store", dest, SMALL)["stages"] == 0


def test_a_packed_store_gathers_the_same_tables_and_has_nothing_to_run(finished, packed, tmp_path):
    run, _ = finished
    dest, _ = packed
    again = run_study(_study(tmp_path / "gathered"), store=dest, execute=False, report=False)
    assert again.plan.pending() == []
    for name in ("decay", "edits", "training"):
        pd.testing.assert_frame_equal(_sorted(again.tables[name]), _sorted(run.tables[name]))


def test_a_missing_stage_reruns_with_the_packed_stages_it_reads(finished, packed, tmp_path):
    run, _ = finished
    dest, _ = packed
    plan = make_plan(_study(tmp_path / "resumed"), store=dest)
    store = ArtifactStore(dest)
    last = next(
        s
        for s in reversed(plan.stages)
        if s.kind == "evaluate" and s.settings["state"] == "M_ed_ft"
    )
    shutil.rmtree(store.path(last))  # as if the earlier session stopped before it
    pending = plan.pending()
    kinds = {s.kind for s in pending}
    assert last in pending and {"finetune", "edit"} <= kinds
    assert all(s == last or store.is_thin(s) for s in pending)
    resumed = run_study(_study(tmp_path / "resumed"), store=dest, report=False)
    assert not any(store.is_thin(s) for s in pending)  # recomputed whole
    assert resumed.plan.pending() == []
    for name in ("decay", "edits"):
        pd.testing.assert_frame_equal(
            _sorted(resumed.tables[name]), _sorted(run.tables[name]), check_exact=False, rtol=1e-5
        )


def test_pack_refuses_a_missing_source_and_packing_into_itself(finished, tmp_path):
    _, out = finished
    with pytest.raises(FileNotFoundError, match="no artifact store"):
        pack(tmp_path / "nowhere", tmp_path / "dest")
    with pytest.raises(ValueError, match="same store"):
        pack(out / "store", out / "store")


def test_the_pack_store_command(finished, tmp_path):
    from typer.testing import CliRunner

    from editdecay.cli import app

    _, out = finished
    runner = CliRunner(env={"EDITDECAY_NO_PROGRESS": "1"})
    dest = tmp_path / "cli-packed"
    result = runner.invoke(
        app, ["pack-store", str(out / "store"), str(dest), "--max-file-mb", "0.01"]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"packed {len(_records(out / 'store'))} stages" in text and "left out" in text
    assert _records(dest) == _records(out / "store")
    missing = runner.invoke(app, ["pack-store", str(tmp_path / "nowhere"), str(dest)])
    assert missing.exit_code == 2 and "no artifact store" in " ".join(missing.output.split())
    zero = runner.invoke(app, ["pack-store", str(out / "store"), str(dest), "--max-file-mb", "0"])
    assert zero.exit_code == 2 and "--max-file-mb" in " ".join(zero.output.split())


def test_hours_left_count_what_the_store_already_holds(finished, tmp_path):
    from editdecay.study.estimate import estimate_table, hours_left

    _, out = finished
    study = _study(tmp_path / "again")
    total = estimate_table(study)["hours"].sum()
    fresh = hours_left(study, make_plan(study, store=tmp_path / "empty")).iloc[0]
    assert fresh["done"] == 0 and fresh["to run"] == fresh["stages"] > 0
    assert fresh["hours left"] == pytest.approx(total)
    store = tmp_path / "copy"
    shutil.copytree(out / "store", store)
    done = hours_left(study, make_plan(study, store=store)).iloc[0]
    assert done["to run"] == 0 and done["hours left"] == 0
    plan = make_plan(study, store=store)
    last = next(s for s in reversed(plan.stages) if s.kind == "evaluate")
    shutil.rmtree(ArtifactStore(store).path(last))
    one = hours_left(study, make_plan(study, store=store)).iloc[0]
    assert one["to run"] == 1 and 0 < one["hours left"] < total
