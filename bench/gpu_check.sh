#!/usr/bin/env bash
# The one command a lent GPU machine runs for issue #20 (the `device` tool, carry: [".whl", ".data"], after
# bench/gpu_wheels.sh here and a copy of the Keras files mnist.npz, imdb.npz, reuters.npz and boston_housing.npz
# into .data/, both git-ignored). Fails fast, with what it found, when the GPU path cannot start; else
#   1. (together) the CUDA tests on the real GPU, and bench/gpu_book.py: the book's configs on the GPU
#      (CPU-vs-GPU agreement, then fidelity over the fixed seeds);
#   2. (alone) bench/gpu.py against PyTorch CUDA eager, one workload a process.
# Logs under $OUT: gpu.txt, graphs.txt, gpu_tests.log, gpu_book.log, gpu_bench.log. PHASE1_S: phase 1's length; BOOK_ARGS:
# gpu_book.py's choice (default: the MNIST and Boston MLPs, now one launch an epoch, and what session 20's run left
# unmeasured, the recurrent and convolutional recipes, over three seeds; "" for everything); BENCH_JOBS: workload:epochs:rounds:seconds[:rows] a process (a workload
# named WORKLOAD-layered runs with NNCTL_CUDA_FUSED=0: a small model's steps without the one-launch epoch, that is,
# replayed as CUDA graphs), or `launch`
# (bench/gpu_launch.py); PROFILE, OP_TIMES (default 1; empty to skip): bench/gpu.py's --profile, --op-times.
# About 530 s in all with the defaults (each phase and job has its own limit): run it with timeout_s 590.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/nnctl-gpu}"
PHASE1_S="${PHASE1_S:-180}"
BOOK_ARGS="${BOOK_ARGS---only fidelity --seeds 3 --configs mnist.yaml,boston.yaml,imdb_lstm.yaml,\
mnist_convnet.yaml,imdb_simple_rnn.yaml,imdb_conv1d.yaml}"
PROFILE="${PROFILE-1}" OP_TIMES="${OP_TIMES-1}"
mkdir -p "$OUT"
began=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR=/tmp/numba-cache NNCTL_DATA_DIR="$PWD/.data"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
    python3 -m pip list 2>/dev/null | grep -iE "^(numba|numba-cuda|cuda-|nvidia-cublas|nvidia-cuda-nvcc|nvmath|numpy|torch) "
    python3 -c "import numpy; print('numpy in use', numpy.__version__)"
    python3 -c "from nnctl.engine.cuda_device import problem; print('cuda problem:', problem())"
    # the device runtime a cooperative grid's kernels link with (tests/engine/cuda_compile.py links them here)
    python3 -c "from numba.cuda.cudadrv.libs import get_cudalib; print('cudadevrt:', get_cudalib('cudadevrt', True))"
} 2>&1 | tee "$OUT/gpu.txt"
if ! timeout 240 python3 -m nnctl train configs/smoke.yaml --device cuda --runs-dir /tmp/smoke-runs -v \
        2>&1 | tee -a "$OUT/gpu.txt"; then
    echo "SMOKE FAILED: what the CUDA stack sees" | tee -a "$OUT/gpu.txt"
    {
        python3 -c "from numba import cuda; cuda.detect()"
        python3 -c "from nvmath.bindings import cublas; h = cublas.create(); print('cublas version', cublas.get_version(h))"
        python3 -c "import cuda.pathfinder as p; [print(n, p.load_nvidia_dynamic_lib(n).abs_path) for n in ('cublas', 'nvvm', 'nvrtc')]"
        ls /usr/local/cuda*/nvvm/lib64 2>&1 | head; echo "CUDA_HOME=${CUDA_HOME:-}"
    } 2>&1 | tee -a "$OUT/gpu.txt"
    exit 3
fi
# Which one-launch form an MNIST-sized and a Boston-sized Dense model get here (a cooperative grid's blocks, 0 for
# one block, None for launch by launch) and their epochs' seconds.
timeout 120 python3 - <<'PY' 2>&1 | tee -a "$OUT/gpu.txt"
import warnings
import numpy as np
from nnctl.nn.layers import Dense
from nnctl.nn.model import Sequential
for name, units, features, batch in (("mnist-like", 512, 784, 128), ("boston-like", 64, 13, 16)):
    rng = np.random.default_rng(0)
    x, y = rng.random((8192, features), dtype=np.float32), rng.integers(0, 10, 8192)
    model = Sequential([Dense(units, activation="relu"), Dense(10, activation="softmax")], input_shape=(features,),
                       seed=0, device="cuda")
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        times = model.fit(x, y, epochs=3, batch_size=batch).history["epoch_time"]
    whole = next(iter(model._cuda_paths.values())).whole
    print(f"{name}: one-launch blocks {None if whole is None else whole.blocks}, epochs (s) "
          f"{[round(t, 4) for t in times]}, warnings {[str(w.message)[:200] for w in seen]}")
