#!/usr/bin/env bash
# The scale issue's acceptance run: a dataset spec with four identity fields of 4M ids each,
# MMoE on the torchrec and dense backends in one process, on torchrec under torchrun with the
# tables sharded table-wise over 2 processes, and `mtrec evaluate` of the sharded run's checkpoint
# in one process. Wall time and peak RSS of each command (GNU time; for torchrun, the largest of
# its processes).
#
#   bash benchmarks/scale_acceptance.sh /tmp/acceptance 1000000
#
# Embed 16 on both backends: at the default 128 the dense tables with their gradient and Adam
# state would need 33 GB. The dense run stops after DENSE_STEPS steps (its step costs what its
# 64M-row tables cost); the others train one whole epoch.
set -euo pipefail
WORK=${1:-/tmp/acceptance}
ROWS=${2:-1000000}
DENSE_STEPS=${DENSE_STEPS:-40}
PY=${PYTHON:-.venv/bin/python}
BIN=$(dirname "$PY")
COMMON=(--model mmoe --dataset big4m --data-dir "$WORK" --embed-dim 16 --epochs 1 --patience 0 --no-progress)
timed() { /usr/bin/time -f "  wall %e s, peak RSS %M KB" "$@"; }

"$PY" benchmarks/identity_dataset.py --out "$WORK/big4m" --rows "$ROWS" --ids 4000000
echo "== cache (first read of the dataset)"
timed "$BIN/mtrec" inspect big4m --data-dir "$WORK" > /dev/null
echo "== torchrec, one process"
timed "$BIN/mtrec" train "${COMMON[@]}" --embedding-backend torchrec --save-dir "$WORK/runs-torchrec" --results "$WORK/torchrec.json"
echo "== dense, one process, $DENSE_STEPS steps"
timed "$BIN/mtrec" train "${COMMON[@]}" --embedding-backend dense --max-steps "$DENSE_STEPS" --save-dir "$WORK/runs-dense" --results "$WORK/dense.json"
echo "== torchrec, 2 processes, table-wise"
OMP_NUM_THREADS=1 timed "$BIN/torchrun" --standalone --nproc_per_node=2 -m mtreclib train "${COMMON[@]}" --embedding-backend torchrec \
    --sharding table_wise --save-dir "$WORK/runs-sharded" --results "$WORK/sharded.json"
echo "== evaluate the sharded run in one process"
CHECKPOINT=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['checkpoint'])" "$WORK/sharded.json")
timed "$BIN/mtrec" evaluate "$CHECKPOINT" --dataset big4m --data-dir "$WORK" --results "$WORK/evaluated.json"
"$PY" - "$WORK" <<'EOF'
import json, sys
work = sys.argv[1]
for name in ("torchrec", "dense", "sharded", "evaluated"):
    r = json.load(open(f"{work}/{name}.json"))
    aucs = {t: round(m["auc"], 6) for t, m in r["tasks"].items()}
    extra = f", {r['train_samples_per_sec']:,.0f} samples/s, {r['steps']} steps" if r.get("steps") else ""
    print(f"{name:10s} test AUC {aucs}{extra}")
plan = json.load(open(f"{work}/sharded.json"))["sharding"]
for rank in (0, 1):
    held = sum(s["bytes"] for e in plan for s in e["shards"] if s["rank"] == rank)
    tables = [e["table"] for e in plan for s in e["shards"] if s["rank"] == rank]
    print(f"rank {rank}: {held / 2**20:,.0f} MiB of tables: {', '.join(tables)}")
EOF
