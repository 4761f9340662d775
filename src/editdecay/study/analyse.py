"""The activation analysis of a finished study run (PAPER §2.7; claims 12 and 13 of §4).

For each fine-tuned configuration, the four model states M, M_ed, M_ft, M_ed_ft are rebuilt from the
run's store (`runners.model_state`, the same code the evaluate stages ran), their residual streams
read on the configuration's edit prompts (subject's last token and prompt's last token) and on a
sample of its fine-tuning prompts (prompt's last token), and turned into the paper's magnitudes
(Eqn 2) and displacement cosines (Eqn 6) by `evaluation.activations.displacement_geometry`. The
targets' token frequencies in WikiText and in the fine-tuning data go beside each edit's flip
category (PAPER Table 6). Writes RUN_DIR/results/activations.csv, activations_per_edit.csv and
target_frequency.csv (schema: `schema.ACTIVATIONS`, `ACTIVATIONS_PER_EDIT`, `TARGET_FREQUENCY`).

Hidden states are cached by (stage key, prompts): a base state M or M_ft shared by several
configurations (e.g. MEMIT and AlphaEdit on the same requests) is loaded and read once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.frequency import frequency_by_category, token_frequencies
from ..data.corpus import wikitext_articles
from ..data.instructions import alpaca_prompt, training_text
from ..data.loaders import load_requests
from ..data.requests import EditRequest
from ..evaluation.activations import (
    POSITIONS,
    displacement_geometry,
    hidden_states,
    overlap_score,
    umap_projection,
)
from ..evaluation.scorer import Scorer
from ..io import atomic_write
from ..progress import progress
from ..schema import (
    ACTIVATIONS,
    ACTIVATIONS_PER_EDIT,
    FLIPS,
    KNOWN_FACTS,
    STATES,
    TARGET_FREQUENCY,
    UMAP,
)
from .runners import FINAL, finetune_examples, model_state
from .stages import ModelPool
from .store import ArtifactStore, Stage

log = logging.getLogger(__name__)

EDIT_PROMPTS, FT_PROMPTS = "edit", "finetune"
FT_POSITIONS = ("prompt_last",)  # fine-tuning prompts name no subject


@dataclass
class ConfigStages:
    """The stages of one fine-tuned configuration that the analysis reads."""

    config_id: str
    states: dict[str, Stage]  # state → its final evaluate stage (what model_state builds)
    edit: Stage
    finetune: Stage  # fine-tuning of M (its data are M_ed's too)


@dataclass
class PromptSet:
    name: str
    prompts: list
    positions: tuple[str, ...]

    @property
    def digest(self) -> str:
        texts = [p.text if isinstance(p, EditRequest) else str(p) for p in self.prompts]
        return hashlib.sha256(json.dumps([texts, self.positions]).encode()).hexdigest()[:16]


def analyse_run(
    run_dir: str | Path,
    *,
    configs: Sequence[str] | None = None,
    max_edits: int = 100,
    ft_prompts: int = 50,
    store: str | Path | None = None,
    umap: bool = True,
    known_facts: int = 200,
) -> dict[str, pd.DataFrame]:
    """Compute and write the activation and target-frequency tables of a finished study run.

    configs: config_ids to analyse (default: every fine-tuned configuration whose four final
        states are evaluated); max_edits: the first that many requests per configuration;
        ft_prompts: fine-tuning prompts sampled per configuration; store: the artifact store
        (default: the one plan.json names, else RUN_DIR/store); umap: also project the last
        edited layer with UMAP into umap.csv, when umap-learn is installed (else logged, skipped);
        known_facts: the last that many records of each configuration's edit set that it does not
        edit, scored on the four states into known_facts.csv (the own-knowledge baseline; 0: none).
    Returns {"activations", "activations_per_edit", "target_frequency"[, "umap", "known_facts"]}
    as written.
    """
    run_dir = Path(run_dir)
    plan = json.loads((run_dir / "plan.json").read_text())
    store_ = ArtifactStore(resolve_store(run_dir, plan, store))
    chosen = select_configs(plan, store_, configs)
    flips = final_flips(run_dir / "results" / "flips.csv")
    pool, cache, counts, records = ModelPool(), {}, {}, {}
    tables: dict[str, list[pd.DataFrame]] = {name: [] for name in OUTPUTS}
    project = umap and umap_available()
    for cfg in progress(chosen, desc="analysing configurations"):
        requests = edit_requests(store_, cfg.edit, max_edits)
        sets = prompt_sets(requests, cfg.finetune, ft_prompts)
        facts = unedited_facts(store_, cfg.edit, known_facts, records) if known_facts > 0 else []
        hidden, scores = {}, {}
        for state, stage in cfg.states.items():
            hidden[state], scores[state] = read_state(stage, sets, facts, store_, pool, cache)
        if facts:
            tables["known_facts"].append(known_fact_rows(cfg.config_id, facts, scores))
        layers = store_.record(cfg.edit).get("layers", [])
        categories = flips.get(cfg.config_id, {})
        tables["activations"].append(geometry_rows(cfg.config_id, hidden, sets, layers))
        tables["activations_per_edit"].append(
            per_edit_rows(cfg.config_id, hidden, requests, categories)
        )
        tokenizer = pool.get(cfg.edit.settings["model"]).tokenizer
        corpora = corpus_counts_cached(cfg, tokenizer, counts)
        tables["target_frequency"].append(
            frequency_rows(cfg.config_id, requests, categories, corpora, tokenizer)
        )
        if project:
            tables["umap"].append(umap_rows(cfg.config_id, hidden, requests, max(layers)))
    if not project:
        (run_dir / "results" / UMAP.file).unlink(missing_ok=True)  # never a stale projection
    return write_tables(run_dir / "results", {k: v for k, v in tables.items() if v})


OUTPUTS = {
    "activations": ACTIVATIONS,
    "activations_per_edit": ACTIVATIONS_PER_EDIT,
    "target_frequency": TARGET_FREQUENCY,
    "umap": UMAP,
    "known_facts": KNOWN_FACTS,
}
UMAP_MISSING = "UMAP not installed: pip install -e '.[analysis]'"


# --------------------------------------------------------------------------- locating the stages


def resolve_store(run_dir: Path, plan: dict, store: str | Path | None) -> Path:
    """The store given, else plan.json's (as recorded, or relative to the run), else RUN_DIR/store."""
    if store is not None:
        return Path(store)
    recorded = Path(plan.get("store", ""))
    for candidate in (recorded, run_dir / recorded, run_dir / "store"):
        if str(candidate) and candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no artifact store found for {run_dir} (plan.json names {recorded})")


