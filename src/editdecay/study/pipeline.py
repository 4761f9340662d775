"""Run a study: plan every configuration's stages, execute the union once, gather one set of tables.

RUN_DIR layout:
    store/            content-addressed stage outputs (see store.py); shareable between runs with --store
    plan.json         every configuration with the keys of its stages
    results/          configs.csv, edits.csv/.parquet, downstream.csv, training.csv, perplexity.csv,
                      decay.csv, flips.csv, study.json
    report.md / report.html / plots/
    run.log
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from .. import __version__
from ..analysis.decay import flip_table
from ..analysis.summary import decay_summary
from ..attacks.score import attack_metrics
from ..io import atomic_write
from ..models.registry import resolve_device
from ..schema import ATTACK_PROBES, DOWNSTREAM, FLIPS, TRAINING, VALIDATION
from .config import RunConfig, Study
from .stages import ModelPool, plan, run_stage
from .store import ArtifactStore, Stage, walk

log = logging.getLogger(__name__)


@dataclass
class PlannedConfig:
    config: RunConfig
    stages: dict[tuple[str, object], Stage]


@dataclass
class StudyPlan:
    study: Study
    store: ArtifactStore
    configs: list[PlannedConfig]

    @property
    def stages(self) -> list[Stage]:
        """Every distinct stage, inputs first."""
        return walk(s for c in self.configs for s in c.stages.values())

    def pending(self) -> list[Stage]:
        """The stages to run, inputs first: those not done, and the packed (thin) stages whose
        outputs a stage to run reads (store.pack), so a packed store resumes like a full one."""
        stages = self.stages
        todo = {s.key for s in stages if not self.store.done(s)}
        for stage in reversed(stages):  # every reader comes before the stages it reads
            if stage.key in todo:
                todo.update(i.key for i in stage.inputs if self.store.is_thin(i))
        return [s for s in stages if s.key in todo]

    def to_dict(self) -> dict:
        return {
            "study": self.study.name,
            "store": str(self.store.root),
            "configs": [
                {
                    "config_id": c.config.config_id,
                    "config": c.config.to_dict(),
                    "stages": {
                        f"{k[0]}@{k[1]}" if k[1] is not None else k[0]: s.name
                        for k, s in c.stages.items()
                    },
                }
                for c in self.configs
            ],
        }


def make_plan(
    study: Study, store: str | Path | None = None, pool: ModelPool | None = None
) -> StudyPlan:
    pool = pool or ModelPool()
    store = ArtifactStore(Path(store) if store else Path(study.out) / "store")
    configs = []
    for cfg in study.configs:
        try:
            configs.append(PlannedConfig(cfg, plan(cfg, pool.get(cfg.model))))
        except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
            raise ValueError(f"configuration {cfg.config_id}: {e}") from e
    return StudyPlan(study, store, configs)


# --------------------------------------------------------------------------- executors


def execute_local(plan_: StudyPlan, pool: ModelPool | None = None) -> None:
    pool = pool or ModelPool()
    todo = plan_.pending()
    total = len(plan_.stages)
    log.info("%d stages, %d already done, %d to run", total, total - len(todo), len(todo))
    for i, stage in enumerate(todo, 1):
        log.info("[%d/%d] %s %s", i, len(todo), stage.kind, _describe(stage))
        run_stage(stage, plan_.store, pool, snapshot_every=plan_.study.snapshot_every)


def _describe(stage: Stage) -> str:
    s = stage.settings
    bits = [s.get("model", "")]
    for key in ("method", "state", "step", "edited"):
        if key in s:
            bits.append(f"{key}={s[key]}")
    if stage.kind == "finetune":
        bits.append(f"method={s['finetune']['method']}")
    return " ".join(map(str, bits)) + f" ({stage.key})"


def _ray_stage(
    stage_dict: dict, store_root: str, snapshot_every: int, threads: int, *_inputs_done
) -> str:
    """Body of one Ray task: the inputs' results are only awaited (their outputs are in the store)."""
    logging.getLogger("editdecay").setLevel(
        logging.INFO
    )  # so stage.log records the stage's progress
    torch.set_num_threads(threads)
    stage = Stage.from_dict(stage_dict)
    return str(run_stage(stage, ArtifactStore(store_root), snapshot_every=snapshot_every))


