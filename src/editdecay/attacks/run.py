"""`editdecay attack`: plant a malicious edit, score its probes before and after, write everything.

Output directory (`--out`):
    requests.jsonl   what the attacker edited (the trigger group, then the duplex clean group)
    probes.jsonl     what is measured (attacks/probes.py); never an edited prompt
    delta/           the planted edit as an EditDelta (`editdecay export` turns it into a model)
    scores.csv       one row per (probe, state), state M (unedited) or M_ed (attacked)
    summary.json     settings, seeds, the metrics of both states, seconds

The job writes into `.OUT.work/` and publishes by one rename, so a failed run leaves no half-written
`--out`; an `--out` that holds a finished attack is refused unless `overwrite`.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from ..config_types import build, check_fields
from ..editing import default_config, get_editor
from ..editing.config import EditMethod, check_overrides
from ..editing.delta import EditDelta
from ..models.registry import DEFAULT_MODEL, LoadedModel, load_model
from .backdoor import AttackSet, BackdoorConfig, fact_backdoor
from .bias import BiasConfig, bias_injection
from .misinformation import MisinformationConfig, misinformation
from .probes import AttackKind, save_probes
from .score import score_probes, summarise
from .task_backdoor import TaskBackdoorConfig, task_backdoor

log = logging.getLogger(__name__)

BUILDERS = {  # kind → (settings class, builder)
    "backdoor": (BackdoorConfig, fact_backdoor),
    "task-backdoor": (TaskBackdoorConfig, task_backdoor),
    "misinformation": (MisinformationConfig, misinformation),
    "bias": (BiasConfig, bias_injection),
}


@dataclass
class AttackJob:
    kind: AttackKind = field(default="backdoor", metadata={"help": "the attack to plant"})
    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "registered model name, HF model directory or cached HF id"},
    )
    method: EditMethod = field(default="memit", metadata={"help": "memit, alphaedit or rome"})
    out: Path = field(default=Path("runs/attack"), metadata={"help": "output directory"})
    settings: dict = field(
        default_factory=dict, metadata={"help": "the kind's settings (e.g. trigger, n_edit)"}
    )
    edit: dict = field(default_factory=dict, metadata={"help": "editor overrides (dotted keys)"})

    def __post_init__(self):
        check_fields(self)
        if self.kind not in BUILDERS:
            raise ValueError(
                f"attack kind {self.kind!r} is not available; use one of {', '.join(BUILDERS)}"
            )
        if self.method == "mend":
            raise ValueError("--method mend cannot plant an attack: use memit, alphaedit or rome")
        cls, _ = BUILDERS[self.kind]
        self.config = build(cls, self.settings, self.kind)
        check_overrides(self.method, self.edit, "edit")  # before any model loads


def build_attack(job: AttackJob) -> AttackSet:
    return BUILDERS[job.kind][1](job.config)


def check_attack_settings(kind: str, settings: dict):
    """The kind's settings object (ConfigError naming a bad field, ValueError for a bad kind)."""
    if kind not in BUILDERS:
        raise ValueError(f"unknown attack kind {kind!r}; use one of {', '.join(BUILDERS)}")
    return build(BUILDERS[kind][0], settings)


@functools.lru_cache(maxsize=32)
def _attack_set(kind: str, settings_json: str) -> AttackSet:
    cls, builder = BUILDERS[kind]
    return builder(build(cls, json.loads(settings_json)))


def attack_set(kind: str, settings: dict) -> AttackSet:
    """The attack set of `kind` with `settings` (built once per distinct settings)."""
    return _attack_set(kind, json.dumps(settings, sort_keys=True))


def attack_requests(kind: str, settings: dict) -> int:
    return len(attack_set(kind, settings).requests)


def plant(
    lm: LoadedModel,
    attack: AttackSet,
    method: str,
    overrides: dict | None = None,
    cfg=None,
) -> EditDelta:
    """The attack's edit on `lm` (left unchanged), with the editor config `cfg` (default: the
    method's defaults for `lm` with `overrides`). With a duplex clean group, each group is solved
    on the unedited model by itself and the two updates are added (BadEdit's duplex update)."""
    editor = get_editor(method)
    cfg = cfg if cfg is not None else default_config(method, lm, overrides)
    trigger = editor.edit(lm, list(attack.requests), cfg)
    if not attack.clean_requests:
        return trigger
    clean = editor.edit(lm, list(attack.clean_requests), cfg)
    return trigger.combined(
        clean, info={"duplex": True, "trigger_group": trigger.info, "clean_group": clean.info}
    )


def run_attack(job: AttackJob, overwrite: bool = False, device: str | None = None) -> dict:
    out = Path(job.out)
    if (out / "summary.json").is_file() and not overwrite:
        raise FileExistsError(f"{out} holds a finished attack; pass --overwrite to replace it")
    work = out.with_name(f".{out.name}.work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    attack = build_attack(job)
    lm = load_model(job.model, device=device)
    save_probes(attack.probes, work / "probes.jsonl")
    (work / "requests.jsonl").write_text(
        "".join(
            json.dumps(r.to_dict(), ensure_ascii=False) + "\n"
            for r in (*attack.requests, *attack.clean_requests)
        )
    )
    before = score_probes(lm, attack.probes).assign(state="M")
    t1 = time.perf_counter()
    delta = plant(lm, attack, job.method, job.edit)
    delta.info["model"] = job.model
    delta.info["attack"] = {"kind": job.kind, **asdict(job.config)}
    edit_seconds = time.perf_counter() - t1
    delta.save(work / "delta")
    with delta.apply(lm.model):
        after = score_probes(lm, attack.probes).assign(state="M_ed")
    scores = pd.concat([before, after], ignore_index=True)
    scores.to_csv(work / "scores.csv", index=False)
    summary = {
        "kind": job.kind,
        "model": job.model,
        "method": job.method,
        "settings": asdict(job.config),
        "edit_overrides": job.edit,
        "seed": job.config.seed,
        "n_requests": len(attack.requests),
        "n_clean_requests": len(attack.clean_requests),
        "n_probes": len(attack.probes),
        "metrics": {"M": summarise(before), "M_ed": summarise(after)},
        "seconds": {"edit": edit_seconds, "total": time.perf_counter() - t0},
        **attack.settings,
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)
    log.info("attack written to %s", out)
    return summary
