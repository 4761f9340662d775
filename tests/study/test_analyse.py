"""The activation analysis of a finished tiny study run: schema columns, non-negative norms, an edit
that leaves the layers below the first edited one unchanged, and the categories of flips.csv."""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from editdecay.schema import TABLES
from editdecay.study.analyse import analyse_run
from editdecay.study.config import Study
from editdecay.study.pipeline import run_study

sys.path.insert(0, str(Path(__file__).parent))
from test_pipeline import TINY  # noqa: E402  (the tiny study of the pipeline tests)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    raw = copy.deepcopy(TINY)
    raw["grid"] = {"edit_method": ["memit", "alphaedit"], "ft_method": ["lora"]}
    out = tmp_path_factory.mktemp("study")
    run_study(Study.from_dict(raw, out=out), report=False)
    t0 = time.perf_counter()
    tables = analyse_run(out, max_edits=3, ft_prompts=6)
    print(f"analyse_run on the tiny study: {time.perf_counter() - t0:.1f} s")
    return out, tables


def test_tables_are_written_with_the_schema_columns(analysed):
    out, tables = analysed
    assert {"activations", "activations_per_edit", "target_frequency"} <= set(tables)
    for name, table in tables.items():
        assert list(table.columns) == list(TABLES[name].names)
        on_disk = pd.read_csv(out / "results" / f"{name}.csv")
        assert list(on_disk.columns) == list(TABLES[name].names) and len(on_disk) == len(table)
    acts = tables["activations"]
    assert acts["config_id"].nunique() == 2
    assert set(zip(acts["prompts"], acts["position"])) == {
        ("edit", "subject_last"),
        ("edit", "prompt_last"),
        ("finetune", "prompt_last"),
    }
    assert (acts[acts["prompts"] == "finetune"]["n_prompts"] == 6).all()


def test_norms_are_non_negative_and_cosines_bounded(analysed):
    _, tables = analysed
    for name in ("activations", "activations_per_edit"):
        t = tables[name]
        assert (t[["norm_ed", "norm_ft", "norm_ed_ft"]] >= 0).all().all()
        assert (t[["cos_ed_ft", "cos_edft_ft", "cos_edft_ed"]].abs() <= 1 + 1e-9).all().all()


def test_edit_leaves_layers_below_the_first_edited_one_unchanged(analysed):
    _, tables = analysed
    acts = tables["activations"]
    for _, t in acts[acts["position"] == "subject_last"].groupby("config_id"):
        first = min(int(x) for x in t["edit_layers"].iloc[0].split())
        assert first > 0
        below, edited = t[t["layer"] < first], t[t["layer"] >= first]
        assert (below["norm_ed"] < 1e-6).all()
        assert (edited["norm_ed"] > 1e-6).all()
        assert (t["norm_ft"] > 0).any()


def test_categories_match_flips_csv(analysed):
    out, tables = analysed
    flips = pd.read_csv(out / "results" / "flips.csv")
    final = flips[flips["step"] == flips.groupby("config_id")["step"].transform("max")]
    expected = dict(zip(zip(final["config_id"], final["case_id"]), final["category"].str.lower()))
    for name in ("activations_per_edit", "target_frequency"):
        t = tables[name]
        got = dict(zip(zip(t["config_id"], t["case_id"]), t["category"]))
        assert got and all(expected[key] == category for key, category in got.items())
    per_edit = tables["activations_per_edit"]
    assert per_edit.groupby("config_id")["case_id"].nunique().eq(3).all()
    freq = tables["target_frequency"]
    assert (freq["n_target_tokens"] >= 1).all() and (freq["wikitext_mean_count"] >= 0).all()


def test_unknown_configuration_is_refused(analysed):
    out, _ = analysed
    with pytest.raises(ValueError, match="unknown configurations"):
        analyse_run(out, configs=["nope"])


def test_shared_base_states_are_loaded_once(analysed, monkeypatch):
    import editdecay.study.analyse as analyse

    loaded = []

    def counting(stage, store, pool):
        loaded.append(stage.settings["state"])
        return model_state(stage, store, pool)

    model_state = analyse.model_state
    monkeypatch.setattr(analyse, "model_state", counting)
    out, _ = analysed
    analyse_run(out, max_edits=3, ft_prompts=6)
    # MEMIT and AlphaEdit share M and M_ft (same requests, same fine-tuning of M)
    assert sorted(loaded) == ["M", "M_ed", "M_ed", "M_ed_ft", "M_ed_ft", "M_ft"]


