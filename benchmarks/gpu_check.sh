#!/usr/bin/env bash
# The GPU checks of issue 19 in ONE device call of at most 7 minutes (so a rerun fits a 15-minute budget):
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # on a CUDA machine; OUT_DIR default: $OUT, else
#                                                 #   benchmarks/results/gpu_check
#   bash benchmarks/gpu_check.sh --cpu [OUT_DIR]  # the same script on the CPU, tiny BERT (tests run this)
#
# Writes one file, OUT_DIR/gpu_check.json, rewritten after every entry (see benchmarks/gpu_check.py), so a
# run cut short by the time limit still leaves what it measured. With .dev/ (../shared/device/pack.sh)
# beside the project, its activate.sh is sourced first (offline wheels, MiniLM tokenizer, Rotten Tomatoes).
# Exit status: 0 no entry failed, 1 some entry failed, 2 no CUDA (without --cpu), 3 .dev/activate.sh failed,
# 124 the time limit cut the run (gpu_check.json says how far it got).
set -uo pipefail
cd "$(dirname "$0")/.."
LIMIT_S=${GPU_CHECK_LIMIT_S:-420}   # the whole call, activation included
CPU=""
if [ "${1:-}" = "--cpu" ]; then CPU="--cpu"; shift; fi
DIR="${1:-${OUT:-}}"
PY=${PYTHON:-python3}
if [ -z "$CPU" ] && [ -f .dev/activate.sh ]; then
  source .dev/activate.sh || exit 3
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
left=$((LIMIT_S - SECONDS - 5))   # seconds left for python; its phases stop starting 60 s before that
exec timeout -k 5 "$left" "$PY" -m benchmarks.gpu_check $CPU ${DIR:+--out "$DIR"} --budget-s $((left - 60))
