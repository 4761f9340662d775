"""editdecay's MEMIT beside a reference implementation (EasyEdit) on the same model and records.

Both edit the same CounterFact requests in one batch from the same unedited weights, with the same
hyper-parameters (editdecay's defaults for the model, written into the reference's MEMIT parameter
file); the reference's edited weights are turned into an EditDelta (its change of the edited
matrices) and both deltas are scored by editdecay's scorer, so only the editors differ. Printed:
seconds of each editor (from its call, statistic included unless the reference finds one in its
`stats_dir`) and their ratio, and ES / PS / NS / locality of both.

The reference is optional and is not a dependency. Set it up in the same environment, e.g. from a
clone of https://github.com/zjunlp/EasyEdit: `pip install --no-deps -e EasyEdit` plus the packages
its requirements name that are missing here. Its statistic needs its `mom2_dataset` (Wikipedia by
default) to be downloadable or already in `--stats-dir`. Without the `easyeditor` package the script
prints why it skipped and exits 0.

    python benchmarks/bench_reference.py [--model smollm2-135m] [--n 50] [--offset 1000]
        [--stats-dir data/stats] [--mom2-samples 100000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import tempfile
import time
from pathlib import Path

import torch

from editdecay.data.loaders import load_requests
from editdecay.editing import default_config, get_editor
from editdecay.editing.delta import EditDelta
from editdecay.evaluation.edit_metrics import evaluate_requests, summarise
from editdecay.evaluation.scorer import Scorer
from editdecay.models.registry import load_model

SCORES = ("es", "ps", "ns", "locality")


def reference_parameters(lm, cfg, model_dir: Path, stats_dir: str, samples: int) -> dict:
    """The reference's MEMIT parameter file, holding editdecay's settings for this model."""
    adapter, n_layers = lm.adapter, lm.adapter.n_layers(lm.model)
    blocks = adapter.block
    return {
        "alg_name": "MEMIT",
        "model_name": str(model_dir),
        "stats_dir": stats_dir,
        "device": 0,
        "layers": list(cfg.layers),
        "clamp_norm_factor": cfg.targets.clamp_norm_factor,
        "layer_selection": "all",
        "fact_token": "subject_last",
        "v_num_grad_steps": cfg.targets.steps,
        "v_lr": cfg.targets.lr,
        "v_loss_layer": n_layers - 1,
        "v_weight_decay": cfg.targets.weight_decay,
        "kl_factor": cfg.targets.kl_factor,
        "mom2_adjustment": True,
        "mom2_update_weight": cfg.mom2_update_weight,
        "rewrite_module_tmp": adapter.mlp_out,
        "layer_module_tmp": blocks,
        "mlp_module_tmp": adapter.mlp_out.rsplit(".", 1)[0],
        "attn_module_tmp": blocks + ".self_attn",
        "ln_f_module": adapter.final_norm,
        "lm_head_module": adapter.embed,
        "mom2_dataset": "wikipedia",
        "mom2_n_samples": samples,
        "mom2_dtype": "float32",
        "model_parallel": False,
    }


def reference_edit(lm, requests, params: dict, work: Path) -> tuple[dict[str, torch.Tensor], float]:
    """The reference's change of the edited matrices, and the seconds its edit call took."""
    import yaml
    from easyeditor import BaseEditor, MEMITHyperParams

    path = work / "memit.yaml"
    path.write_text(yaml.safe_dump(params))
    hparams = MEMITHyperParams.from_hparams(str(path))
    if not torch.cuda.is_available():
        hparams.device = "cpu"
    editor = BaseEditor.from_hparams(hparams)
    names = [params["rewrite_module_tmp"].format(layer) + ".weight" for layer in params["layers"]]
    before = {
        n: p.detach().float().cpu().clone()
        for n, p in editor.model.named_parameters()
        if n in names
    }
    t0 = time.perf_counter()
    _, edited, _ = editor.edit(
        prompts=[r.text for r in requests],
        ground_truth=[r.target_true or "" for r in requests],
        target_new=[r.target_new for r in requests],
        subject=[r.subject for r in requests],
        sequential_edit=False,
    )
    seconds = time.perf_counter() - t0
    after = dict(edited.named_parameters())
    return {n: after[n].detach().float().cpu() - before[n] for n in names}, seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--offset", type=int, default=1000, help="records no default was tuned on")
    ap.add_argument("--stats-dir", default="data/stats", help="the reference's statistic cache")
    ap.add_argument("--mom2-samples", type=int, default=100000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if importlib.util.find_spec("easyeditor") is None:
        print(
            json.dumps(
                {
                    "skipped": "the reference (package `easyeditor`) is not installed; "
                    "see this script's docstring for the set-up"
                }
            )
        )
        return
    lm = load_model(args.model)
    requests = load_requests("counterfact", n=args.n, offset=args.offset).requests
    cfg = default_config("memit", lm)
    scorer = Scorer(lm.model, lm.tokenizer, lm.adapter)
    base = evaluate_requests(scorer, requests)

    def scores(delta: EditDelta) -> dict:
        with delta.apply(lm.model):
            table = evaluate_requests(scorer, requests, reference=base)
        return {k: round(v, 1) for k, v in summarise(table).items() if k in SCORES}

    t0 = time.perf_counter()
    ours = get_editor("memit").edit(lm, requests, cfg)
    ours_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lm.model.save_pretrained(work / "model")
        lm.tokenizer.save_pretrained(work / "model")
        params = reference_parameters(lm, cfg, work / "model", args.stats_dir, args.mom2_samples)
        weights, ref_s = reference_edit(lm, requests, params, work)
    theirs = EditDelta(
        weights, "memit", {"reference": params}, [r.case_id for r in requests], lm.fingerprint
    )
    print(
        json.dumps(
            {
                "model": args.model,
                "records": f"counterfact {args.offset}-{args.offset + args.n - 1}",
                "unedited": {k: round(v, 1) for k, v in summarise(base).items() if k in SCORES},
                "editdecay": {"seconds": round(ours_s, 1), **scores(ours)},
                "reference": {"seconds": round(ref_s, 1), **scores(theirs)},
                "seconds_ratio_reference_over_editdecay": round(ref_s / ours_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
