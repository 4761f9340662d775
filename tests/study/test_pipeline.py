"""The study pipeline on the tiny model: shared stages, gathered tables, reruns that redo nothing,
a run killed during fine-tuning that resumes to identical results, and the Ray executor."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from editdecay.study.config import RunConfig, Study
from editdecay.study.pipeline import make_plan, run_study
from editdecay.study.store import Stage

TINY = {
    "name": "tiny",
    "config": {
        "model": "tiny-llama",
        "edit_method": "memit",
        "n_edits": 3,
        "ft_method": "lora",
        "ft_examples": 16,
        "edit": {
            "statistic.max_tokens": 2000,
            "statistic.window": 128,
            "targets.steps": 4,
            "alphaedit": {"nullspace_rule": "keep", "nullspace_threshold": 16},
        },
        "finetune": {
            "max_steps": 4,
            "batch_size": 4,
            "micro_batch_size": 2,
            "cutoff_len": 64,
            "warmup_steps": 1,
            "r": 4,
            "alpha": 8,
            "lr": 5e-3,
            "checkpoint_steps": [2],
        },
        "evaluate": {"ds_per_task": 1, "ds_modes": ["rank"], "ppl_tokens": 128, "answer_tokens": 2},
    },
    "grid": {"edit_method": ["memit", "alphaedit"], "ft_method": ["none", "lora"]},
}


def _study(tmp: Path, **changes) -> Study:
    raw = copy.deepcopy(TINY)
    for k, v in changes.items():
        raw[k] = v
    return Study.from_dict(raw, out=tmp)


def test_grid_shares_statistic_targets_and_base_finetuning(tmp_path):
    plan = make_plan(_study(tmp_path))
    kinds = pd.Series([s.kind for s in plan.stages]).value_counts().to_dict()
    # 4 configurations, but one statistic, one target optimisation for both solvers, one M_ft run
    assert len(plan.configs) == 4
    assert kinds == {
        "statistic": 1,
        "targets": 1,
        "edit": 2,
        "finetune": 3,
        "evaluate": 1 + 2 + 2 + 4,
    }
    lora = [c for c in plan.configs if c.config.ft_method == "lora"]
    assert lora[0].stages[("finetune:M", None)].key == lora[1].stages[("finetune:M", None)].key
    assert (
        lora[0].stages[("finetune:M_ed", None)].key != lora[1].stages[("finetune:M_ed", None)].key
    )


def test_stage_keys_follow_settings_and_round_trip():
    a = Stage.make("edit", {"x": 1, "y": (1, 2)})
    assert a.key == Stage.make("edit", {"y": [1, 2], "x": 1}).key
    assert a.key != Stage.make("edit", {"x": 2, "y": [1, 2]}).key
    b = Stage.make("evaluate", {"s": "M_ed"}, (a,))
    assert b.key != Stage.make("evaluate", {"s": "M_ed"}, (Stage.make("edit", {"x": 2}),)).key
    assert Stage.from_dict(b.to_dict()).key == b.key


def test_bad_configuration_names_the_field(tmp_path):
    with pytest.raises(ValueError, match="ft_method 'lorra'"):
        Study.from_dict({**TINY, "grid": {"ft_method": ["lorra"]}}, out=tmp_path)
    with pytest.raises(ValueError, match="unknown configuration field"):
        Study.from_dict({"config": {"modle": "x"}}, out=tmp_path)
    with pytest.raises(ValueError, match="unknown finetune setting"):
        make_plan(_study(tmp_path, grid={}, config={**TINY["config"], "finetune": {"lrate": 1}}))
    with pytest.raises(ValueError, match="layer"):
        make_plan(_study(tmp_path, grid={}, config={**TINY["config"], "edit": {"layers": [9]}}))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return run_study(_study(out), report=False), out


def test_run_gathers_every_state_and_decay(finished):
    run, out = finished
    edits, decay = run.tables["edits"], run.tables["decay"]
    assert set(edits["state"]) == {"M", "M_ed", "M_ft", "M_ed_ft"}
    lora = edits[edits["ft_method"] == "lora"]
    assert sorted(lora[lora["state"] == "M_ed_ft"]["step"].unique()) == [2, 4]
    assert (
        len(edits[(edits["state"] == "M_ed") & (edits["edit_method"] == "memit")]) == 3 * 2
    )  # noft + lora
    assert len(decay) == 2 * (1 + 2)  # per method: no FT row + two checkpoint rows
    assert decay[decay["ft_method"] == "lora"]["es_ed_ft"].notna().all()
    assert set(run.tables["downstream"]["mode"]) == {"rank"}
    for name in ("configs", "edits", "decay", "flips", "downstream", "training", "perplexity"):
        assert (out / "results" / f"{name}.csv").exists()
    assert (out / "results" / "edits.parquet").exists() and (
        out / "results" / "study.json"
    ).exists()
    # the edit of M_ed is the same in the no-FT and the LoRA configuration of a method
    m = edits[(edits["state"] == "M_ed") & (edits["edit_method"] == "memit")]
    a, b = (g.sort_values("case_id")["nll_new"].to_numpy() for _, g in m.groupby("config_id"))
    assert (a == b).all()


def test_rerun_reuses_everything(finished, caplog):
    run, out = finished
    before = (out / "results" / "decay.csv").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "store").rglob("stage.json")}
    caplog.set_level("INFO", logger="editdecay")
    again = run_study(_study(out), report=False)
    assert "0 to run" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in (out / "store").rglob("stage.json")} == stamps
    assert (out / "results" / "decay.csv").read_text() == before
    assert len(again.plan.pending()) == 0


def test_gather_only_reads_finished_stages_and_runs_nothing(finished, tmp_path):
    run, out = finished
    store = out / "store"
    stage_dirs = sorted(p.parent for p in store.rglob("stage.json"))
    wider = _study(tmp_path / "wider", grid={**TINY["grid"], "ft_method": ["none", "lora", "dora"]})
    partial = run_study(wider, store=store, execute=False)
    assert sorted(p.parent for p in store.rglob("stage.json")) == stage_dirs
    decay = partial.tables["decay"]
    dora, lora = decay[decay["ft_method"] == "dora"], decay[decay["ft_method"] == "lora"]
    assert (
        len(dora) > 0 and dora["es_ed_ft"].isna().all()
    )  # M_ed is shared and done, M_ed_ft is not
    assert lora["es_ed_ft"].notna().all()
    pd.testing.assert_frame_equal(
        lora.reset_index(drop=True),
        run.tables["decay"].query("ft_method == 'lora'").reset_index(drop=True),
    )
    info = json.loads((tmp_path / "wider" / "results" / "study.json").read_text())
    assert (
        info["stages"]["finished"]
        == len(stage_dirs)
        < info["stages"]["total"]
        == len(partial.plan.stages)
    )
    assert sum(info["stage_environments"].values()) == len(stage_dirs)
    assert all(
        k.startswith(f"cpu, torch {torch.__version__}, ") for k in info["stage_environments"]
    )
    assert "Partial results:" in partial.report.markdown_path.read_text()
    with pytest.raises(RuntimeError, match="no evaluated model states"):
        run_study(_study(tmp_path / "fresh"), execute=False, report=False)


def _write_study_file(path: Path, out: Path, max_steps: int) -> Path:
    cfg = copy.deepcopy(TINY["config"])
    cfg["finetune"]["max_steps"] = max_steps
    cfg["finetune"]["epochs"] = 20  # 16 examples in batches of 4: enough epochs for max_steps
    cfg["finetune"]["checkpoint_steps"] = [max_steps // 2]
    lines = ['name = "kill"', f'out = "{out}"', "snapshot_every = 3", "[config]"]
    for k, v in cfg.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {_toml(v)}")
    for section in ("finetune", "evaluate"):
        lines.append(f"[config.{section}]")
        lines += [f'"{k}" = {_toml(v)}' for k, v in cfg[section].items()]
    lines.append("[config.edit]")
    lines += [f'"{k}" = {_toml(v)}' for k, v in cfg["edit"].items() if not isinstance(v, dict)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(v) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v).lower() if isinstance(v, bool) else str(v)


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "editdecay", *args]


def test_killed_during_finetuning_resumes_to_identical_results(tmp_path):
    steps = 60
    clean = tmp_path / "clean"
    killed = tmp_path / "killed"
    env = {**os.environ, "EDITDECAY_NO_PROGRESS": "1"}
    subprocess.run(
        _cli("run", str(_write_study_file(tmp_path / "a.toml", clean, steps)), "--no-report"),
        check=True,
        env=env,
        capture_output=True,
    )
    study_file = _write_study_file(tmp_path / "b.toml", killed, steps)
    proc = subprocess.Popen(
        _cli("run", str(study_file), "--no-report"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    snapshots: list[Path] = []
    while time.time() < deadline and proc.poll() is None:
        snapshots = (
            list((killed / "store" / "finetune").glob(".*.work/snapshot/state.json"))
            if (killed / "store" / "finetune").exists()
            else []
        )
        if snapshots:
            break
        time.sleep(0.02)
    assert snapshots, "fine-tuning never wrote a snapshot before the run ended"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = {p.parent.name for p in (killed / "store").rglob("stage.json")}
    assert not (killed / "results").exists()

    first_log = (killed / "run.log").read_text()
    rerun = subprocess.run(
        _cli("run", str(study_file), "--no-report"), env=env, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    log = (killed / "run.log").read_text()[len(first_log) :]
    assert "resuming lora fine-tuning from step" in log
    reran = {
        line.split("stage ")[1].split(":")[0].split("/")[1]
        for line in log.splitlines()
        if ": running" in line and "stage " in line
    }
    assert not reran & finished_before, "a finished stage ran again"
    for name in ("edits.csv", "decay.csv", "training.csv", "downstream.csv"):
        a = pd.read_csv(clean / "results" / name)
        b = pd.read_csv(killed / "results" / name)
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_executor_on_a_local_cluster_matches_local_run(finished, tmp_path):
    pytest.importorskip("ray")
    ray_bin = Path(sys.executable).with_name("ray")
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = subprocess.run(
        [
            str(ray_bin),
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        study = _study(tmp_path / "ray", grid={"edit_method": ["memit"], "ft_method": ["lora"]})
        run = run_study(study, executor="ray", address=f"127.0.0.1:{port}", report=False)
        assert len(run.plan.pending()) == 0
        local, _ = finished
        ours = run.tables["decay"].drop(columns=[]).reset_index(drop=True)
        theirs = local.tables["decay"]
        theirs = theirs[theirs["config_id"].isin(ours["config_id"])].reset_index(drop=True)
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_ray_stages_reserve_gpus_and_receive_the_device(tmp_path, monkeypatch):
    """Ray hides GPUs from tasks that reserve none: `gpus_per_stage` must reach `ray.remote`, and the
    device choice must reach the workers' environment."""
    import types

    from editdecay.study.pipeline import execute_ray

    seen: dict = {}

    class _Remote:
        def __init__(self, fn):
            self.calls = seen.setdefault("calls", [])

        def remote(self, *args):
            self.calls.append(args)
            return f"ref{len(self.calls)}"

    def remote(**options):
        seen["options"] = options
        return _Remote

    fake = types.SimpleNamespace(
        init=lambda **kw: seen.setdefault("init", kw),
        remote=remote,
        get=lambda refs: seen.setdefault("got", refs),
        shutdown=lambda: None,
    )
    monkeypatch.setitem(sys.modules, "ray", fake)
    plan = make_plan(_study(tmp_path))
    monkeypatch.setenv(
        "EDITDECAY_DEVICE", "cuda"
    )  # the workers' choice; this machine need not have one
    execute_ray(plan, "127.0.0.1:1", cpus_per_stage=2, gpus_per_stage=0.25)
    assert seen["options"] == {"num_cpus": 2, "num_gpus": 0.25, "max_retries": 1}
    assert seen["init"]["runtime_env"]["env_vars"]["EDITDECAY_DEVICE"] == "cuda"
    assert len(seen["calls"]) == len(plan.pending()) == len(seen["got"])


