#!/usr/bin/env bash
# The accelerator measurements of the README, in one go, within a time budget (default 570 s):
#   run.py doctor; configs/translation_multi30k.py (bf16, $M30K_STEPS steps, default 6000); the
#   translation step benchmark (bf16, fused attention, dropout PRNG variants, PyTorch eager and
#   torch.compile peers); configs/mnist.py:fast with the time that is left. Every part has its own timeout and log; a part cut short still
#   leaves its log and metrics.
#
#   TFDS_DIR=~/tensorflow_datasets OUT=/tmp/accel bash benchmarks/accelerator_checks.sh
#
# Needs the datasets prepared (`python run.py prepare --config configs/mnist.py` and
# `... configs/translation_multi30k.py`, on any machine) in $TFDS_DIR. SMOKE=1 shrinks every part
# to a few steps (to try the script on a CPU).
set -u
OUT=${OUT:-/tmp/accelerator_checks}
TFDS_DIR=${TFDS_DIR:-$HOME/tensorflow_datasets}
BUDGET=${BUDGET:-570}
RUNS=${RUNS:-/tmp/accelerator_runs}
SMOKE=${SMOKE:-0}
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
start=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - start))); }

part() {  # part NAME MAX_SECONDS COMMAND...: runs COMMAND with at most MAX_SECONDS (and what is left)
  local name=$1 max=$2
  shift 2
  local limit
  limit=$(left)
  [ "$limit" -gt "$max" ] && limit=$max
  if [ "$limit" -lt 20 ]; then
    echo "$name: skipped (budget spent)" | tee -a "$OUT/summary.txt"
    return
  fi
  echo "== $name (limit ${limit}s; $(uptime))" | tee -a "$OUT/summary.txt"
  local t0=$(date +%s)
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $(($(date +%s) - t0)) s" | tee -a "$OUT/summary.txt"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  python -c 'import jax; print(jax.__version__, jax.devices())'; } >"$OUT/machine.txt" 2>&1

if [ "$SMOKE" = 1 ]; then
  mnist=(--config.num_train_steps=20 --config.eval_every_steps=10 --config.model.d_model=32)
  export M30K_STEPS=20
  m30k=(--config.eval_every_steps=10 --config.model.d_model=32
        --config.model.num_encoder_layers=1 --config.model.num_decoder_layers=1)
  bench=(--batch 4 --length 16 --layers 1 --d_model 64 --heads 2 --d_ff 128 --vocab 500
         --steps 2 --rounds 1)
else
  mnist=() m30k=() bench=()
fi

part doctor 120 python run.py doctor
part multi30k 240 python run.py train --config configs/translation_multi30k.py \
  --workdir "$RUNS/multi30k" --config.data.tfds_data_dir="$TFDS_DIR" \
  --config.model.dtype=bfloat16 --config.num_train_steps="${M30K_STEPS:-6000}" "${m30k[@]}"
part bench_b64 120 python benchmarks/translation_step.py --dtypes bfloat16 --impls fused \
  --prngs rbg,unsafe_rbg --steps 10 --rounds 2 "${bench[@]}"
part mnist_fast 90 python run.py train --config configs/mnist.py:fast --workdir "$RUNS/mnist_fast" \
  --config.data.tfds_data_dir="$TFDS_DIR" "${mnist[@]}"
for run in mnist_fast multi30k; do
  cp "$RUNS/$run/metrics.jsonl" "$OUT/$run.metrics.jsonl" 2>/dev/null || true
done
echo "total $(($(date +%s) - start)) s" | tee -a "$OUT/summary.txt"
