"""editdecay/schema.py: blank rules, idempotent normalisation, producers and docs in step with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from editdecay import schema
from editdecay.analysis.decay import flip_table
from editdecay.analysis.summary import decay_summary, summary_columns

ROOT = Path(__file__).resolve().parents[1]


def test_blank_rules_of_the_config_columns():
    raw = pd.DataFrame(
        {
            "config_id": ["a", "b", "c"],
            "ft_method": ["", "—", "LoRA"],
            "ft_layers": [np.nan, "None", "Edited"],
            "seed": [np.nan, "2", 1.0],
            "n_edits": ["50", "", 10],
            "final": ["True", np.nan, 0],
        }
    )
    decay = schema.DECAY.normalise(raw)
    assert list(decay["ft_method"]) == ["none", "none", "lora"]
    assert list(decay["ft_layers"]) == ["all", "all", "edited"]
    assert list(decay["seed"]) == [0, 2, 1] and str(decay["seed"].dtype) == "Int64"
    assert decay["n_edits"].iloc[0] == 50 and decay["n_edits"].isna().iloc[1]
    assert list(decay["final"]) == [True, False, False]
    assert list(decay["ft_data"]) == ["", "", ""]  # absent column, text: empty
    assert decay["es_ed"].isna().all()  # absent metric: missing, not 0
    assert list(decay.columns[: len(schema.DECAY.names)]) == list(schema.DECAY.names)


@pytest.mark.parametrize("table", list(schema.TABLES.values()), ids=list(schema.TABLES))
def test_normalise_is_idempotent_and_keeps_extra_columns(table):
    raw = pd.DataFrame({name: ["", "1", None] for name in table.names[:4]} | {"extra": [1, 2, 3]})
    once = table.normalise(raw)
    twice = table.normalise(once)
    pd.testing.assert_frame_equal(once, twice)
    assert list(once.columns) == [*table.names, "extra"]


# columns added after the committed small reproduction was gathered (normalise fills them in)
ADDED_AFTER_REPRODUCTION = {"ft_preserve", "edit_layers"}


@pytest.mark.parametrize("run", ["ft-methods", "selective-layers", "reproduction"])
def test_committed_tables_have_the_schema_columns_in_order(run):
    """The newest run has every column; older runs may lack later ones (e.g. edits.csv `source`)."""
    results = ROOT / "results" / run / "results"
    for table in schema.TABLES.values():
        path = results / table.file
        if not path.is_file():
            continue
        header = pd.read_csv(path, nrows=0).columns.tolist()
        assert header == [c for c in table.names if c in header], f"{run}/{table.file}"
        if run == "reproduction":
            expected = [c for c in table.names if c not in ADDED_AFTER_REPRODUCTION]
            assert [c for c in header if c not in ADDED_AFTER_REPRODUCTION] == expected, (
                f"{run}/{table.file}"
            )


def _per_edit(state: str, es: list[float], step: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "config_id": "c",
            "state": state,
            "step": step,
            "case_id": [f"counterfact:{i}" for i in range(len(es))],
            "subject": "s",
            "target_new": "new",
            "target_true": "true",
            "es": es,
            "ps": es,
            "ns": 0.5,
            "rewrite_acc": es,
            "paraphrase_acc": es,
            "neighbour_acc": 0.5,
            "source": "counterfact",
            "model": "tiny",
            "ft_method": "lora",
        }
    )


def test_producers_write_the_schema_columns():
    edits = pd.concat(
        [
            _per_edit("M", [0, 0, 0]),
            _per_edit("M_ed", [1, 1, 0]),
            _per_edit("M_ed_ft", [1, 0, 1], 5),
        ]
    )
    assert set(edits.columns) <= set(schema.EDITS.names)
    summary = decay_summary(edits)
    assert list(summary.columns) == summary_columns(with_downstream=False)
    assert set(summary.columns) <= set(schema.DECAY.names)
    flips = flip_table(edits[edits["state"] == "M_ed"], edits[edits["state"] == "M_ed_ft"])
    assert set(flips.columns) | {"config_id", "step"} <= set(schema.FLIPS.names)
    assert summary_columns(with_downstream=True) == list(schema.DECAY.names)


def test_docs_study_md_lists_the_schema():
    text = (ROOT / "docs" / "study.md").read_text(encoding="utf-8")
    begin = text.index(schema.DOCS_BEGIN) + len(schema.DOCS_BEGIN)
    block = text[begin : text.index(schema.DOCS_END)]
    assert block == "\n" + schema.markdown(), (
        "docs/study.md's column tables differ from editdecay/schema.py: "
        "run `python -m editdecay.schema docs/study.md`"
    )


def test_every_column_has_a_meaning():
    for table in schema.TABLES.values():
        for column in table.columns:
            assert column.doc.strip(), f"{table.file}: {column.name}"
        assert len(set(table.names)) == len(table.names), table.file


def test_row_builder_fills_blanks_and_refuses_unknown_columns():
    row = schema.DECAY.row(config_id="a", es_ed=90.0)
    assert list(row) == list(schema.DECAY.names) and row["es_ed"] == 90.0 and row["efr"] is None
    with pytest.raises(KeyError, match="decay.csv has no column"):
        schema.DECAY.row(es_edd=90.0)
