#!/usr/bin/env bash
# The task backdoor, misinformation and bias attacks planted with MEMIT into SmolLM2-135M, before
# any fine-tuning. Each run is skipped when its summary exists, so the script resumes; run from the
# repository root. The deltas stay under runs/ (17 MB each); the small files are copied here.
set -euo pipefail
for kind in task-backdoor misinformation bias; do
  W=runs/attacks/smollm2-memit-$kind
  [ -e $W/summary.json ] || editdecay attack --kind $kind --model smollm2-135m --method memit \
    --out $W --overwrite
  mkdir -p results/attacks/smollm2-memit-$kind
  cp $W/summary.json $W/scores.csv $W/probes.jsonl $W/requests.jsonl \
    results/attacks/smollm2-memit-$kind/
done
