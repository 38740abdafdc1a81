#!/usr/bin/env bash
# The GPU checks of issue 11 in one call, on a machine with a CUDA GPU (e.g. the device tool's run):
#
#   bash benchmarks/gpu_check.sh            # CUDA tests + bench_gpu --quick   (<= ~9.5 min, one device call)
#   bash benchmarks/gpu_check.sh --full     # the full bench_gpu alone          (<= ~9.5 min, one device call)
#
# Each fits one device-tool call (10 min); a 15-minute device budget holds one of them plus the
# machine's start. Both are estimates: nothing here has run on a GPU yet.
# Writes under $OUT (default: benchmarks/results/gpu_check/): env.txt (nvidia-smi, versions),
# gpu_tests.log, bench_gpu.log, bench_gpu_<device>[_quick].md/.json, gpu_hours.md -- 7 files.
# Exit status: 3 if the environment cannot be set up, else 0 when tests and benchmark ran
# (a MISSED target is a result, not a failure), 1 when either failed.
set -uo pipefail
cd "$(dirname "$0")/.."
source .dev/activate.sh || exit 3
OUT="${OUT:-benchmarks/results/gpu_check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
MODE="--quick"; BENCH_LIMIT=400; TESTS=1
if [ "${1:-}" = "--full" ]; then MODE=""; BENCH_LIMIT=540; TESTS=0; fi

{ nvidia-smi; python -c "import sys, torch, transformers; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name()); print('transformers', transformers.__version__)"; } >"$OUT/env.txt" 2>&1

# 1. CUDA-only tests (tests/test_fastpath.py: fast path on CUDA with and without CUDA graphs, GPU
#    pruning = CPU masks and not slower than global_unstructured), plus the fast-path CPU tests.
tests=0
if [ "$TESTS" = 1 ]; then
  timeout 150 python -m pytest -q -rs -p no:cacheprovider tests/test_fastpath.py 2>&1 | tee "$OUT/gpu_tests.log"
  tests=${PIPESTATUS[0]}
fi

# 2. The benchmark (it stops starting new sections near its budget and writes what it has).
timeout "$BENCH_LIMIT" python -m benchmarks.bench_gpu $MODE --budget-s $((BENCH_LIMIT - 60)) --out "$OUT" 2>&1 \
  | grep -v -e '^USDT' -e 'profiler_st' | tee "$OUT/bench_gpu.log"
bench=${PIPESTATUS[0]}

# 3. GPU-hours of sweeps/paper.yaml with the measured fast-path rates added.
python -m benchmarks.gpu_hours --rates "$OUT"/bench_gpu_*.json >"$OUT/gpu_hours.md" 2>&1

echo "gpu_check: tests exit $tests, bench_gpu exit $bench; files in $OUT"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
