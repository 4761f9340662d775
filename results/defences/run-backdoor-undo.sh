#!/usr/bin/env bash
# The fact backdoor's undo judged on what matters to a defender: the attack's 240 held-out probes
# (never the poisoned prompts), scored on the suspect and on the suspect with the located edit
# removed (`forensics --undo rank`), for the backdoored model before and after LoRA and full
# fine-tuning. Needs the models of run-layers.sh's backdoor section (delete its results to rebuild
# them).
# Each step is skipped when its output exists, so the script resumes; run from the repository root.
set -euo pipefail
R=results/defences
W=runs/defences
E=$W/backdoor
step() { [ -e "$1" ] && echo "have $1" || { shift; echo "+ $*"; "$@"; }; }

for s in m_ed lora full; do
  if [ $s = m_ed ]; then suspect=$W/backdoor-hf; else suspect=$W/backdoor-$s/model; fi
  D=$R/layers-backdoor-$s
  [ -e $D/probes-suspect/metrics.json ] && [ -e $D/probes-undone/metrics.json ] && {
    echo "have $D/probes-*"; continue; }
  step $D/undo.json editdecay forensics --base smollm2-135m --suspect $suspect \
    --candidates $W/backdoor-candidates.jsonl --requests $E/requests.jsonl --undo rank \
    --out $D
  step $W/backdoor-$s-undone editdecay export --delta $D/undo --model $suspect \
    --out $W/backdoor-$s-undone
  step $D/probes-suspect/metrics.json editdecay evaluate --model $suspect \
    --probes $E/probes.jsonl --out $D/probes-suspect
  step $D/probes-undone/metrics.json editdecay evaluate --model $W/backdoor-$s-undone \
    --probes $E/probes.jsonl --out $D/probes-undone
done

# downstream accuracy before and after the undo, paired on 20 commonsense test items per task
# (140): forensics again with --ds-per-task, which rewrites undo.json with its `ds` entry
for s in m_ed lora; do
  if [ $s = m_ed ]; then suspect=$W/backdoor-hf; else suspect=$W/backdoor-$s/model; fi
  D=$R/layers-backdoor-$s
  grep -q '"ds"' $D/undo.json && { echo "have DS in $D/undo.json"; continue; }
  echo "+ forensics $D --ds-per-task 20"
  editdecay forensics --base smollm2-135m --suspect $suspect \
    --candidates $W/backdoor-candidates.jsonl --requests $E/requests.jsonl --undo rank \
    --ds-per-task 20 --out $D
done