def load_stage(store: ArtifactStore, name: str) -> Stage:
    """A finished stage rebuilt from its record (stage.json), inputs included."""
    kind, key = name.split("/", 1)
    record = json.loads((store.root / kind / key / "stage.json").read_text())
    inputs = tuple(load_stage(store, f"{k}/{v}") for k, v in record.get("inputs", {}).items())
    return Stage(kind, record["settings"], inputs, key)


def select_configs(
    plan: dict, store: ArtifactStore, wanted: Sequence[str] | None
) -> list[ConfigStages]:
    """The fine-tuned configurations of plan.json (or those named) whose final states are done."""
    by_id = {c["config_id"]: c for c in plan["configs"]}
    unknown = sorted(set(wanted or ()) - set(by_id))
    if unknown:
        raise ValueError(f"unknown configurations {unknown}; the run has {sorted(by_id)}")
    chosen = []
    for config_id in wanted or list(by_id):
        stages = by_id[config_id]["stages"]
        names = {
            state: stages.get(f"{state}@{0 if state in ('M', 'M_ed') else FINAL}")
            for state in STATES
        }
        if "finetune:M" not in stages or not all(names.values()):
            if wanted:
                raise ValueError(f"configuration {config_id} is not fine-tuned")
            continue
        if not all(_done(store, n) for n in names.values()):
            log.warning("configuration %s: not every final state is evaluated; skipped", config_id)
            continue
        states = {state: load_stage(store, n) for state, n in names.items()}
        edit = states["M_ed"].input("edit")
        chosen.append(ConfigStages(config_id, states, edit, states["M_ft"].input("finetune")))
    if not chosen:
        raise RuntimeError("no fine-tuned configuration with all four final states evaluated")
    return chosen


def _done(store: ArtifactStore, name: str) -> bool:
    return (store.root / name / "stage.json").is_file()


# --------------------------------------------------------------------------- prompts and states


