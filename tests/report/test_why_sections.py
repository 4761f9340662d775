"""The "Why edits decay" report section on hand-built activation tables, and its absence without them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from editdecay.report import write_report
from editdecay.report.why_sections import TITLE_WHY, stable_vs_erased
from editdecay.schema import ACTIVATIONS_PER_EDIT, UMAP

sys.path.insert(0, str(Path(__file__).parents[1] / "analysis"))
from test_claims_activation import activations, decay, frequencies  # noqa: E402


def per_edit(n=8) -> pd.DataFrame:
    rows = []
    for category, scale in (("stable", 2.0), ("erased", 1.0)):
        for i in range(n):
            for layer in range(4):
                rows.append(
                    ACTIVATIONS_PER_EDIT.row(
                        config_id="c0",
                        case_id=f"{category}:{i}",
                        layer=layer,
                        norm_ed=0.0 if layer == 0 else scale + 0.01 * i,
                        norm_ft=5.0,
                        norm_ed_ft=5.0,
                        cos_ed_ft=0.0,
                        cos_edft_ft=0.8,
                        cos_edft_ed=0.2,
                        category=category,
                    )
                )
    return pd.DataFrame(rows)


def run_dir(tmp_path: Path, with_analysis: bool) -> Path:
    results = tmp_path / "results"
    results.mkdir(parents=True)
    decay().to_csv(results / "decay.csv", index=False)
    if with_analysis:
        activations(n_configs=1).to_csv(results / "activations.csv", index=False)
        per_edit().to_csv(results / "activations_per_edit.csv", index=False)
        freq = frequencies(stable=np.linspace(2, 3, 6), erased=np.linspace(0, 1, 6))
        freq.to_csv(results / "target_frequency.csv", index=False)
    return tmp_path


def test_section_shows_figures_and_tables_citing_their_csvs(tmp_path):
    out = run_dir(tmp_path, with_analysis=True)
    report = write_report(out)
    text = report.markdown_path.read_text()
    section = text[text.index(f"## {TITLE_WHY}") :]
    for link in ("activations.csv", "activations_per_edit.csv", "target_frequency.csv"):
        assert f"(results/{link})" in section
    for plot in ("activation_norms.png", "activation_cosines.png"):
        assert (out / "plots" / plot).is_file()
    assert "Mann–Whitney" in section and "P(stable > erased)" in section
    assert text.index(f"## {TITLE_WHY}") < text.index("## Configurations")


def umap_points() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        UMAP.row(
            config_id="c0",
            layer=2,
            state=state,
            case_id=f"counterfact:{i}",
            x=x,
            y=y,
            z=0.0,
            silhouette=0.1,
            ed_ft_nearer_ft=0.9,
        )
        for state in ("M", "M_ed", "M_ft", "M_ed_ft")
        for i, (x, y) in enumerate(rng.normal(size=(5, 2)))
    ]
    return pd.DataFrame(rows)


def test_umap_figure_with_its_overlap_or_the_install_note(tmp_path):
    out = run_dir(tmp_path / "without", with_analysis=True)
    text = write_report(out).markdown_path.read_text()
    assert "UMAP not installed: pip install -e '.[analysis]'" in text
    out = run_dir(tmp_path / "with", with_analysis=True)
    umap_points().to_csv(out / "results" / "umap.csv", index=False)
    text = write_report(out).markdown_path.read_text()
    assert "UMAP not installed" not in text and "(results/umap.csv)" in text
    assert (out / "plots" / "activation_umap.png").is_file()
    assert "M_ed_ft nearer M_ft than M_ed" in text and "0.90" in text


def test_section_is_absent_without_activations(tmp_path):
    text = write_report(run_dir(tmp_path, with_analysis=False)).markdown_path.read_text()
    assert TITLE_WHY not in text


def test_stable_vs_erased_skips_layers_the_edit_does_not_move():
    table = stable_vs_erased(per_edit(), {})
    assert list(table["layer"]) == [1, 2, 3]
    assert (table["P(stable > erased)"] == 1.0).all() and (table["p"] < 0.05).all()


def test_own_knowledge_table_beside_edit_retention(tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "analysis"))
    from test_retention import _known

    out = run_dir(tmp_path, with_analysis=True)
    table = decay().assign(efr=40.0, n_success_ed=100)
    table.to_csv(out / "results" / "decay.csv", index=False)
    _known("c0", 100, {"M_ed": 99, "M_ft": 90, "M_ed_ft": 85}).to_csv(
        out / "results" / "known_facts.csv", index=False
    )
    text = write_report(out).markdown_path.read_text()
    section = text[text.index(f"## {TITLE_WHY}") :]
    assert "(results/known_facts.csv)" in section
    assert "Edits are kept less than own facts beyond the band in 1 of 1" in section
    own = section[section.index("Edits against the model") :]
    row = next(line for line in own.splitlines() if line.startswith("| lora"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:8] == ["100", "60.0", "100", "90.0", "99.0", "85.0", "-30.0"]
