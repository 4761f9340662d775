#!/usr/bin/env bash
# The confirming split: CounterFact edit records 1000-1099 (not used to choose any setting), the
# reference target settings (B1) and the current ones (A1), MEMIT λ 2000 and AlphaEdit relative 1e-2
# on one z, then AlphaEdit's absolute rule 2e-2 on the same z.
set -u
cd "$(dirname "$0")/../.." && source .venv/bin/activate
out=${OUT:-results/editor-sweep}
run() {  # name, extra args...
  local name=$1; shift
  python benchmarks/sweep_solve.py --n 100 --offset 1000 --method memit,alphaedit --lams 2000 \
    --thresholds 1e-2 --l2s 10 --z-cache $out/z-$name.pt "$@" > $out/$name.jsonl 2> $out/$name.err
  python benchmarks/sweep_solve.py --n 100 --offset 1000 --method alphaedit --rule absolute \
    --thresholds 2e-2 --l2s 10 --z-cache $out/z-$name.pt "$@" > $out/$name-abs.jsonl 2>> $out/$name.err
}
run B1 --set targets.clamp_norm_factor=0.75 --set targets.weight_decay=0.5
run A1
