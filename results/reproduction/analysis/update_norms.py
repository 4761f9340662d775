"""How far did fine-tuning move the weights that carry the edits?

For every edited model fine-tuned with LoRA or full FT on all layers (50 edits, Commonsense, seed 0)
in a reproduction store, compare the fine-tuning update of each edited weight, ΔW_ft, with the
edit's own update ΔW_e (both from the store):

- ``|ΔW_ft| / |ΔW_e|``: Frobenius norms, averaged over the edited layers;
- ``on edit directions``: the same ratio after projecting both onto the row space of ΔW_e (the
  input directions the edit writes through), i.e. ``|ΔW_ft V| / |ΔW_e V|``.

LoRA's update is (alpha / r)·B·A; full FT's is W_ft − (W + ΔW_e) with W the base model's weights.

    python results/reproduction/analysis/update_norms.py runs/repro-store
"""

import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from editdecay.models.registry import load_model


def _stage(store: Path, kind: str, key: str) -> dict:
    return json.loads((store / kind / key / "stage.json").read_text())


def fine_tuning_update(weights, base: dict, name: str, edit_delta: torch.Tensor, ft: dict) -> torch.Tensor:
    if ft["method"] == "lora":
        prefix = "base_model.model." + name.removesuffix(".weight")
        a = weights.get_tensor(prefix + ".lora_A.default.weight")
        b = weights.get_tensor(prefix + ".lora_B.default.weight")
        return (ft["alpha"] / ft["r"]) * b @ a
    return weights.get_tensor(name) - (base[name] + edit_delta)


def main(store: Path) -> None:
    rows, base_models = [], {}
    for record in sorted(store.glob("finetune/*/stage.json")):
        stage = json.loads(record.read_text())
        settings, ft = stage["settings"], stage["settings"]["finetune"]
        if not settings["edited"] or ft["method"] not in ("lora", "full") or ft["seed"] != 0:
            continue
        if settings["data"]["source"] != "commonsense":
            continue
        if settings["model"] not in base_models:
            base_models[settings["model"]] = load_model(settings["model"], device="cpu").model
        base_model = base_models[settings["model"]]
        if len(stage["layers"]) != base_model.config.num_hidden_layers:
            continue
        edit_key = stage["inputs"]["edit"]
        edit = _stage(store, "edit", edit_key)["settings"]
        edited_data = settings["data"]["without_subjects_of"]
        if edited_data["n"] != 50:
            continue
        deltas = load_file(store / "edit" / edit_key / "delta" / "delta.safetensors")
        weights = safe_open(record.parent / "final" / "weights.safetensors", "pt")
        base = base_model.state_dict()
        norm_ratio, direction_ratio = [], []
        for name, edit_delta in deltas.items():
            update = fine_tuning_update(weights, base, name, edit_delta, ft)
            _, s, vh = torch.linalg.svd(edit_delta, full_matrices=False)
            v = vh[: int((s > s[0] * 1e-3).sum())].T
            norm_ratio.append((update.norm() / edit_delta.norm()).item())
            direction_ratio.append(((update @ v).norm() / (edit_delta @ v).norm()).item())
        rows.append((settings["model"], edit["method"], edited_data["data"], ft["method"],
                     sum(norm_ratio) / len(norm_ratio), sum(direction_ratio) / len(direction_ratio)))
    print("| model | editor | edit data | FT | \\|ΔW_ft\\| / \\|ΔW_e\\| | on edit directions |")
    print("|---|---|---|---|---:|---:|")
    for row in sorted(rows):
        print("| %s | %s | %s | %s | %.3f | %.4f |" % row)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