def test_study_file_rules(tmp_path):
    base = {"config": {"model": "tiny-llama", "n_edits": 3, "finetune": {"max_steps": 4, "r": 4}}}
    # [[extra]] adds to the base configuration and merges nested tables key by key
    study = Study.from_dict(
        {**base, "extra": [{"seed": 1, "finetune": {"max_steps": 8}}]}, out=tmp_path
    )
    assert [c.seed for c in study.configs] == [0, 1]
    assert study.configs[1].finetune == {"max_steps": 8, "r": 4}
    # an explicit layer list is one value; a list of lists is an axis
    one = Study.from_dict({**base, "grid": {"ft_layers": [10, 11]}}, out=tmp_path)
    assert [c.ft_layers for c in one.configs] == [(10, 11)]
    two = Study.from_dict({**base, "grid": {"ft_layers": [[1], [2, 3]]}}, out=tmp_path)
    assert [c.ft_layers for c in two.configs] == [(1,), (2, 3)]
    # without fine-tuning, fine-tuning axes do not multiply configurations
    noft = Study.from_dict(
        {**base, "grid": {"ft_method": ["none"], "seed": [0, 1], "ft_layers": ["all", "edited"]}},
        out=tmp_path,
    )
    assert len(noft.configs) == 1
    assert (
        RunConfig(n_edits=5, edit_batch_size=0)
        == RunConfig(n_edits=5, edit_batch_size=5)
        == RunConfig(n_edits=5)
    )


