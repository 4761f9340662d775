"""`editdecay forensics`: find an edit in a suspect model by comparing its weights with its base."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .edit import VERBOSE_HELP
from .errors import _user_errors, console, setup_logging


def forensics(
    base: str = typer.Option(
        ..., help="the base model: registered name, HF directory or cached id"
    ),
    suspect: str = typer.Option(..., help="the suspect model (HF directory or name)"),
    out: Path = typer.Option(Path("runs/forensics"), help="output directory"),
    candidates: Path | None = typer.Option(
        None, help="candidate subjects: an edit request file (JSON/JSONL), ranked by response"
    ),
    outlier_z: float = typer.Option(6.0, help="robust z above which a matrix counts as edited"),
    undo: str | None = typer.Option(
        None,
        help="also write an undo delta (DIR/undo/): full, rank (top singular components) or keys "
        "(the top-ranked candidates' key span)",
    ),
    undo_energy: float = typer.Option(0.9, help="rank undo: share of ‖ΔW‖² removed"),
    requests: Path | None = typer.Option(
        None,
        help="with --undo: edit requests whose reversal is measured (DIR/undo.json); "
        "default: --candidates",
    ),
    ppl_tokens: int = typer.Option(4096, help="with --undo: perplexity tokens (0: skip)"),
    ds_per_task: int = typer.Option(
        0, help="with --undo: DS items per commonsense task before and after, paired (0: skip)"
    ),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Per weight matrix: ‖ΔW‖, spectrum, effective rank; the layers judged edited, an estimate of how
    many facts were written, and the candidate subjects ranked; writes report.json and
    differences.csv."""
    setup_logging(verbose)
    from ..forensics.undo import UndoConfig
    from ..forensics.weights import ForensicsConfig, locate_edits
    from ..models.registry import load_model
    from ..report.defence_pages import write_defence_page

    with _user_errors():
        requests_list = requests_of(candidates) if candidates is not None else []
        if ds_per_task < 0:
            raise ValueError(f"--ds-per-task: expected a count ≥ 0, got {ds_per_task}")
        if undo is not None:
            UndoConfig(mode=undo, energy=undo_energy)  # refused before any model loads
        lm = load_model(base)
        other = load_model(suspect)
        report, table = locate_edits(
            lm, other.model, requests_list, ForensicsConfig(outlier_z=outlier_z)
        )
        report.update(base=base, suspect=suspect)
        if requests and report["subjects"]:
            report["recovery"] = recovery(report["subjects"], requests_of(requests))
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "differences.csv", index=False)
        (out / "report.json").write_text(json.dumps(report, indent=1))
        if undo is not None:
            measured = requests_of(requests) if requests else requests_list
            cfg = UndoConfig(mode=undo, energy=undo_energy)
            _undo(lm, other, report, requests_list, measured, out, cfg, ppl_tokens, ds_per_task)
        write_defence_page(out)
    console.print(
        f"edited layers {report['edited_layers'] or 'none'}; about {report['n_facts_estimate']} facts; "
        f"{len(report['edited_modules'])} matrices; report in {out / 'report.json'}"
    )


def requests_of(path: Path) -> list:
    from ..data.loaders import load_requests

    return list(load_requests(path).requests)


def _undo(
    base,
    suspect,
    report: dict,
    candidates: list,
    requests: list,
    out: Path,
    cfg,
    ppl_tokens: int,
    ds_per_task: int = 0,
) -> None:
    """Write DIR/undo/ (the undo delta) and, with requests, DIR/undo.json and undo_edits.csv; the
    keys undo removes the response to the `n_facts_estimate` top-ranked candidates."""
    from ..forensics.undo import undo_delta, undo_effect

    ranked = {s["case_id"] for s in report["subjects"][: max(1, report["n_facts_estimate"])]}
    chosen = [r for r in candidates if r.case_id in ranked] if cfg.mode == "keys" else []
    delta = undo_delta(base.model, suspect, report["edited_modules"], cfg, chosen)
    delta.save(out / "undo")
    if not requests:
        console.print(f"undo delta written to {out / 'undo'} (no requests: not measured)")
        return
    summary, table = undo_effect(suspect, delta, requests, ppl_tokens, ds_per_task)
    table.to_csv(out / "undo_edits.csv", index=False)
    (out / "undo.json").write_text(json.dumps(summary, indent=1, default=float))
    locality = "ns" if summary["ns_before"] is not None else "neighbour_acc"
    console.print(
        f"undo ({cfg.mode}): {summary['n_reverted']} of {summary['n_successful_before']} edits "
        f"reverted ({summary['reverted']:.1f} %); {locality} {_num(summary[locality + '_before'])} "
        f"→ {_num(summary[locality + '_after'])}; perplexity "
        f"{_num(summary['perplexity_before'], 2)} → {_num(summary['perplexity_after'], 2)}"
    )
    for mode, ds in summary.get("ds", {}).items():
        if mode != "n_items":
            console.print(
                f"DS ({mode}, {summary['ds']['n_items']} items) {_num(ds['before'])} → "
                f"{_num(ds['after'])}; right only before {ds['only_right_before']}, only after "
                f"{ds['only_right_after']} (McNemar p {ds['mcnemar_p']:.2f})"
            )