def edit_requests(store: ArtifactStore, edit: Stage, max_edits: int | None) -> list[EditRequest]:
    """The edit stage's own requests (requests.jsonl), the first `max_edits` (None: all)."""
    path = store.verified(edit, "requests.jsonl") / "requests.jsonl"
    return list(load_requests(path, n=max_edits).requests)


def prompt_sets(requests: list[EditRequest], finetune: Stage, n_ft: int) -> list[PromptSet]:
    """The edit prompts (both positions) and a seeded sample of the fine-tuning prompts."""
    sets = [PromptSet(EDIT_PROMPTS, list(requests), POSITIONS)]
    examples = finetune_examples(finetune.settings["data"])[0]
    if examples and n_ft > 0:
        rng = np.random.default_rng(finetune.settings["data"]["seed"])
        picked = sorted(rng.choice(len(examples), size=min(n_ft, len(examples)), replace=False))
        sets.append(
            PromptSet(FT_PROMPTS, [alpaca_prompt(examples[i]) for i in picked], FT_POSITIONS)
        )
    return sets


def read_state(
    stage: Stage,
    sets: list[PromptSet],
    facts: list[EditRequest],
    store: ArtifactStore,
    pool: ModelPool,
    cache: dict,
) -> tuple[dict[str, dict], list]:
    """({prompt set: {position: hidden states}}, the facts' TargetScores) of one model state, each
    state loaded at most once for everything asked of it."""
    facts_key = (stage.key, "facts", _facts_digest(facts))
    missing = [s for s in sets if (stage.key, s.digest) not in cache]
    if missing or (facts and facts_key not in cache):
        lm, _, cleanup = model_state(stage, store, pool)
        try:
            for s in missing:
                cache[(stage.key, s.digest)] = hidden_states(lm, s.prompts, s.positions)
            if facts and facts_key not in cache:
                scorer = Scorer(lm.model, lm.tokenizer, lm.adapter)
                cache[facts_key] = scorer.score([(f.text, f.target_true) for f in facts])
        finally:
            cleanup()
    return {s.name: cache[(stage.key, s.digest)] for s in sets}, cache.get(facts_key, [])


def _facts_digest(facts: list[EditRequest]) -> str:
    pairs = [[f.text, f.target_true] for f in facts]
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]


def unedited_facts(store: ArtifactStore, edit: Stage, k: int, cache: dict) -> list[EditRequest]:
    """The own-knowledge candidates: the last `k` records of the edit stage's data set that the
    stage does not edit and that name a true object (zsRE: answers[0]), in the set's order.

    The same records for every configuration on that set (as long as none edits them), so the
    retention of M's own facts is compared across configurations on one sample."""
    data = edit.settings["requests"]["data"]
    if data not in cache:
        cache[data] = [r for r in load_requests(data).requests if r.target_true]
    edited = {r.case_id for r in edit_requests(store, edit, None)}
    free = [r for r in cache[data] if r.case_id not in edited]
    if len(free) < k:
        log.warning("%s: only %d unedited records for the own-knowledge baseline", data, len(free))
    return free[-k:] if k else []


# --------------------------------------------------------------------------- the tables


def _four(hidden: dict, prompt_set: str, position: str) -> list:
    return [hidden[state][prompt_set][position] for state in STATES]


def geometry_rows(config_id: str, hidden: dict, sets: list[PromptSet], layers) -> pd.DataFrame:
    """activations.csv rows: the layer means of Eqns 2 and 6 per prompt set and position."""
    frames = [
        displacement_geometry(*_four(hidden, s.name, pos)).assign(
            config_id=config_id, prompts=s.name, position=pos
        )
        for s in sets
        for pos in s.positions
    ]
    return pd.concat(frames, ignore_index=True).assign(
        edit_layers=" ".join(str(layer) for layer in layers)
    )


def per_edit_rows(
    config_id: str, hidden: dict, requests: list[EditRequest], categories: dict[str, str]
) -> pd.DataFrame:
    """activations_per_edit.csv rows: per edit and layer at the subject's last token."""
    table = displacement_geometry(*_four(hidden, EDIT_PROMPTS, "subject_last"), per_prompt=True)
    case_ids = [r.case_id for r in requests]
    table["case_id"] = table["prompt"].map(dict(enumerate(case_ids)))
    table["category"] = table["case_id"].map(categories).fillna("")
    return table.drop(columns="prompt").assign(config_id=config_id)