PY
# Whether a step replays as a CUDA graph here (nn/cudagraph.py) and what that saves: an MNIST-convnet-like and an
# IMDB-LSTM-like model's steps with graphs and launch by launch (3 epochs each, the first compiling), and whether
# the two trained alike. Where they did not (or recording failed), the rest of the run goes launch by launch
# (NNCTL_CUDA_GRAPHS=0), so that its tests, recipes and benchmarks still come back.
timeout 150 python3 - <<'PY' 2>&1 | tee "$OUT/graphs.txt" | tee -a "$OUT/gpu.txt"
import traceback
import warnings
import numpy as np
from nnctl.nn import cudagraph
from nnctl.nn.layers import LSTM, Conv2D, Dense, Embedding, Flatten, MaxPooling2D
from nnctl.nn.model import Sequential
rng = np.random.default_rng(0)
convnet = lambda: [Conv2D(32, 3, activation="relu"), MaxPooling2D(2), Conv2D(64, 3, activation="relu"),
                   MaxPooling2D(2), Conv2D(64, 3, activation="relu"), Flatten(), Dense(64, activation="relu"),
                   Dense(10, activation="softmax")]
lstm = lambda: [Embedding(10000, 32), LSTM(32), Dense(1, activation="sigmoid")]
cases = {"convnet-like": (convnet, rng.random((64 * 60, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 64 * 60),
                          64, "sparse_categorical_crossentropy"),
         "lstm-like": (lstm, rng.integers(1, 10000, (128 * 12, 500)).astype(np.int32),
                       rng.integers(0, 2, 128 * 12).astype(np.float32), 128, "binary_crossentropy")}
good = True
for name, (layers, x, y, batch, loss) in cases.items():
    runs = {}
    for graphs in (True, False):
        cudagraph.ENABLED = graphs
        model = Sequential(layers(), input_shape=x.shape[1:], seed=0, device="cuda")
        model.compile(optimizer="rmsprop", loss=loss)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            history = model.fit(x, y, epochs=3, batch_size=batch).history
        replayed = next(iter(model._cuda_paths.values())).replayed is not None and not cudagraph._FAILED[0]
        runs[graphs] = (replayed, np.array(history["loss"]))
        print(f"{name}, graphs {'on' if graphs else 'off'}: replayed {replayed}, ms a step "
              f"{[round(1000 * t * batch / len(x), 3) for t in history['epoch_time']]}, losses {history['loss']}, "
              f"warnings {[str(w.message)[:300] for w in seen]}")
        if cudagraph._ERROR[0] is not None:  # where recording failed
            traceback.print_exception(cudagraph._ERROR[0])
            cudagraph._ERROR[0] = None
    same = np.allclose(runs[True][1], runs[False][1], rtol=1e-4, atol=1e-6)
    good = good and runs[True][0] and same
    print(f"{name}: graphs and launches trained alike: {same}")
print("GRAPHS OK" if good else "GRAPHS NOT OK")
PY
if ! grep -q "^GRAPHS OK" "$OUT/graphs.txt"; then
    export NNCTL_CUDA_GRAPHS=0
    echo "graphs did not record or train alike here: the rest of this run goes launch by launch" | tee -a "$OUT/gpu.txt"
fi
echo "set-up, smoke and probes: $(( $(date +%s) - began )) s" | tee -a "$OUT/gpu.txt"

# 1. The CUDA tests (every kernel against its oracle, cuBLAS, models trained on the GPU against the CPU) beside
#    the book's configs on the GPU.
(
    NNCTL_CUDA_TESTS=gpu NUMBA_NUM_THREADS=2 timeout -k 5 "$PHASE1_S" python3 -m pytest -q -p no:cacheprovider \
        -p no:warnings -o addopts="" -n 10 --dist load --timeout 150 --maxfail=30 tests/engine/cuda_sim tests/test_cuda_device.py \
        > "$OUT/gpu_tests.log" 2>&1
    echo "pytest exit status $?" >> "$OUT/gpu_tests.log"
) &
tests=$!
# shellcheck disable=SC2086
NUMBA_NUM_THREADS=4 python3 bench/gpu_book.py --workers 4 --deadline $(( PHASE1_S - 10 )) --log "$OUT/gpu_book.log" \
    ${BOOK_ARGS:-} > /dev/null 2>&1
wait "$tests"
pkill -f "pytest" ; pkill -f "nnctl train"; sleep 1
echo "== tests"; tail -n 40 "$OUT/gpu_tests.log"
echo "== book configs"; cat "$OUT/gpu_book.log"

# 2. Alone on the machine: steady epochs against PyTorch CUDA eager, alternated, one workload a process.
echo "== bench"
for job in ${BENCH_JOBS:-launch mlp:2:2:35 mlp-layered:2:1:25 boston:2:2:25 boston-layered:2:1:20 lstm:2:1:45 convnet:1:1:60}; do
    IFS=: read -r workload epochs rounds seconds rows <<<"$job"
    if [ "$workload" = launch ]; then  # what one launch costs (bench/gpu_launch.py)
        timeout -k 5 30 python3 bench/gpu_launch.py 2>&1 | tee -a "$OUT/gpu_bench.log"
        continue
    fi
    fused=1
    if [ "${workload%-layered}" != "$workload" ]; then  # WORKLOAD-layered: without the one-launch steps
        workload=${workload%-layered}; fused=0; echo "($workload, NNCTL_CUDA_FUSED=0)" | tee -a "$OUT/gpu_bench.log"
    fi
    NNCTL_CUDA_FUSED=$fused timeout -k 5 "$seconds" python3 bench/gpu.py --workloads "$workload" --epochs "$epochs" --rounds "$rounds" \
        ${rows:+--rows "$rows"} ${PROFILE:+--profile} ${OP_TIMES:+--op-times} 2>&1 | grep -v Warning \
        | tee -a "$OUT/gpu_bench.log" || echo "$workload: no figure within $seconds s" | tee -a "$OUT/gpu_bench.log"
done
echo "all: $(( $(date +%s) - began )) s"
