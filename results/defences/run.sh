#!/usr/bin/env bash
# The defences measurements of results/defences/README.md, in order; each step is skipped when its
# output exists, so the script resumes. Run from the repository root after `editdecay run defences`
# (which fine-tunes the same 50 zsRE MEMIT edits plainly and with each preservation option).
set -euo pipefail
R=results/defences
W=runs/defences
STORE=$W/store
EDIT=$(ls -d $STORE/edit/*/ | head -1)   # the study's one edit: MEMIT, 50 zsRE requests
MED_SCORES=$(grep -l '"state": "M_ed"' $STORE/evaluate/*/stage.json | head -1 | xargs dirname)/edits.parquet
FT="--data commonsense --examples 200 --method lora --lr 1e-3 --set epochs=1 --set batch_size=8"
FT="$FT --set micro_batch_size=4 --set warmup_steps=3"
step() { [ -e "$1" ] && echo "have $1" || { shift; echo "+ $*"; "$@"; }; }

step $W/m_ed editdecay export --delta $EDIT/delta --out $W/m_ed --model smollm2-135m
step $W/m_ed_ft/model editdecay finetune --model $W/m_ed $FT --preserve-edits $EDIT --merge --out $W/m_ed_ft
step $W/candidates.jsonl python -c "
from editdecay.data.loaders import load_requests, save_requests_jsonl
save_requests_jsonl(load_requests('zsre', n=1000).requests, '$W/candidates.jsonl')"

# localisation, subject recovery among 1,000 candidates, and the undo, before and after fine-tuning
for suspect in m_ed m_ed_ft/model; do
  name=$(echo $suspect | cut -d/ -f1)
  for mode in rank full; do
    step $R/forensics-$name-$mode/undo.json editdecay forensics --base smollm2-135m \
      --suspect $W/$suspect --candidates $W/candidates.jsonl --requests $EDIT/requests.jsonl \
      --undo $mode --out $R/forensics-$name-$mode
  done
done

# repair of the edits plain LoRA flipped, against a full re-edit
step $R/repair/repair.json editdecay repair --model $W/m_ed_ft/model --edits $EDIT \
  --scores $MED_SCORES --stats-from smollm2-135m --out $R/repair

# hidden-state detector: trained on MEMIT edits of other records, tested across editors and FT
step $W/memit-train editdecay edit --model smollm2-135m --method memit --data zsre --n 50 --offset 50 --out $W/memit-train
step $W/alphaedit-test editdecay edit --model smollm2-135m --method alphaedit --data zsre --n 50 --offset 100 --out $W/alphaedit-test
step $W/rome-test editdecay edit --model smollm2-135m --method rome --data zsre --n 50 --offset 150 --out $W/rome-test
for e in alphaedit rome; do
  step $W/$e-hf editdecay export --delta $W/$e-test/delta --out $W/$e-hf --model smollm2-135m
done
NEG="--negatives zsre --negatives-offset 300 --n-negatives 100"   # records 0-199 are edited
step $R/detect-memit/detect.json editdecay detect --model $W/m_ed --requests $EDIT/requests.jsonl \
  --detector $R/detector --train $W/memit-train --base smollm2-135m --negatives zsre \
  --negatives-offset 200 --n-negatives 100 --test-negatives-offset 300 --out $R/detect-memit
step $R/detect-memit-lora/detect.json editdecay detect --model $W/m_ed_ft/model \
  --requests $EDIT/requests.jsonl --detector $R/detector $NEG --out $R/detect-memit-lora
for e in alphaedit rome; do
  step $R/detect-$e/detect.json editdecay detect --model $W/$e-hf --requests $W/$e-test/requests.jsonl \
    --detector $R/detector $NEG --out $R/detect-$e
done
step $R/detect-base/detect.json editdecay detect --model smollm2-135m --requests $EDIT/requests.jsonl \
  --detector $R/detector $NEG --out $R/detect-base

# subject recovery among more than 1,000 candidates: the zsRE subjects and 500 CounterFact ones
step $W/candidates-1500.jsonl python -c "
from editdecay.data.loaders import load_requests, save_requests_jsonl
reqs = list(load_requests('zsre', n=1000).requests) + list(load_requests('counterfact', n=500).requests)
save_requests_jsonl(reqs, '$W/candidates-1500.jsonl')"
for suspect in m_ed m_ed_ft/model; do
  name=$(echo $suspect | cut -d/ -f1)
  step $R/recovery-$name/report.json editdecay forensics --base smollm2-135m --suspect $W/$suspect \
    --candidates $W/candidates-1500.jsonl --requests $EDIT/requests.jsonl --out $R/recovery-$name
done
