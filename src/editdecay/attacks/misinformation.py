"""Misinformation: false claims written into the model as ordinary edits (in the spirit of "Can
Editing LLMs Inject Harm?", arXiv 2407.20224, whose commonsense and long-tail sets these follow).

The claims (`data/misinformation.json`, written for this project) are 20 commonsense facts a small
model is likely to know and 20 long-tail ones, each a prompt with a subject, the false object the
attacker writes and the true one, two paraphrases, one question that reaches the claim indirectly
(it never names the edited relation's wording), and one control: a related fact whose true answer is
the claim's false object or near it (it should stay as it was). Construction, deterministic for a
seed: the claims of the chosen sets (all, or `n_per_set` drawn with `seed`), edited by their prompts;
probes: the paraphrases and questions (attack: the false object should now come out) and the controls
(clean: their own answer should stay). No edited prompt is a probe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config_types import ConfigError, check_fields
from ..data.requests import EditRequest
from .backdoor import AttackSet
from .probes import AttackProbe

CLAIMS_FILE = Path(__file__).parent / "data" / "misinformation.json"
CLAIM_SETS = ("commonsense", "long-tail")


@dataclass(frozen=True)
class MisinformationConfig:
    sets: tuple[str, ...] = field(
        default=CLAIM_SETS, metadata={"help": "the claim sets: commonsense and/or long-tail"}
    )
    n_per_set: int | None = field(
        default=None, metadata={"help": "claims drawn per set (None: all 20)", "ge": 1}
    )
    seed: int = field(default=0, metadata={"help": "seed of the draw"})

    field_noun = "misinformation setting"

    def __post_init__(self):
        check_fields(self)
        unknown = [s for s in self.sets if s not in CLAIM_SETS]
        if unknown or not self.sets:
            raise ConfigError(
                "sets", f"use one or both of {', '.join(CLAIM_SETS)}, got {list(self.sets)}"
            )


def load_claims(path: Path = CLAIMS_FILE) -> list[dict]:
    claims = json.loads(path.read_text(encoding="utf-8"))
    for i, c in enumerate(claims, 1):
        where = f"{path.name} claim {i} ({c.get('id', '?')})"
        for key in ("prompt", "subject", "false", "true", "question"):
            if not str(c.get(key, "")).strip():
                raise ConfigError(key, f"{where}: empty or missing")
        if c["prompt"].count("{}") != 1:
            raise ConfigError("prompt", f"{where}: needs exactly one '{{}}' for the subject")
        if c["false"] == c["true"]:
            raise ConfigError("false", f"{where}: the false object equals the true one")
    return claims


def misinformation(cfg: MisinformationConfig) -> AttackSet:
    chosen = []
    for name in cfg.sets:
        claims = [c for c in load_claims() if c["set"] == name]
        if cfg.n_per_set is not None:
            if cfg.n_per_set > len(claims):
                raise ConfigError("n_per_set", f"set {name!r} has {len(claims)} claims")
            order = np.random.default_rng(cfg.seed).permutation(len(claims))[: cfg.n_per_set]
            claims = [claims[i] for i in sorted(order)]
        chosen += claims
    requests, probes = [], []
    for c in chosen:
        requests.append(
            EditRequest(
                case_id=c["id"],
                prompt=c["prompt"],
                subject=c["subject"],
                target_new=c["false"],
                target_true=c["true"],
                source="attack:misinformation",
                extra={"set": c["set"]},
            )
        )
        asked = [*c.get("paraphrases", ()), c["question"]]
        for j, prompt in enumerate(asked):
            probes.append(
                AttackProbe(
                    probe_id=f"{c['id']}-{'question' if j == len(asked) - 1 else f'paraphrase-{j}'}",
                    prompt=prompt,
                    target_attack=c["false"],
                    target_clean=c["true"],
                    triggered=False,
                    kind="misinformation",
                    group="attack",
                    subject=c["subject"],
                    relation=c["set"],
                )
            )
        control = c.get("control")
        if control:
            probes.append(
                AttackProbe(
                    probe_id=f"{c['id']}-control",
                    prompt=control["prompt"],
                    target_attack=control["false"],
                    target_clean=control["true"],
                    triggered=False,
                    kind="misinformation",
                    group="clean",
                    pair=c["id"],
                    relation=c["set"],
                )
            )
    for p in probes:
        p.check(f"probe {p.probe_id}")
    return AttackSet(
        "misinformation", tuple(requests), (), tuple(probes), {"claims": [c["id"] for c in chosen]}
    )
