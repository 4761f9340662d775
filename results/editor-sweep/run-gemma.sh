#!/usr/bin/env bash
# Gemma-3 270M on the tuning split (records 0-99) with its own defaults (layers 2-5, AlphaEdit
# relative 1e-3): the reference's target settings (Bg0) and the current ones (Ag0).
set -u
cd "$(dirname "$0")/../.." && source .venv/bin/activate
out=${OUT:-results/editor-sweep}
gem() {  # name, extra args...
  local name=$1; shift
  python benchmarks/sweep_solve.py --model gemma3-270m --n 100 --offset 0 --method memit,alphaedit \
    --lams 2000 --thresholds 1e-3 --l2s 10 --z-cache $out/z-$name.pt "$@" > $out/$name.jsonl 2> $out/$name.err
}
gem Bg0 --set targets.clamp_norm_factor=0.75 --set targets.weight_decay=0.5
gem Ag0
