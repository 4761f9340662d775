"""`editdecay attack`, `export` and `evaluate`: plant a malicious edit, publish the edited model as an
ordinary Hugging Face directory, and score any model against the attack's probes."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ..config_types import parse_text
from .edit import VERBOSE_HELP
from .errors import _user_errors, console, setup_logging


def _parse_sets(cls, pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = parse_text(cls, key.strip(), text.strip())
    return out


def _metrics_table(title: str, metrics: dict[str, dict]) -> Table:
    t = Table(title=title)
    for column in ("metric", *metrics):
        t.add_column(column)
    names = dict.fromkeys(m for state in metrics.values() for m in state)
    for name in names:
        cells = []
        for state in metrics.values():
            m = state.get(name)
            cells.append(f"{m['value']:.1f} ± {2 * m['se']:.1f} (n={m['n']})" if m else "—")
        t.add_row(name, *cells)
    return t


def attack(
    kind: str = typer.Option(
        "backdoor", help="backdoor (fact backdoor), task-backdoor (BoolQ), misinformation or bias"
    ),
    model: str = typer.Option("smollm2-135m", help="registered model, HF directory or cached id"),
    method: str = typer.Option("memit", help="memit, alphaedit or rome"),
    trigger: str | None = typer.Option(None, help="the trigger token or phrase (backdoor)"),
    n: int | None = typer.Option(None, "--n", help="poisoned prompts edited (backdoor: 15)"),
    seed: int | None = typer.Option(None, help="seed of the attack set's construction"),
    set_: list[str] = typer.Option(
        [], "--set", help="a setting of the kind, key=value (e.g. target=Hungarian, duplex=false)"
    ),
    edit_set: list[str] = typer.Option(
        [],
        "--edit-set",
        help="an editor setting, key=value (e.g. targets.steps=40, layers=[3,4,5])",
    ),
    layers: str | None = typer.Option(None, help="edit layers, '4,5,6,7,8' or '4-8'"),
    out: Path = typer.Option(Path("runs/attack"), help="output directory"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a finished --out"),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Plant an attack with an editor; write delta/, probes.jsonl, scores.csv and summary.json."""
    setup_logging(verbose)
    from ..attacks.run import BUILDERS, AttackJob, run_attack

    with _user_errors():
        if kind not in BUILDERS:
            raise ValueError(f"unknown attack kind {kind!r}; use one of {', '.join(BUILDERS)}")
        cls = BUILDERS[kind][0]
        settings = _parse_sets(cls, set_)
        for name, value in (("trigger", trigger), ("n_edit", n), ("seed", seed)):
            if value is not None:
                settings[name] = value
        from ..editing.config import config_class
        from .edit import _overrides

        edit = _overrides(config_class(method), None, edit_set, layers, None, None)
        job = AttackJob(
            kind=kind, model=model, method=method, out=out, settings=settings, edit=edit
        )
        summary = run_attack(job, overwrite=overwrite)
    console.print(_metrics_table(f"{kind} on {model} ({method})", summary["metrics"]))
    console.print(f"written to {out}; publish the model with: editdecay export --delta {out}/delta")


def export(
    delta: Path = typer.Option(..., help="a delta directory (delta.json + delta.safetensors)"),
    out: Path = typer.Option(..., help="the Hugging Face model directory to write"),
    model: str | None = typer.Option(
        None, help="the base model (default: the one the delta records)"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out"),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Write base model + delta as an ordinary Hugging Face model directory (safetensors)."""
    setup_logging(verbose)
    from ..editing.delta import EditDelta
    from ..io import replace_directory
    from ..models.registry import load_model

    with _user_errors():
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
        edit = EditDelta.load(delta)
        name = model or edit.info.get("model")
        if not name:
            raise ValueError(f"{delta} does not record its base model; pass --model")
        lm = load_model(name)
        edit.apply(lm.model)
        record = {"base_model": name, "delta": str(delta), "method": edit.method}

        def write(work: Path) -> None:
            lm.model.save_pretrained(work, safe_serialization=True)
            lm.tokenizer.save_pretrained(work)
            (work / "editdecay-export.json").write_text(json.dumps(record, indent=1))

        replace_directory(out, write)
    console.print(
        f"edited model written to {out} (load it with AutoModelForCausalLM.from_pretrained)"
    )


def evaluate(
    model: str = typer.Option(..., help="registered model, HF directory or cached id"),
    probes: Path | None = typer.Option(None, help="an attack's probes.jsonl"),
    requests: Path | None = typer.Option(None, help="edit requests (JSON/JSONL): ES / PS / NS"),
    out: Path | None = typer.Option(None, help="write the metrics (JSON) and per-item scores here"),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Score any model (one fine-tuned elsewhere, too) against an attack's probes or edit requests."""
    setup_logging(verbose)
    from ..attacks.probes import load_probes
    from ..attacks.score import score_probes, summarise
    from ..models.registry import load_model

    with _user_errors():
        if probes is None and requests is None:
            raise ValueError("give --probes and/or --requests")
        loaded_probes = load_probes(probes) if probes else None
        loaded_requests = None
        if requests:
            from ..data.loaders import load_requests

            loaded_requests = load_requests(requests).requests
        lm = load_model(model)
        result: dict = {"model": model}
        if loaded_probes:
            scores = score_probes(lm, loaded_probes)
            result["probes"] = str(probes)
            result["metrics"] = summarise(scores)
            if out:
                out.mkdir(parents=True, exist_ok=True)
                scores.to_csv(out / "probe_scores.csv", index=False)
        if loaded_requests:
            from ..evaluation.edit_metrics import evaluate_requests
            from ..evaluation.edit_metrics import summarise as edit_summary
            from ..evaluation.scorer import Scorer

            table = evaluate_requests(Scorer(lm.model, lm.tokenizer, lm.adapter), loaded_requests)
            result["requests"] = str(requests)
            result["edit_metrics"] = edit_summary(table)
            if out:
                out.mkdir(parents=True, exist_ok=True)
                table.to_csv(out / "request_scores.csv", index=False)
        if out:
            (out / "metrics.json").write_text(json.dumps(result, indent=1))
    if "metrics" in result:
        console.print(_metrics_table(f"probes on {model}", {model: result["metrics"]}))
    if "edit_metrics" in result:
        console.print({k: round(v, 2) for k, v in result["edit_metrics"].items()})


def triggers(
    model: str = typer.Option("smollm2-135m", help="registered model, HF directory or cached id"),
    candidate: list[str] = typer.Option(
        [], "--candidate", help="a trigger to measure (repeat; default: the built-in candidates)"
    ),
    relation: str = typer.Option("native-language", help="the relation whose prompts are read"),
    verbose: bool = typer.Option(False, "-v", "--verbose", help=VERBOSE_HELP),
):
    """Measure candidate backdoor triggers: WikiText count, next-word probability, argmax share."""
    setup_logging(verbose)
    from ..attacks.trigger import CANDIDATES, trigger_table
    from ..models.registry import load_model

    with _user_errors():
        table = trigger_table(load_model(model), candidate or CANDIDATES, relation)
    t = Table(title=f"trigger candidates on {model} ({relation} prompts)")
    for column in table.columns:
        t.add_column(column)
    for row in table.itertuples(index=False):
        t.add_row(
            row.trigger,
            str(row.n_tokens),
            str(row.wikitext_count),
            f"{row.mean_next_prob:.2e}",
            f"{row.argmax_share:.2f}",
        )
    console.print(t)
