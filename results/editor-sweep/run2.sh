#!/usr/bin/env bash
# Second pass: the reference target settings (B0) with the default solves, then the absolute
# null-space rule on the default z (A0-abs).
set -u
cd /work/main && source .venv/bin/activate
out=${OUT:-results/editor-sweep}
python benchmarks/sweep_solve.py --n 100 --offset 0 --method memit,alphaedit --lams 2000 \
  --thresholds 1e-2 --l2s 10 --z-cache $out/z-B0.pt \
  --set targets.clamp_norm_factor=0.75 --set targets.weight_decay=0.5 > $out/B0.jsonl 2> $out/B0.err
python benchmarks/sweep_solve.py --n 100 --offset 0 --method alphaedit --rule absolute \
  --thresholds 2e-2 --l2s 10 --z-cache $out/z-B0.pt \
  --set targets.clamp_norm_factor=0.75 --set targets.weight_decay=0.5 > $out/B0-abs.jsonl 2>> $out/B0.err
python benchmarks/sweep_solve.py --n 100 --offset 0 --method alphaedit --rule absolute \
  --thresholds 2e-2 --l2s 10 --z-cache $out/z-A0.pt > $out/A0-abs.jsonl 2>> $out/A0.err
echo done > $out/DONE2
