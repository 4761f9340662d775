"""The paper's claims (PAPER §4) checked on a study's tables.

registry  verdicts, ClaimResult, the @claim decorator, the tables prepared once (ClaimData)
noise     the noise model (σ from seed replicates or the binomial SE), pairing, the findings' wording
erasure   claims 1–7, conditions claims 8–13 and 15, edit_layers claim 14: one registered
          function each
tables    the paired t-test and seed-spread tables shown beside the verdicts

A verdict is ``holds`` (the difference points the paper's way beyond the noise band), ``does not
hold`` (the other way, beyond the band), ``inconclusive`` (inside it, or no noise estimate) or ``not
tested`` (the run lacks what the claim needs).
"""

from . import conditions, edit_layers, erasure  # noqa: F401  (register the claims)
from .noise import Z, estimate_noise, main_rows, seed_averaged
from .registry import (
    CLAIMS,
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    NOT_TESTABLE,
    NOT_TESTED,
    VERDICTS,
    ClaimData,
    ClaimResult,
    Finding,
    check_claim,
    check_claims,
    check_claims_per_model,
    claim,
    claims_frame,
    final_for_claims,
    prepare,
)
from .tables import seed_spreads, t_tests

__all__ = [
    "CLAIMS",
    "DOES_NOT_HOLD",
    "HOLDS",
    "INCONCLUSIVE",
    "NOT_TESTABLE",
    "NOT_TESTED",
    "VERDICTS",
    "Z",
    "ClaimData",
    "ClaimResult",
    "Finding",
    "check_claim",
    "check_claims",
    "check_claims_per_model",
    "claim",
    "claims_frame",
    "estimate_noise",
    "final_for_claims",
    "main_rows",
    "prepare",
    "seed_averaged",
    "seed_spreads",
    "t_tests",
]
