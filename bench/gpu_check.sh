#!/usr/bin/env bash
# The one command a lent GPU machine runs for issue #20 (the `device` tool, carry: [".whl"], after
# bench/gpu_wheels.sh here): the CUDA tests on the real GPU, then the GPU benchmark against PyTorch CUDA eager.
# Everything it prints is also written under $OUT (gpu_tests.log, gpu_bench.log, gpu_bench.json).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/nnctl-gpu}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR=/tmp/numba-cache
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "from nnctl.engine.cuda_device import problem; print('cuda problem:', problem())" | tee -a "$OUT/gpu.txt"
# 1. Every CUDA kernel against its oracle, cuBLAS, and models trained on the GPU against the CPU (every layer family,
#    several inputs and outputs, shared layers, nested models, host-run layers); up to 10 failures are reported.
NNCTL_CUDA_TESTS=gpu timeout 300 python3 -m pytest -q -p no:cacheprovider -o addopts="" --maxfail=10 \
    tests/engine/cuda_sim tests/test_cuda_device.py 2>&1 | tee "$OUT/gpu_tests.log"
# 2. Steady epochs against PyTorch CUDA eager, alternated.
timeout 200 python3 bench/gpu.py --epochs 5 --json "$OUT/gpu_bench.json" 2>&1 | tee "$OUT/gpu_bench.log"