def test_equal_runs_share_keys_and_checkpoints_stay_inside_the_run(tmp_path):
    def plan_of(**finetune):
        raw = copy.deepcopy(TINY)
        raw["grid"] = {}
        raw["config"]["finetune"].update(finetune)
        return make_plan(Study.from_dict(raw, out=tmp_path)).configs[0].stages

    a = plan_of(lr=None, checkpoint_steps=[3, 2])
    b = plan_of(lr=None, checkpoint_steps=[2, 3, 3])
    from editdecay.finetuning.tuner import FinetuneConfig

    c = plan_of(
        lr=FinetuneConfig().learning_rate, checkpoint_steps=[2, 3]
    )  # None resolves to the default
    key = ("finetune:M_ed", None)
    assert a[key].key == b[key].key == c[key].key
    # 16 examples in batches of 4, max_steps 4: a checkpoint at 4 or later would be the final state
    late = plan_of(checkpoint_steps=[2, 4, 9])
    assert late[key].settings["finetune"]["checkpoint_steps"] == [2]
    assert ("M_ed_ft", 4) not in late and ("M_ed_ft", 2) in late


def test_method_specific_edit_axis_reaches_only_that_method(tmp_path):
    raw = copy.deepcopy(TINY)
    raw["grid"] = {
        "edit_method": ["memit", "alphaedit"],
        "ft_method": ["none"],
        "edit.alphaedit.nullspace_threshold": [12, 20],
    }
    plan = make_plan(Study.from_dict(raw, out=tmp_path))
    cfgs = {
        (
            c.config.edit_method,
            c.stages[("edit", None)].settings["config"].get("nullspace_threshold"),
        )
        for c in plan.configs
    }
    assert cfgs == {("memit", None), ("alphaedit", 12), ("alphaedit", 20)}