def test_umap_projects_the_last_edited_layer(analysed):
    pytest.importorskip("umap")
    out, tables = analysed
    projected = tables["umap"]
    assert set(projected["state"]) == {"M", "M_ed", "M_ft", "M_ed_ft"}
    assert projected.groupby("config_id").size().eq(4 * 3).all()
    assert projected[["x", "y", "z"]].notna().all().all()
    assert projected["silhouette"].between(-1, 1).all()
    assert projected["ed_ft_nearer_ft"].between(0, 1).all()
    assert (out / "results" / "umap.csv").is_file()


def test_without_umap_the_projection_is_skipped(analysed, monkeypatch, caplog):
    import editdecay.study.analyse as analyse

    monkeypatch.setattr(analyse, "umap_available", lambda: False)
    out, _ = analysed
    tables = analyse_run(out, max_edits=3, ft_prompts=6)
    assert "umap" not in tables and not (out / "results" / "umap.csv").exists()


def test_cli_analyse_writes_the_tables_and_the_report_gains_its_section(analysed):
    from typer.testing import CliRunner

    from editdecay.cli import app
    from editdecay.report import write_report

    out, _ = analysed
    result = CliRunner().invoke(
        app, ["analyse", str(out), "--max-edits", "2", "--ft-prompts", "4", "--no-umap"]
    )
    assert result.exit_code == 0, result.output
    assert "activations:" in result.output and "editdecay report" in result.output
    assert pd.read_csv(out / "results" / "activations_per_edit.csv")["case_id"].nunique() <= 2
    report = write_report(out)
    assert any(title.startswith("Why edits decay") for title in report.sections)
    missing = CliRunner().invoke(app, ["analyse", str(out / "nowhere")])
    assert missing.exit_code == 2 and "plan.json" in missing.output


def test_own_knowledge_facts_are_unedited_and_shared_across_configurations(analysed):
    from editdecay.data.loaders import load_requests

    _, tables = analysed
    known = tables["known_facts"]
    assert known["config_id"].nunique() == 2 and set(known["state"]) == {
        "M",
        "M_ed",
        "M_ft",
        "M_ed_ft",
    }
    edited = {r.case_id for r in load_requests("counterfact", n=3).requests}  # TINY's requests
    assert not set(known["case_id"]) & edited
    per_config = known[known["state"] == "M"].groupby("config_id")
    facts = [tuple(g["case_id"]) for _, g in per_config]
    assert len(facts[0]) == 200 and facts[0] == facts[1]  # one sample for every configuration
    # the last records of the set, in its order
    last = [r.case_id for r in load_requests("counterfact").requests][-200:]
    assert list(facts[0]) == last
    # M is shared by MEMIT and AlphaEdit: its scores agree row for row
    m = [g.reset_index(drop=True) for _, g in per_config]
    assert m[0][["correct", "token_accuracy"]].equals(m[1][["correct", "token_accuracy"]])
    # `known_by_M` is M's own `correct`, carried to every state's rows
    assert (m[0]["known_by_M"] == m[0]["correct"]).all()
    assert (known["correct"] == (known["token_accuracy"] == 1.0)).all()


def test_a_study_with_an_analyse_table_runs_the_analysis_before_its_report(tmp_path):
    raw = copy.deepcopy(TINY)
    raw["grid"] = {"edit_method": ["memit"], "ft_method": ["lora"]}
    raw["config"]["finetune"]["checkpoint_steps"] = []
    raw["analyse"] = {"max_edits": 2, "ft_prompts": 4, "umap": False, "known_facts": 5}
    result = run_study(Study.from_dict(raw, out=tmp_path))
    known = pd.read_csv(tmp_path / "results" / "known_facts.csv")
    assert len(known) == 4 * 5 and (tmp_path / "results" / "activations.csv").is_file()
    assert any(title.startswith("Why edits decay") for title in result.report.sections)


def test_bad_analyse_settings_name_the_field():
    from editdecay.config_types import ConfigError

    raw = copy.deepcopy(TINY)
    raw["analyse"] = {"max_edits": 0}
    with pytest.raises(ConfigError, match="analyse.max_edits"):
        Study.from_dict(raw)
    raw["analyse"] = {"umap_layers": 3}
    with pytest.raises(ConfigError, match="umap_layers"):
        Study.from_dict(raw)