def known_fact_rows(config_id: str, facts: list[EditRequest], scores: dict) -> pd.DataFrame:
    """known_facts.csv rows: each unedited fact scored on the four states, flagged by whether M
    knows it (the facts whose retention the own-knowledge baseline reads)."""
    known = [all(s.correct) for s in scores["M"]]
    frames = [
        pd.DataFrame(
            {
                "case_id": [f.case_id for f in facts],
                "target_true": [f.target_true for f in facts],
                "correct": [all(s.correct) for s in scores[state]],
                "token_accuracy": [s.accuracy for s in scores[state]],
                "known_by_M": known,
            }
        ).assign(config_id=config_id, state=state)
        for state in STATES
    ]
    return pd.concat(frames, ignore_index=True)


def corpus_counts_cached(cfg: ConfigStages, tokenizer, cache: dict) -> dict[str, Counter]:
    """Token counts of WikiText (per model) and of the fine-tuning data as trained on (per data)."""
    model = cfg.edit.settings["model"]
    data = cfg.finetune.settings["data"]
    data_key = (model, json.dumps(data, sort_keys=True))
    if model not in cache:
        cache[model] = token_frequencies(tokenizer, (a.text for a in wikitext_articles()))
    if data_key not in cache:
        examples = finetune_examples(data)[0]
        cache[data_key] = token_frequencies(tokenizer, (training_text(ex) for ex in examples))
    return {"wikitext": cache[model], "finetune": cache[data_key]}


def frequency_rows(
    config_id: str,
    requests: list[EditRequest],
    categories: dict[str, str],
    corpora: dict[str, Counter],
    tokenizer,
) -> pd.DataFrame:
    """target_frequency.csv rows: each edit's target frequencies and flip category."""
    edits = pd.DataFrame(
        {
            "case_id": [r.case_id for r in requests],
            "target_new": [r.target_new for r in requests],
        }
    )
    edits["category"] = edits["case_id"].map(categories).fillna("")
    return frequency_by_category(edits, corpora, tokenizer).assign(config_id=config_id)


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        log.warning("%s; umap.csv is not written", UMAP_MISSING)
        return False
    return True


def umap_rows(
    config_id: str, hidden: dict, requests: list[EditRequest], layer: int
) -> pd.DataFrame:
    """umap.csv rows: the four states' subject-position activations at `layer`, one UMAP fit
    (PAPER §2.7: 3-D, n_neighbors 20, min_dist 0.1; fewer neighbours when there are fewer points)."""
    states = {s: hidden[s][EDIT_PROMPTS]["subject_last"][:, layer].numpy() for s in STATES}
    n_points = sum(len(v) for v in states.values())
    embedding = umap_projection(states, n_neighbors=max(2, min(20, n_points - 1)))
    overlap = overlap_score(embedding)
    frames = [
        pd.DataFrame(points[:, :3], columns=["x", "y", "z"]).assign(
            state=state, case_id=[r.case_id for r in requests]
        )
        for state, points in embedding.items()
    ]
    return pd.concat(frames, ignore_index=True).assign(
        config_id=config_id,
        layer=layer,
        silhouette=overlap.silhouette,
        ed_ft_nearer_ft=overlap.probe_nearer_share,
    )


def final_flips(path: Path) -> dict[str, dict[str, str]]:
    """{config_id: {case_id: category}} at each configuration's last fine-tuning step (flips.csv)."""
    if not path.is_file():
        log.warning("no %s: the edits' categories are left empty", path)
        return {}
    flips = FLIPS.normalise(pd.read_csv(path))
    last = flips.groupby("config_id")["step"].transform("max")
    final = flips[flips["step"] == last]
    return {cid: dict(zip(t["case_id"], t["category"])) for cid, t in final.groupby("config_id")}


def write_tables(results: Path, parts: dict[str, list[pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    results.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, frames in parts.items():
        schema = OUTPUTS[name]
        table = schema.normalise(pd.concat(frames, ignore_index=True))[list(schema.names)]
        atomic_write(results / schema.file, lambda tmp, t=table: t.to_csv(tmp, index=False))
        log.info("wrote %s (%d rows)", results / schema.file, len(table))
        out[name] = table
    return out
