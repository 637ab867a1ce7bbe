#!/usr/bin/env bash
# The tuned table: every model the same search budget (mtrec tune, one study each, on the validation
# split), then each study's best settings retrained over seeds and tested once, beside the same model at
# its defaults with the same fixed settings (mtrec benchmark --tuned), then the report.
#
# Reduced, as the README's table was made (fits a session's 2 cores):
#   ROWS=30000 TEST_ROWS=12000 TRIALS=10 EPOCHS=2 STARTUP=4 bash benchmarks/tune_table.sh
# The larger one: the built-in dataset itself (ROWS empty), 40 trials of up to 10 epochs each,
# early stopping and pruning doing the rest; run the studies on 2+ cores each with --workers:
#   ROWS= TRIALS=40 EPOCHS=10 STARTUP=10 WORKERS=2 bash benchmarks/tune_table.sh
# Everything resumes: the same command continues each study where it stopped (a study that already
# has its trials gets TRIALS more) and the benchmark skips the runs it has.
set -euo pipefail
MTREC=${MTREC:-mtrec}
ROWS=${ROWS-30000}
TEST_ROWS=${TEST_ROWS:-12000}
TRIALS=${TRIALS:-10}
EPOCHS=${EPOCHS:-2}
STARTUP=${STARTUP:-4}
WORKERS=${WORKERS:-1}
SEEDS=${SEEDS:-3}
THREADS=${THREADS:-2}
MODELS=${MODELS:-mmoe ple esmm stem adatt pepnet}
OUT=${OUT:-runs/tuned}

if [ -n "$ROWS" ]; then
  # The built-in dataset's generator and data seed, at ROWS training rows.
  $MTREC generate --data-dir "$OUT/data" --name generated --train-rows "$ROWS" --test-rows "$TEST_ROWS"
  DATA=(--dataset generated --data-dir "$OUT/data")
else
  DATA=(--dataset synthetic)
fi
for model in $MODELS; do
  if [ ! -e "$OUT/.tuned-$model" ]; then  # a finished study is not extended by a rerun of this script
    $MTREC tune --model "$model" "${DATA[@]}" --trials "$TRIALS" --epochs "$EPOCHS" --startup-trials "$STARTUP" \
      --workers "$WORKERS" --threads "$THREADS" --storage "sqlite:///$OUT/tune.db" --study "$model"
    touch "$OUT/.tuned-$model"
  fi
done
$MTREC benchmark --tuned "sqlite:///$OUT/tune.db" --seeds "$SEEDS" --threads "$THREADS" --out "$OUT/runs"
$MTREC report "$OUT/runs" --out "$OUT/report"
