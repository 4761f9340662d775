"""How alike are MEMIT's and AlphaEdit's updates for the same edits?

In a reproduction store, MEMIT and AlphaEdit edit stages that share their target values z (the same
requests, model and layers) are paired; for each pair, the cosine between the two ΔW of every edited
weight and the ratio of their norms (AlphaEdit / MEMIT), averaged over the edited layers.

    python results/reproduction/analysis/editor_similarity.py runs/repro-store
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import torch
from safetensors.torch import load_file


def main(store: Path) -> None:
    pairs: dict[tuple[str, str], dict[str, Path]] = defaultdict(dict)
    for record in store.glob("edit/*/stage.json"):
        stage = json.loads(record.read_text())
        method = stage["settings"]["method"]
        if method in ("memit", "alphaedit"):
            pairs[(stage["settings"]["model"], stage["inputs"]["targets"])][method] = record.parent
    print("| model | targets stage | edits | cosine(ΔW_AlphaEdit, ΔW_MEMIT) | norm ratio AlphaEdit / MEMIT |")
    print("|---|---|---:|---:|---:|")
    for (model, targets), stages in sorted(pairs.items()):
        if len(stages) < 2:
            continue
        alphaedit = load_file(stages["alphaedit"] / "delta" / "delta.safetensors")
        memit = load_file(stages["memit"] / "delta" / "delta.safetensors")
        cosines = [torch.nn.functional.cosine_similarity(alphaedit[n].flatten(), memit[n].flatten(), dim=0).item()
                   for n in memit]
        ratios = [(alphaedit[n].norm() / memit[n].norm()).item() for n in memit]
        n_edits = sum(1 for _ in open(stages["memit"] / "requests.jsonl"))
        print(f"| {model} | {targets} | {n_edits} | {sum(cosines) / len(cosines):.3f} | "
              f"{sum(ratios) / len(ratios):.2f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
