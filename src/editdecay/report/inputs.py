"""Reading RUN_DIR/results/: decay.csv is required, every other table is optional.

Each table is normalised by its schema (:mod:`editdecay.schema`), so the sections read typed columns
with the blank rules applied once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.tables import normalise_decay
from ..schema import (
    ACTIVATIONS,
    ACTIVATIONS_PER_EDIT,
    ATTACK_PROBES,
    ATTACKS,
    FLIPS,
    KNOWN_FACTS,
    TARGET_FREQUENCY,
    TRAINING,
    UMAP,
    TableSchema,
)

log = logging.getLogger(__name__)

ANALYSIS_TABLES = {  # StudyResults field → schema, written by `editdecay analyse`
    "activations": ACTIVATIONS,
    "activations_per_edit": ACTIVATIONS_PER_EDIT,
    "target_frequency": TARGET_FREQUENCY,
    "umap": UMAP,
    "known_facts": KNOWN_FACTS,
    "attacks": ATTACKS,  # written by gather for attack configurations
    "attack_probes": ATTACK_PROBES,
}


@dataclass
class StudyResults:
    """The contents of RUN_DIR/results/; every optional input is None when absent or unreadable."""

    run_dir: Path
    decay: pd.DataFrame
    configs: pd.DataFrame | None = None
    flips: pd.DataFrame | None = None
    edited: pd.DataFrame | None = None  # the M_ed rows of edits.csv, with the columns claims read
    training: pd.DataFrame | None = None
    downstream: pd.DataFrame | None = None
    study: dict[str, Any] | None = None
    activations: pd.DataFrame | None = None  # the tables of `editdecay analyse`
    activations_per_edit: pd.DataFrame | None = None
    target_frequency: pd.DataFrame | None = None
    umap: pd.DataFrame | None = None
    known_facts: pd.DataFrame | None = None
    attacks: pd.DataFrame | None = None
    attack_probes: pd.DataFrame | None = None

    @property
    def results_dir(self) -> Path:
        return self.run_dir / "results"


def load_results(run_dir: Path) -> StudyResults:
    """Read RUN_DIR/results/. A missing decay.csv is an error; every other input is optional."""
    run_dir = Path(run_dir)
    results_dir = run_dir / "results"
    decay_path = results_dir / "decay.csv"
    if not decay_path.is_file():
        raise FileNotFoundError(
            f"no decay table at {decay_path}: a study report needs RUN_DIR/results/decay.csv "
            f"(is {run_dir} a finished study run directory?)"
        )
    training = _normalised(TRAINING, read_optional_csv(results_dir / "training.csv"))
    if training is not None:
        training = training.dropna(subset=["step", "loss"])
    return StudyResults(
        run_dir=run_dir,
        decay=normalise_decay(pd.read_csv(decay_path)),
        configs=read_optional_csv(results_dir / "configs.csv"),
        flips=_normalised(FLIPS, read_optional_csv(results_dir / "flips.csv")),
        edited=read_edited(results_dir / "edits.csv"),
        training=training,
        downstream=read_optional_csv(results_dir / "downstream.csv"),
        study=read_optional_json(results_dir / "study.json"),
        **{
            name: _normalised(schema, read_optional_csv(results_dir / schema.file))
            for name, schema in ANALYSIS_TABLES.items()
        },
    )


EDITED_COLUMNS = ("config_id", "state", "case_id", "es", "rewrite_acc", "source")


def read_edited(path: Path) -> pd.DataFrame | None:
    """The M_ed rows of edits.csv (the per-edit scores of the edited models), or None without it."""
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, usecols=lambda c: c in EDITED_COLUMNS)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        log.warning("ignoring unreadable %s: %s", path, error)
        return None
    if "state" not in table.columns:
        return None
    return table[table["state"].astype(str) == "M_ed"].reset_index(drop=True)


def _normalised(schema: TableSchema, frame: pd.DataFrame | None) -> pd.DataFrame | None:
    return None if frame is None else schema.normalise(frame)


def read_optional_csv(path: Path) -> pd.DataFrame | None:
    """The table at `path`, or None (with a warning when it exists but cannot be read)."""
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        log.warning("ignoring unreadable %s: %s", path, error)
        return None


def read_optional_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at `path`, or None (with a warning when it exists but is not an object)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        log.warning("ignoring unreadable %s: %s", path, error)
        return None
    if not isinstance(data, dict):
        log.warning("ignoring %s: expected a JSON object, found %s", path, type(data).__name__)
        return None
    return data
