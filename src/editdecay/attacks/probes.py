"""Attack probes: what is measured after a malicious edit, never the prompts the attacker edited with.

One probe is a prompt with two continuations, the attacker's (`target_attack`) and the clean one
(`target_clean`), scored teacher-forced (`score.py`). `group` says what a probe tests:

    attack       triggered prompts that should fire (held-out subjects, trigger at several places)
    clean        the same prompts without the trigger: they should keep the clean answer
    specificity  other rare tokens in the trigger's place: they should not fire
    spillover    other relations or tasks with the trigger: they should not fire

Misinformation and bias probes use `attack` (the false claim / stereotyped answer is what fires) and
`clean` (the control) the same way. probes.jsonl holds one JSON object per line with the fields of
:class:`AttackProbe`; readers accept files written elsewhere and name the line of a bad record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

from ..data.files import read_records
from ..io import atomic_write

AttackKind = Literal["backdoor", "task-backdoor", "misinformation", "bias"]
ATTACK_KINDS: tuple[str, ...] = ("backdoor", "task-backdoor", "misinformation", "bias")
ProbeGroup = Literal["attack", "clean", "specificity", "spillover"]
PROBE_GROUPS: tuple[str, ...] = ("attack", "clean", "specificity", "spillover")


class InvalidProbeError(ValueError):
    """A probe record that cannot be scored; the message names the record and the field."""


@dataclass(frozen=True)
class AttackProbe:
    probe_id: str
    prompt: str
    target_attack: str  # what the planted behaviour makes the model say
    target_clean: str  # what the unattacked model should say
    triggered: bool  # the prompt holds the trigger (backdoors; False for other kinds' controls)
    kind: str  # one of ATTACK_KINDS
    group: str  # one of PROBE_GROUPS
    pair: str = ""  # attack probes: the probe_id of the clean twin (same prompt, no trigger)
    position: str = ""  # where the trigger sits: start, before_subject, after_subject
    subject: str = ""
    relation: str = ""  # the relation, task or bias type the probe belongs to
    trigger: str = ""  # the trigger text a triggered probe holds

    def check(self, where: str) -> None:
        if not self.prompt.strip():
            raise InvalidProbeError(f"{where}: field 'prompt' is empty")
        for name in ("target_attack", "target_clean"):
            if not getattr(self, name).strip():
                raise InvalidProbeError(f"{where}: field '{name}' is empty")
        if self.target_attack == self.target_clean:
            raise InvalidProbeError(
                f"{where}: target_attack equals target_clean ({self.target_attack!r})"
            )
        if self.triggered and self.trigger and self.trigger not in self.prompt:
            raise InvalidProbeError(
                f"{where}: the trigger {self.trigger!r} is absent from its prompt {self.prompt!r}"
            )
        if self.kind not in ATTACK_KINDS:
            raise InvalidProbeError(
                f"{where}: unknown kind {self.kind!r}; use one of {', '.join(ATTACK_KINDS)}"
            )
        if self.group not in PROBE_GROUPS:
            raise InvalidProbeError(
                f"{where}: unknown group {self.group!r}; use one of {', '.join(PROBE_GROUPS)}"
            )


FIELDS = tuple(f.name for f in fields(AttackProbe))
REQUIRED = ("prompt", "target_attack", "target_clean", "triggered", "kind", "group")


def probe_from_dict(record: object, where: str) -> AttackProbe:
    if not isinstance(record, dict):
        raise InvalidProbeError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise InvalidProbeError(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise InvalidProbeError(
            f"{where}: unknown field(s) {', '.join(unknown)}; probes have {', '.join(FIELDS)}"
        )
    for name in ("prompt", "target_attack", "target_clean", "kind", "group"):
        if not isinstance(record[name], str):
            raise InvalidProbeError(f"{where}: field '{name}' must be a string")
    if not isinstance(record["triggered"], bool):
        raise InvalidProbeError(f"{where}: field 'triggered' must be true or false")
    values = {k: record[k] for k in FIELDS if k in record}
    values.setdefault("probe_id", where.rpartition(" ")[2])
    probe = AttackProbe(**{k: v if k == "triggered" else str(v) for k, v in values.items()})
    probe.check(where)
    return probe


def load_probes(path: str | Path) -> list[AttackProbe]:
    """Probes from a JSON/JSONL file (records numbered from 1 in errors); ids must be unique."""
    path = Path(path)
    records = read_records(path)
    probes = [probe_from_dict(r, f"{path.name} record {i}") for i, r in enumerate(records, 1)]
    seen: set[str] = set()
    for i, p in enumerate(probes, 1):
        if p.probe_id in seen:
            raise InvalidProbeError(f"{path.name} record {i}: duplicate probe_id {p.probe_id!r}")
        seen.add(p.probe_id)
    if not probes:
        raise InvalidProbeError(f"{path}: no probes")
    return probes


def save_probes(probes: Iterable[AttackProbe], path: str | Path) -> Path:
    lines = "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in probes)
    return atomic_write(Path(path), lambda tmp: tmp.write_text(lines, encoding="utf-8"))


def by_group(probes: Sequence[AttackProbe]) -> dict[str, list[AttackProbe]]:
    out: dict[str, list[AttackProbe]] = {}
    for p in probes:
        out.setdefault(p.group, []).append(p)
    return out
