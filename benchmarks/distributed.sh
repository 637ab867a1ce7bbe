#!/usr/bin/env bash
# Training throughput of one process against N data-parallel processes (torchrun; gloo on CPU)
# at the same global batch, through the real command line.
#
#   benchmarks/distributed.sh [MODEL] [STEPS] [NPROC]      (defaults: mmoe 12 2)
#
# Prints train_samples_per_sec (all ranks' rows / rank 0's training time) per set-up. On a
# shared machine run it under the CPU lock: flock /work/cpu.lock benchmarks/distributed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-mmoe}
STEPS=${2:-12}
NPROC=${3:-2}
PY=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A small test file: the benchmark times training, not the final evaluation.
"$PY" -m mtreclib generate --data-dir "$work" --name bench --train-rows 60000 --test-rows 4000 >/dev/null
args=(train --model "$MODEL" --dataset bench --data-dir "$work" --epochs 1 --max-steps "$STEPS"
      --patience 0 --valid-fraction 0 --no-save --no-progress --results "$work/results.json")

report() {
  "$PY" - "$work/results.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<44} {r['train_samples_per_sec']:>9,.0f} samples/s  ({r['steps']} steps, world size {r['world_size']})")
PY
}

CORES=$(nproc)
SHARE=$(( CORES / NPROC > 0 ? CORES / NPROC : 1 ))
echo "model $MODEL, global batch 2048, $STEPS steps, $CORES CPU cores"
OMP_NUM_THREADS=$CORES "$PY" -m mtreclib "${args[@]}" >/dev/null && report "1 process x $CORES threads"
OMP_NUM_THREADS=1 "$PY" -m mtreclib "${args[@]}" >/dev/null && report "1 process x 1 thread"
# torchrun sets OMP_NUM_THREADS=1 in every process when it is unset; cores / processes is the
# sensible setting, and on 2 cores with 2 processes the two are the same.
OMP_NUM_THREADS=$SHARE "$PY" -m torch.distributed.run --nproc_per_node="$NPROC" -m mtreclib "${args[@]}" >/dev/null 2>&1 \
  && report "$NPROC processes x $SHARE threads (cores / processes)"
OMP_NUM_THREADS=$CORES "$PY" -m torch.distributed.run --nproc_per_node="$NPROC" -m mtreclib "${args[@]}" >/dev/null 2>&1 \
  && report "$NPROC processes x $CORES threads (oversubscribed)"
