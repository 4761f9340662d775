#!/usr/bin/env bash
# Target-setting sweep for issue 21 (tuning split: CounterFact edit records 0-99).
set -u
cd /work/main && source .venv/bin/activate
out=${OUT:-results/editor-sweep}
run() {  # name, offset, extra args...
  local name=$1 off=$2; shift 2
  [ -s $out/$name.jsonl ] && grep -q alphaedit $out/$name.jsonl && return
  python benchmarks/sweep_solve.py --n 100 --offset $off --method memit,alphaedit --lams 1000,2000,5000 \
    --thresholds 1e-2,2e-2 --l2s 10 --z-cache $out/z-$name.pt "$@" > $out/$name.jsonl 2> $out/$name.err
  python benchmarks/sweep_solve.py --n 100 --offset $off --method alphaedit --rule absolute \
    --thresholds 2e-2 --l2s 10 --z-cache $out/z-$name.pt "$@" > $out/$name-abs.jsonl 2>> $out/$name.err
}
run A0 0
run B0 0 --set targets.clamp_norm_factor=0.75 --set targets.weight_decay=0.5
run C0 0 --set targets.clamp_norm_factor=0.75
run D0 0 --set targets.weight_decay=0.5
echo done > $out/DONE
