#!/usr/bin/env bash
# Undo on batches of 100: MEMIT and AlphaEdit, the same 100 zsRE requests (records 400-499), before
# and after plain LoRA of the edited model, rank and full undo. Each step is skipped when its
# output exists, so the script resumes; run from the repository root.
set -euo pipefail
R=results/defences
W=runs/defences
mkdir -p $W
FT="--data commonsense --examples 200 --method lora --lr 1e-3 --set epochs=1 --set batch_size=8"
FT="$FT --set micro_batch_size=4 --set warmup_steps=3"
step() { [ -e "$1" ] && echo "have $1" || { shift; echo "+ $*"; "$@"; }; }

step $W/candidates.jsonl python -c "
from editdecay.data.loaders import load_requests, save_requests_jsonl
save_requests_jsonl(load_requests('zsre', n=1000).requests, '$W/candidates.jsonl')"
for method in memit alphaedit; do
  E=$W/undo100-$method
  done_all=1
  for s in hf-rank hf-full lora-rank lora-full; do
    [ -e $R/undo100-$method-$s/undo.json ] || done_all=0
  done
  [ $done_all = 1 ] && { echo "have $R/undo100-$method-*"; continue; }
  step $E/delta editdecay edit --model smollm2-135m --method $method --data zsre --n 100 \
    --offset 400 --out $E
  step $W/undo100-$method-hf editdecay export --delta $E/delta --out $W/undo100-$method-hf \
    --model smollm2-135m
  step $W/undo100-$method-lora/model editdecay finetune --model $W/undo100-$method-hf $FT --merge \
    --out $W/undo100-$method-lora
  for suspect in hf lora/model; do
    name=$(echo $suspect | cut -d/ -f1)
    for mode in rank full; do
      step $R/undo100-$method-$name-$mode/undo.json editdecay forensics --base smollm2-135m \
        --suspect $W/undo100-$method-$suspect --candidates $W/candidates.jsonl \
        --requests $E/requests.jsonl --undo $mode --out $R/undo100-$method-$name-$mode
    done
  done
done
