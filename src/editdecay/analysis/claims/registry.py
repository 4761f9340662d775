"""The claim registry: each claim declared once, with its id, its text and the paper's figure.

A check is a function of :class:`ClaimData` (the tables, prepared once for every claim) that returns
a :class:`Finding`; :func:`claim` registers it, and :func:`check_claims` runs every registered check
in id order and pairs each finding with its declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import pandas as pd

from ...schema import ACTIVATIONS, FLIPS, TARGET_FREQUENCY, TableSchema
from ..tables import final_rows
from . import bootstrap
from .bootstrap import EditBootstrap

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable here"
NOT_TESTED = "not tested"
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NOT_TESTABLE, NOT_TESTED)

Tables = Mapping[str, pd.DataFrame]


@dataclass(frozen=True)
class ClaimResult:
    id: int
    claim: str
    paper: str
    ours: str
    verdict: str
    detail: str

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


@dataclass(frozen=True)
class Finding:
    """What a check found: the verdict, this run's figure, and how the verdict was reached."""

    verdict: str
    ours: str
    detail: str

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


def not_tested(reason: str, ours: str = "—") -> Finding:
    """The run lacks the configurations (or the analysis) the claim needs."""
    return Finding(NOT_TESTED, ours, reason)


def not_testable(reason: str, ours: str = "—") -> Finding:
    """The configurations are there, but their data cannot show the effect (the reason says why)."""
    return Finding(NOT_TESTABLE, ours, f"not testable here: {reason}")


@dataclass(frozen=True)
class ClaimData:
    """The tables every check reads, prepared once.

    final   one row per configuration (its final fine-tuning step), numbers as floats, with
            `kind` (the efficacy kind), `efr_minus_delta` and `emergent_share` added;
    n_ds    DS test items per configuration (from downstream.csv; empty without it);
    decay   every row of decay.csv (several steps per configuration);
    boot    the bootstrap over the edits of flips.csv (None without that table);
    activations, target_frequency
            activations.csv and target_frequency.csv of `editdecay analyse` (None without them);
    edited  per-edit efficacy on M_ed of every configuration (config_id, case_id, efficacy) from
            edits.csv (None without it).
    """

    final: pd.DataFrame
    n_ds: dict[str, float]
    decay: pd.DataFrame
    boot: EditBootstrap | None = None
    activations: pd.DataFrame | None = None
    target_frequency: pd.DataFrame | None = None
    edited: pd.DataFrame | None = None


@dataclass(frozen=True)
class Claim:
    id: int
    text: str
    paper: str
    check: Callable[[ClaimData], Finding]

    def evaluate(self, data: ClaimData) -> ClaimResult:
        finding = self.check(data)
        return ClaimResult(
            self.id, self.text, self.paper, finding.ours, finding.verdict, finding.detail
        )


CLAIMS: dict[int, Claim] = {}


def claim(claim_id: int, text: str, paper: str) -> Callable[[Callable], Callable]:
    """Register the decorated check as claim `claim_id` (PAPER §4 numbering)."""

    def register(check: Callable[[ClaimData], Finding]) -> Callable[[ClaimData], Finding]:
        if claim_id in CLAIMS:
            raise ValueError(
                f"claim {claim_id} is registered twice ({CLAIMS[claim_id].check.__name__})"
            )
        CLAIMS[claim_id] = Claim(claim_id, text, paper, check)
        return check

    return register


def prepare(tables: Tables) -> ClaimData:
    decay = tables.get("decay") if isinstance(tables, Mapping) else None
    if decay is None:
        raise ValueError("check_claims needs the decay table (tables['decay'])")
    final = final_for_claims(decay)
    flips = tables.get("flips")
    flips = FLIPS.normalise(flips) if flips is not None else None
    return ClaimData(
        final,
        ds_items(tables.get("downstream")),
        decay,
        bootstrap.build(flips, final),
        activations=_optional(ACTIVATIONS, tables.get("activations")),
        target_frequency=_optional(TARGET_FREQUENCY, tables.get("target_frequency")),
        edited=bootstrap.edited_efficacy(tables.get("edits")),
    )


def _optional(schema: TableSchema, table: pd.DataFrame | None) -> pd.DataFrame | None:
    return None if table is None else schema.normalise(table)


def final_for_claims(decay: pd.DataFrame) -> pd.DataFrame:
    """:func:`editdecay.analysis.tables.final_rows` with plain float numbers and the derived columns."""
    out = final_rows(decay)
    for column in out.columns:
        if pd.api.types.is_integer_dtype(out[column]) and column != "final":
            out[column] = out[column].astype(float)
    out["kind"] = out["efficacy_kind"]
    out["efr_minus_delta"] = out["efr"] - out["delta_es"]
    # reverse flips per edit: for binary ES (CounterFact) erased share − ΔES = emergent share exactly
    out["emergent_share"] = 100 * out["n_emergent"] / out["n_edits"].where(out["n_edits"] > 0)
    return out


def ds_items(downstream: pd.DataFrame | None) -> dict[str, float]:
    """DS test items per configuration (generation protocol, fine-tuned state where there is one)."""
    if downstream is None or downstream.empty or "n" not in downstream.columns:
        return {}
    rows = downstream[downstream["task"].astype(str) != "average"]
    if "mode" in rows.columns and (rows["mode"] == "generate").any():
        rows = rows[rows["mode"] == "generate"]
    out: dict[str, float] = {}
    for cid, group in rows.groupby("config_id"):
        tuned = group["state"] == "M_ed_ft"
        preferred = group[tuned] if tuned.any() else group
        if "step" in preferred.columns:
            preferred = preferred[preferred["step"] == preferred["step"].max()]
        state = preferred["state"].iloc[0]
        counts = pd.to_numeric(preferred[preferred["state"] == state]["n"], errors="coerce")
        out[str(cid)] = float(counts.sum())
    return out


def check_claim(claim_id: int, tables: Tables) -> ClaimResult:
    """One registered claim on `tables`."""
    if claim_id not in CLAIMS:
        raise KeyError(f"no claim {claim_id}; registered: {sorted(CLAIMS)}")
    return CLAIMS[claim_id].evaluate(prepare(tables))


def check_claims(tables: Tables) -> list[ClaimResult]:
    """Every registered claim, in id order, on tables prepared once."""
    data = prepare(tables)
    return [CLAIMS[i].evaluate(data) for i in sorted(CLAIMS)]


def check_claims_per_model(tables: Tables) -> dict[str, list[ClaimResult]]:
    """`check_claims` on each model's configurations alone, models in order of appearance.

    Every verdict then rests on that model's own noise estimate (its seed replicates or its edit sample).
    """
    decay = tables.get("decay") if isinstance(tables, Mapping) else None
    if decay is None:
        raise ValueError("check_claims needs the decay table (tables['decay'])")
    models = (
        [str(m) for m in dict.fromkeys(decay["model"].dropna())] if "model" in decay.columns else []
    )
    return {
        model: check_claims({**tables, "decay": decay[decay["model"].astype(str) == model]})
        for model in models
    }


def claims_frame(results: Sequence[ClaimResult]) -> pd.DataFrame:
    return pd.DataFrame(
        [asdict(r) for r in results], columns=["id", "claim", "paper", "ours", "verdict", "detail"]
    )
