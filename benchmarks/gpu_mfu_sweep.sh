#!/usr/bin/env bash
# Prepared, not yet run (no GPU was lent to issue 20's session): model FLOP utilisation and
# samples/s of the bigger towers, in-memory step (the ceiling) next to `medclip finetune` end to
# end, via benchmarks/gpu_finetune.py. Same set-up as gpu_session.sh (carried wheels in .whl/,
# MedPix in .gpudata/medpix2/); one JSON per configuration under $OUT. About 9 minutes on an H200:
#   CONFIGS="vit-b-16:256 vit-l-14:128" bash benchmarks/gpu_mfu_sweep.sh
set -u -o pipefail
OUT=${OUT:-/tmp/medclip-gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD MEDCLIP_HOME=/tmp/medclip-home PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,power.limit --format=csv | tee "$OUT/nvidia-smi.txt"
for config in ${CONFIGS:-vit-b-16:256 vit-b-16:512 vit-l-14:128 vit-l-14:256}; do
  encoder=${config%%:*}; batch=${config##*:}
  timeout "${EACH_TIMEOUT:-130}" python3 benchmarks/gpu_finetune.py --data .gpudata/medpix2 --encoder "$encoder" \
    --batch-size "$batch" --steps 20 --skip 5 --compile --no-audit --no-open-clip \
    --json "$OUT/mfu_${encoder}_b${batch}.json" 2>&1 | tee "$OUT/mfu_${encoder}_b${batch}.log" | tail -4
  echo "$config exit ${PIPESTATUS[0]}"
done
