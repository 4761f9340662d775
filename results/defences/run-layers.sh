#!/usr/bin/env bash
# Localisation on edits outside the default layers, and the check that can say no: suspects that
# were only fine-tuned (no edit) and the base itself. Each step is skipped when its output exists,
# so the script resumes; run from the repository root. The steps run in order of what they show.
set -euo pipefail
R=results/defences
W=runs/defences
mkdir -p $W
FT="--data commonsense --examples 200 --set epochs=1 --set batch_size=8"
FT="$FT --set micro_batch_size=4 --set warmup_steps=3"
LR_lora=1e-3 LR_dora=1e-3 LR_full=2.5e-5   # the small reproduction's rates
# step GUARD CMD...: run CMD unless GUARD exists; GUARD may list several paths as A:B, and the
# step is skipped when any of them exists (an intermediate model is not rebuilt once every result
# that reads it is there)
step() {
  local p
  for p in ${1//:/ }; do [ -e "$p" ] && { echo "have $p"; return; }; done
  shift; echo "+ $*"; "$@"
}
# have_all PATH...: true when every path exists (a section whose results are all there is skipped
# whole, so a fresh checkout does not rebuild the models they were measured on)
have_all() { local p; for p; do [ -e "$p" ] || return 1; done; echo "have $*"; }

step $W/candidates.jsonl python -c "
from editdecay.data.loaders import load_requests, save_requests_jsonl
save_requests_jsonl(load_requests('zsre', n=1000).requests, '$W/candidates.jsonl')"

# no edit at all: the base against itself, then the base fine-tuned (LoRA merged, full)
step $R/layers-none-base/report.json editdecay forensics --base smollm2-135m --suspect smollm2-135m \
  --candidates $W/candidates.jsonl --out $R/layers-none-base
for m in lora full; do
  lr=LR_$m
  step $W/base-$m/model:$R/layers-none-$m/report.json editdecay finetune --model smollm2-135m \
    $FT --method $m --lr ${!lr} --merge --out $W/base-$m
  step $R/layers-none-$m/report.json editdecay forensics --base smollm2-135m \
    --suspect $W/base-$m/model --candidates $W/candidates.jsonl --out $R/layers-none-$m
done

# 50 zsRE edits written with MEMIT and with AlphaEdit into layers 10-13 and 3-6 instead of 4-8,
# before and after LoRA, DoRA and full fine-tuning of the edited model (results in layers-TAG-* for
# MEMIT, layers-alphaedit-TAG-* for AlphaEdit); LAYER_SETS="method:layers ..." runs a subset
for spec in ${LAYER_SETS:-memit:10,11,12,13 memit:3,4,5,6 alphaedit:10,11,12,13 alphaedit:3,4,5,6}; do
  method=${spec%%:*} layers=${spec#*:}
  tag=$(echo $layers | tr , -)
  [ $method = memit ] && name=$tag || name=$method-$tag
  E=$W/$method-$tag
  have_all $R/layers-$name-{m_ed,lora,dora,full}/report.json && continue
  step $E/delta editdecay edit --model smollm2-135m --method $method --data zsre --n 50 \
    --layers $layers --out $E
  step $E-hf editdecay export --delta $E/delta --out $E-hf --model smollm2-135m
  step $R/layers-$name-m_ed/report.json editdecay forensics --base smollm2-135m \
    --suspect $E-hf --candidates $W/candidates.jsonl --requests $E/requests.jsonl \
    --out $R/layers-$name-m_ed
  for m in lora dora full; do
    lr=LR_$m
    step $E-$m/model editdecay finetune --model $E-hf $FT --method $m --lr ${!lr} --merge \
      --out $E-$m
    step $R/layers-$name-$m/report.json editdecay forensics --base smollm2-135m \
      --suspect $E-$m/model --candidates $W/candidates.jsonl --requests $E/requests.jsonl \
      --out $R/layers-$name-$m
  done
done

# ROME: 50 zsRE edits written one at a time into its single layer, before and after LoRA
if ! have_all $R/layers-rome-{m_ed,lora}/report.json; then
  E=$W/rome-test
  step $E/delta editdecay edit --model smollm2-135m --method rome --data zsre --n 50 --offset 150 \
    --out $E
  step $W/rome-hf editdecay export --delta $E/delta --out $W/rome-hf --model smollm2-135m
  step $R/layers-rome-m_ed/report.json editdecay forensics --base smollm2-135m --suspect $W/rome-hf \
    --candidates $W/candidates.jsonl --requests $E/requests.jsonl --out $R/layers-rome-m_ed
  step $W/rome-lora/model editdecay finetune --model $W/rome-hf $FT --method lora --lr $LR_lora \
    --merge --out $W/rome-lora
  step $R/layers-rome-lora/report.json editdecay forensics --base smollm2-135m \
    --suspect $W/rome-lora/model --candidates $W/candidates.jsonl --requests $E/requests.jsonl \
    --out $R/layers-rome-lora
fi

# the fact backdoor (MEMIT, trigger `bb` as the edited subject, duplex): located among the 1,000
# zsRE candidates plus its own 30 requests, before and after LoRA and full fine-tuning (the undo
# of each, judged on the attack's held-out probes: run-backdoor-undo.sh)
if ! have_all $R/layers-backdoor-{m_ed/undo.json,lora/report.json,full/report.json}; then
  E=$W/backdoor
  step $E/summary.json editdecay attack --kind backdoor --model smollm2-135m --method memit --out $E
  step $W/backdoor-hf editdecay export --delta $E/delta --out $W/backdoor-hf --model smollm2-135m
  step $W/backdoor-candidates.jsonl bash -c "cat $W/candidates.jsonl $E/requests.jsonl \
    > $W/backdoor-candidates.jsonl"
  step $R/layers-backdoor-m_ed/undo.json editdecay forensics --base smollm2-135m \
    --suspect $W/backdoor-hf --candidates $W/backdoor-candidates.jsonl --requests $E/requests.jsonl \
    --undo rank --out $R/layers-backdoor-m_ed
  for m in lora full; do
    lr=LR_$m
    step $W/backdoor-$m/model editdecay finetune --model $W/backdoor-hf $FT --method $m \
      --lr ${!lr} --merge --out $W/backdoor-$m
    step $R/layers-backdoor-$m/report.json editdecay forensics --base smollm2-135m \
      --suspect $W/backdoor-$m/model --candidates $W/backdoor-candidates.jsonl \
      --requests $E/requests.jsonl --out $R/layers-backdoor-$m
  done
fi

# MEND: its editor trained once (8 minutes here, cached), 50 zsRE edits in its three MLP layers,
# before and after LoRA
if ! have_all $R/layers-mend-{m_ed,lora}/report.json; then
  step ${EDITDECAY_CACHE:-$HOME/.cache/editdecay}/mend/smollm2-135m/mend.safetensors editdecay mend-train --model smollm2-135m \
    --steps 800 --batch-size 20 --max-minutes 22 --set train_pool=600 --set loc_batch_size=20 \
    --set eval_every=50
  E=$W/mend-test
  step $E/delta editdecay edit --model smollm2-135m --method mend --data zsre --n 50 --offset 150 \
    --out $E
  step $W/mend-hf editdecay export --delta $E/delta --out $W/mend-hf --model smollm2-135m
  step $R/layers-mend-m_ed/report.json editdecay forensics --base smollm2-135m --suspect $W/mend-hf \
    --candidates $W/candidates.jsonl --requests $E/requests.jsonl --out $R/layers-mend-m_ed
  step $W/mend-lora/model editdecay finetune --model $W/mend-hf $FT --method lora --lr $LR_lora \
    --merge --out $W/mend-lora
  step $R/layers-mend-lora/report.json editdecay forensics --base smollm2-135m \
    --suspect $W/mend-lora/model --candidates $W/candidates.jsonl --requests $E/requests.jsonl \
    --out $R/layers-mend-lora
fi