def test_a_validation_split_is_gathered_into_validation_csv(tmp_path):
    raw = copy.deepcopy(TINY)
    raw["grid"] = {"edit_method": ["memit"], "ft_method": ["lora"]}
    raw["config"]["finetune"].update(
        {"validation_examples": 4, "validation_every": 2, "checkpoint_steps": []}
    )
    raw["config"]["evaluate"]["ds_per_task"] = 0
    run_study(Study.from_dict(raw, out=tmp_path), report=False)
    val = pd.read_csv(tmp_path / "results" / "validation.csv")
    assert set(val["state"]) == {"M_ft", "M_ed_ft"}
    assert list(val.columns) == ["config_id", "state", "step", "validation_loss"]
    assert val["validation_loss"].gt(0).all() and val["step"].max() == 4


def test_preservation_axis_shares_the_base_run_and_stays_out_of_the_decay_tables(tmp_path):
    raw = copy.deepcopy(TINY)
    raw["grid"] = {"edit_method": ["memit"], "ft_preserve": ["none", "subspace", "freeze"]}
    raw["config"]["finetune"]["checkpoint_steps"] = []
    raw["config"]["evaluate"]["ds_per_task"] = 0
    study = Study.from_dict(raw, out=tmp_path)
    plan = make_plan(study)
    ids = {c.config.ft_preserve: c.config.config_id for c in plan.configs}
    assert "keep-subspace" in ids["subspace"] and "keep" not in ids["none"]
    base = {c.stages[("finetune:M", None)].key for c in plan.configs}
    edited = {c.stages[("finetune:M_ed", None)].key for c in plan.configs}
    assert len(base) == 1 and len(edited) == 3  # M is fine-tuned plainly, once
    run = run_study(study, report=False)
    decay = run.tables["decay"]
    assert set(decay["ft_preserve"]) == {"none", "subspace", "freeze"}
    training = pd.read_csv(tmp_path / "results" / "training.csv")
    assert not training.empty
    from editdecay.analysis.tables import final_rows

    assert set(final_rows(decay)["ft_preserve"]) == {"none"}
    assert set(final_rows(decay, preserved=True)["ft_preserve"]) == {"none", "subspace", "freeze"}


def test_an_edit_layer_axis_is_written_to_every_table_and_judged_by_claim_14(tmp_path):
    from editdecay.analysis.claims import check_claim, final_for_claims
    from editdecay.analysis.claims.edit_layers import layer_pairs
    from editdecay.report.inputs import load_results
    from editdecay.report.reproduction import claim_tables

    raw = copy.deepcopy(TINY)
    raw["grid"] = {"edit_method": ["memit"], "ft_method": ["none"]}
    raw["extra"] = [{"edit_method": ["memit"], "ft_method": ["none"], "edit.layers": [[0, 1]]}]
    raw["config"]["evaluate"]["ds_per_task"] = 0
    run_study(Study.from_dict(raw, out=tmp_path), report=False)
    for name in ("decay.csv", "edits.csv", "configs.csv"):
        table = pd.read_csv(tmp_path / "results" / name, keep_default_na=False)
        assert set(table["edit_layers"].astype(str)) == {"", "0 1"}, name
    tables = claim_tables(load_results(tmp_path))
    (pair,) = layer_pairs(final_for_claims(tables["decay"]))
    assert pair.layers == "0 1" and pair.n_edits == 3
    result = check_claim(14, tables)
    assert result.verdict != "not tested", result.detail  # paired from edits.csv's M_ed rows