def _num(value, digits: int = 1) -> str:
    return "—" if value is None or value != value else f"{value:.{digits}f}"


def detect(
    model: str = typer.Option(..., help="the model under test (no base model needed)"),
    requests: Path = typer.Option(..., help="facts to score (JSON/JSONL requests), e.g. its edits"),
    detector: Path = typer.Option(..., help="the detector directory (written with --train)"),
    train: list[Path] = typer.Option(
        [], help="train first on these edit output directories (delta/, requests.jsonl); repeatable"
    ),
    base: str | None = typer.Option(
        None, help="base model of the --train deltas (default: the one each delta records)"
    ),
    negatives: str = typer.Option(
        "counterfact", help="unedited facts: a dataset name or request file"
    ),
    negatives_offset: int = typer.Option(1000, help="valid records of --negatives skipped first"),
    n_negatives: int = typer.Option(50, help="unedited facts per model"),
    test_negatives_offset: int | None = typer.Option(
        None,
        help="where the unedited facts scored on --model start (default: --negatives-offset; set "
        "it apart from the training ones when training in the same call)",
    ),
    out: Path | None = typer.Option(None, help="write scores.csv and detect.json here"),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Flag edited facts from hidden states alone: optionally train the detector on edits made here
    (each edit applied to its base model, against unedited facts), then score --requests and the
    unedited facts on --model and report the AUROC."""
    setup_logging(verbose)
    import pandas as pd
    import torch

    from ..finetuning.job import load_edits
    from ..forensics.detector import EditDetector, auroc, fact_features
    from ..models.registry import load_model
    from ..report.defence_pages import write_defence_page

    with _user_errors():
        facts = requests_of(requests)
        unedited = _unedited(negatives, n_negatives, negatives_offset)
        test_unedited = (
            unedited
            if test_negatives_offset is None
            else _unedited(negatives, n_negatives, test_negatives_offset)
        )
        if train:
            pos, neg = [], []
            for directory in train:
                delta, edited = load_edits(directory)
                name = base or delta.info.get("model")
                if not name:
                    raise ValueError(
                        f"{directory}: the delta does not record its base model; pass --base"
                    )
                lm = load_model(name)
                delta.apply(lm.model)
                pos.append(fact_features(lm, edited))
                neg.append(fact_features(lm, _disjoint(unedited, edited)))
            fitted = EditDetector.fit(torch.cat(pos), torch.cat(neg))
            fitted.info["trained_on"] = [str(d) for d in train]
            fitted.save(detector)
        det = EditDetector.load(detector)
        lm = load_model(model)
        scores_pos = det.score(fact_features(lm, facts, det.config))
        others = _disjoint(test_unedited, facts)
        scores_neg = det.score(fact_features(lm, others, det.config))
        area = auroc(scores_pos.tolist(), scores_neg.tolist())
        summary = {"model": model, "requests": str(requests), "auroc": area,
                   "n_facts": len(facts), "n_unedited": len(others), "detector": str(detector)}  # fmt: skip
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            table = pd.DataFrame(
                {
                    "case_id": [r.case_id for r in facts] + [r.case_id for r in others],
                    "edited": [True] * len(facts) + [False] * len(others),
                    "score": scores_pos.tolist() + scores_neg.tolist(),
                }
            )
            table.to_csv(out / "scores.csv", index=False)
            (out / "detect.json").write_text(json.dumps(summary, indent=1))
            write_defence_page(out)
    console.print(
        f"AUROC {area:.3f}: {len(facts)} facts of --requests against {len(others)} unedited"
    )


def _disjoint(candidates: list, edited: list) -> list:
    """The candidates whose subject is none of the edited ones."""
    subjects = {r.subject for r in edited}
    return [r for r in candidates if r.subject not in subjects]


def recovery(ranked: list[dict], edited: list) -> dict:
    """How well the ranking finds the known edits among the candidates: whether the top one is
    edited, the share of edited ones in the top 10, and in the top n (n = the edits ranked)."""
    ids = {r.case_id for r in edited}
    flags = [s["case_id"] in ids for s in ranked]
    n = sum(flags)
    return {
        "n_candidates": len(ranked),
        "n_edited_candidates": n,
        "top1_edited": bool(flags[0]) if flags else False,
        "precision_at_10": sum(flags[:10]) / min(10, len(flags)) if flags else 0.0,
        "recall_at_n": sum(flags[:n]) / n if n else float("nan"),
    }


def _unedited(source: str, n: int, offset: int) -> list:
    from ..data.loaders import load_requests

    facts = list(load_requests(source, n=n, offset=offset).requests)
    if not facts:
        raise ValueError(
            f"--negatives {source}: no records from offset {offset} (the set is smaller); "
            "lower --negatives-offset"
        )
    return facts
