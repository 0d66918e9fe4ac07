#!/usr/bin/env bash
# The one prepared run for a lent GPU (see BENCHMARKS.md, "GPU"): the benchmark first, then the
# CUDA tests; everything under $OUT. Bounded to about 9 minutes. Run from the repository root
# with the carried wheels in .whl/ and MedPix 2.0 in .gpudata/medpix2/ (BENCHMARKS.md says how).
set -u -o pipefail
OUT=${OUT:-/tmp/medclip-gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD MEDCLIP_HOME=/tmp/medclip-home PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export MEDCLIP_TEST_MEDPIX=$PWD/.gpudata/medpix2
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv | tee "$OUT/nvidia-smi.txt"
python3 -c "import torch, open_clip, timm; print('torch', torch.__version__, 'open_clip', open_clip.__version__, 'timm', timm.__version__)"
# BENCH_ARGS: e.g. "--compile" (also time compiled blocks) or "--no-open-clip" (its figure is known).
timeout "${BENCH_TIMEOUT:-390}" python3 benchmarks/gpu_finetune.py --data .gpudata/medpix2 ${BENCH_ARGS:---compile} \
  --profile "$OUT/profile.txt" --stacks "$OUT/stacks.txt" --json "$OUT/gpu_finetune.json" "$@" 2>&1 | tee "$OUT/gpu_finetune.log"
echo "benchmark exit ${PIPESTATUS[0]}"
timeout "${TEST_TIMEOUT:-150}" python3 -m pytest -q -m gpu -p no:cacheprovider tests/training/test_gpu.py \
  2>&1 | tee "$OUT/pytest_gpu.log" | tail -30
echo "tests exit ${PIPESTATUS[0]}"