def execute_ray(
    plan_: StudyPlan, address: str | None, cpus_per_stage: float = 1.0, gpus_per_stage: float = 0.0
) -> None:
    """One Ray task per pending stage, chained by their inputs; the store must be on a shared file system.

    Ray hides the GPUs from a task that reserves none, so stages run on the CPU unless `gpus_per_stage`
    is above 0 (a fraction packs several stages onto one GPU)."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("the Ray executor needs ray: pip install 'editdecay[ray]'") from None
    env = {k: v for k, v in os.environ.items() if k.startswith("EDITDECAY_")}
    ray.init(
        address=address,
        runtime_env={"env_vars": env} if env else None,
        log_to_driver=True,
        ignore_reinit_error=True,
    )
    try:
        remote = ray.remote(num_cpus=cpus_per_stage, num_gpus=gpus_per_stage, max_retries=1)(
            _ray_stage
        )
        refs: dict[str, object] = {}
        root = str(plan_.store.root.resolve())
        pending = {s.key for s in plan_.pending()}
        for stage in plan_.stages:
            if stage.key not in pending:
                continue
            deps = [refs[i.key] for i in stage.inputs if i.key in refs]
            refs[stage.key] = remote.remote(
                stage.to_dict(),
                root,
                plan_.study.snapshot_every,
                max(1, int(cpus_per_stage)),
                *deps,
            )
        log.info("submitted %d stages to Ray at %s", len(refs), address or "a new local instance")
        ray.get(list(refs.values()))
    finally:
        ray.shutdown()


# --------------------------------------------------------------------------- gathering


STATE_ORDER = {"M": 0, "M_ed": 1, "M_ft": 2, "M_ed_ft": 3}


def gather(plan_: StudyPlan, results: Path) -> dict[str, pd.DataFrame]:
    """One set of tables for the whole study, every row labelled with its configuration."""
    store = plan_.store
    edits, downstream, training, ppl, configs, attack_probes = [], [], [], [], [], []
    validation: list[pd.DataFrame] = []
    for pc in plan_.configs:
        cols = pc.config.columns()
        configs.append({**cols, "config": json.dumps(pc.config.to_dict(), sort_keys=True)})
        for (state, _), stage in pc.stages.items():
            if state not in STATE_ORDER or not store.done(stage):
                continue
            d = store.path(stage)
            metrics = json.loads((d / "metrics.json").read_text())
            step = metrics["step"]
            t = pd.read_parquet(d / "edits.parquet")
            edits.append(t.assign(**cols, state=state, step=step, stage=stage.key))
            if (d / "probes.parquet").exists():
                probes = pd.read_parquet(d / "probes.parquet")
                attack_probes.append(
                    probes.assign(config_id=cols["config_id"], state=state, step=step)
                )
            if (d / "downstream.csv").exists():
                ds = pd.read_csv(d / "downstream.csv")
                ds = ds[ds["task"] != "average"]
                downstream.append(ds.assign(config_id=cols["config_id"], state=state, step=step))
            ppl.append(
                {
                    "config_id": cols["config_id"],
                    "state": state,
                    "step": step,
                    "heldout_ppl": metrics.get("heldout_ppl"),
                }
            )
        for state, key in (("M_ft", ("finetune:M", None)), ("M_ed_ft", ("finetune:M_ed", None))):
            stage = pc.stages.get(key)
            if stage is not None and store.done(stage):
                loss = pd.read_csv(store.path(stage) / "losses.csv")
                training.append(loss.assign(config_id=cols["config_id"], state=state))
                held_out = store.path(stage) / "validation.csv"
                if held_out.exists():
                    val = pd.read_csv(held_out)
                    validation.append(val.assign(config_id=cols["config_id"], state=state))
    if not edits:
        raise RuntimeError("no evaluated model states to gather yet")
    out = {
        "configs": pd.DataFrame(configs),
        "edits": _ordered(pd.concat(edits, ignore_index=True)),
        "downstream": pd.concat(downstream, ignore_index=True)
        if downstream
        else pd.DataFrame(columns=list(DOWNSTREAM.names)),
        "training": pd.concat(training, ignore_index=True)
        if training
        else pd.DataFrame(columns=list(TRAINING.names)),
        "perplexity": pd.DataFrame(ppl),
    }
    out["decay"] = decay_summary(
        out["edits"], out["downstream"] if len(out["downstream"]) else None
    )
    out["flips"] = _flips(out["edits"])
    if validation:
        out["validation"] = VALIDATION.normalise(pd.concat(validation, ignore_index=True))[
            list(VALIDATION.names)
        ]
    if attack_probes:
        out["attack_probes"] = ATTACK_PROBES.normalise(pd.concat(attack_probes, ignore_index=True))[
            list(ATTACK_PROBES.names)
        ]
        out["attacks"] = attack_metrics(out["attack_probes"])
    results.mkdir(parents=True, exist_ok=True)
    for name, table in out.items():
        atomic_write(results / f"{name}.csv", lambda tmp, t=table: t.to_csv(tmp, index=False))
    atomic_write(results / "edits.parquet", lambda tmp: out["edits"].to_parquet(tmp, index=False))
    return out


def _ordered(edits: pd.DataFrame) -> pd.DataFrame:
    edits = edits.assign(_o=edits["state"].map(STATE_ORDER))
    edits = edits.sort_values(["config_id", "_o", "step", "case_id"], kind="stable").drop(
        columns="_o"
    )
    first = ["config_id", "state", "step", "case_id"]
    return edits[first + [c for c in edits.columns if c not in first]].reset_index(drop=True)


def _flips(edits: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for cid, t in edits.groupby("config_id", sort=False):
        before = t[t["state"] == "M_ed"]
        after_all = t[t["state"] == "M_ed_ft"]
        for step in sorted(after_all["step"].unique()):
            ft = flip_table(before, after_all[after_all["step"] == step])
            rows.append(ft.assign(config_id=cid, step=int(step)))
    if not rows:
        return pd.DataFrame(columns=list(FLIPS.names))
    flips = pd.concat(rows, ignore_index=True)
    first = ["config_id", "step", "case_id"]
    return flips[first + [c for c in flips.columns if c not in first]]


# --------------------------------------------------------------------------- the whole run


@dataclass
class StudyRun:
    plan: StudyPlan
    run_dir: Path
    tables: dict[str, pd.DataFrame]
    report: object | None
    seconds: float


def run_study(
    study: Study,
    executor: str = "local",
    address: str | None = None,
    store: str | Path | None = None,
    report: bool = True,
    command: str | None = None,
    cpus_per_stage: float = 1.0,
    execute: bool = True,
    gpus_per_stage: float = 0.0,
) -> StudyRun:
    """Plan, run every pending stage, gather the tables and write the report.

    With `execute=False` nothing is run: the tables and report hold the stages finished so far (a long
    study can be read while it runs or between interruptions); `results/study.json` counts them.
    """
    run_dir = Path(study.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("editdecay").addHandler(handler)
    t0 = time.perf_counter()
    try:
        pool = ModelPool()
        plan_ = make_plan(study, store, pool)
        atomic_write(
            run_dir / "plan.json", lambda tmp: tmp.write_text(json.dumps(plan_.to_dict(), indent=1))
        )
        log.info(
            "study %s: %d configurations, %d distinct stages",
            study.name,
            len(plan_.configs),
            len(plan_.stages),
        )
        if executor not in ("local", "ray"):
            raise ValueError(f"unknown executor {executor!r}; use local or ray")
        if not execute:
            log.info(
                "gathering only: %d of %d stages finished",
                len(plan_.stages) - len(plan_.pending()),
                len(plan_.stages),
            )
        elif executor == "local":
            execute_local(plan_, pool)
        else:
            execute_ray(plan_, address, cpus_per_stage, gpus_per_stage)
        tables = gather(plan_, run_dir / "results")
        _write_study_json(
            run_dir / "results" / "study.json",
            study,
            command,
            finished=len(plan_.stages) - len(plan_.pending()),
            total=len(plan_.stages),
            environments=stage_environments(plan_),
        )
        if study.analyse is not None and execute:
            analyse_finished_run(run_dir, plan_, study.analyse)
        rep = None
        if report:
            from ..report import write_report

            rep = write_report(run_dir, title=study.name)
        return StudyRun(plan_, run_dir, tables, rep, time.perf_counter() - t0)
    finally:
        logging.getLogger("editdecay").removeHandler(handler)
        handler.close()


def analyse_finished_run(run_dir: Path, plan_: StudyPlan, settings) -> None:
    """The study's [analyse] step: the activation tables of every configuration whose states are
    all evaluated. A failure is logged and leaves the gathered tables and the report to be written."""
    from .analyse import analyse_run

    if plan_.pending():
        log.warning("analysis skipped: %d stages are not finished", len(plan_.pending()))
        return
    try:
        analyse_run(
            run_dir,
            store=plan_.store.root,
            max_edits=settings.max_edits,
            ft_prompts=settings.ft_prompts,
            umap=settings.umap,
            known_facts=settings.known_facts,
        )
    except (
        Exception
    ):  # an add-on to a finished run: the tables are gathered, the report still comes
        log.exception("analysis of %s failed (rerun: editdecay analyse %s)", run_dir, run_dir)


def stage_environments(plan_: StudyPlan) -> dict[str, int]:
    """How many finished stages ran where: "device, torch version, editdecay version" → count, from each
    stage's record (a store can be filled by several machines; records older than the device field say so)."""
    counts: dict[str, int] = {}
    for stage in plan_.stages:
        if plan_.store.done(stage):
            r = plan_.store.record(stage)
            key = (
                f"{r.get('device', 'device not recorded')}, torch {r.get('torch', '?')}, "
                f"editdecay {r.get('editdecay_version', '?')}"
            )
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _write_study_json(
    path: Path,
    study: Study,
    command: str | None,
    finished: int,
    total: int,
    environments: dict[str, int] | None = None,
) -> None:
    import peft
    import transformers

    seeds = sorted({c.seed for c in study.configs})
    info = {
        "name": study.name,
        "command": command or " ".join(["editdecay", *sys.argv[1:]]),
        "versions": {
            "editdecay": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "python": platform.python_version(),
        },
        "device": str(resolve_device()),  # of this process; each stage's record names its own
        "seeds": {"fine-tuning": seeds, "edit": sorted({c.edit_seed for c in study.configs})},
        "study_file": study.source,
        "n_configs": len(study.configs),
        "stages": {"finished": finished, "total": total},
        "stage_environments": environments or {},
    }
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(info, indent=1, default=str)))
