#!/usr/bin/env bash
# The GPU measurements in one prepared run (a lent GPU machine's time is short): each part under its
# own time limit, so one that fails or hangs loses only itself; everything lands in $OUT (log.txt and
# one JSON per benchmark, at most 6 files).
#
#   bash bench/gpu_session.sh                       # on the GPU host, from the repository root (~8 min on an H100)
#   PARTS="tests eager runs pruned" bash bench/gpu_session.sh       # a subset, in this order
#   SCALE=smoke OUT=/tmp/gpu bash bench/gpu_session.sh              # the same steps at toy sizes on a CPU
#
# Parts: env (GPU, driver, torch), tests (the CUDA equivalence tests of GatedBatchNorm2d), eager (gated ÷
# dense training images/s, resnet56 / wrn16_4 / wrn16_8, fp32 and bf16, bench_gpu.py), runs (real BAR
# runs of wrn16_4 on synthetic-cifar at B = 1/2, 1/4, 1/8, 1/16: one pretraining, shared), pruned (dense vs
# pruned latency of those runs, batch 256 and batch 1 as a CUDA-graph replay, round_to 1 and 8,
# bench_pruned.py), preset (the paper preset capped and projected, bench_preset.py), compile (gated ÷
# dense under torch.compile, bf16; last because compiling is slow).
set -u
cd "$(dirname "$0")/.." || exit
OUT=${OUT:-gpu-results}
SCALE=${SCALE:-full}
PARTS=${PARTS:-env tests eager runs pruned preset compile}
PY=${PY:-python3}
RUNS=${RUNS:-/tmp/bar-gpu-runs}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUNS"
LOG=$OUT/log.txt

if [ "$SCALE" = smoke ]; then  # every step once, in seconds, on a CPU
  DEV=cpu MODELS="resnet8" RUN_MODEL=resnet8 BATCH=16 STEPS=2 WARMUP=1 ROUNDS=1
  PRE=(--pretrain-epochs 1 --max-steps-per-epoch 5 --test-limit 200 --train-limit 2000) PRUNE=(--prune-epochs 1)
  LATENCY=(--batches 8 1 --threads 1 --rounds 1 --repeats 1) PRESET=(--preset smoke --steps 3) CBACKEND=aot_eager
else
  DEV=cuda MODELS="resnet56 wrn16_4 wrn16_8" RUN_MODEL=wrn16_4 BATCH=128 STEPS=30 WARMUP=10 ROUNDS=5
  PRE=(--pretrain-epochs 2) PRUNE=(--prune-epochs 2)
  LATENCY=(--batches 256 1 --cuda-graph 1 --threads 1 --channels-last)
  PRESET=(--preset paper --dataset synthetic-cifar --steps 150) CBACKEND=inductor
fi

part() {  # part NAME SECONDS COMMAND...: run it under a time limit, log its output, its exit code and time
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  echo "===== $name (limit ${limit}s): $*" | tee -a "$LOG"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  echo "===== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$LOG"
}

train_runs() {  # one pretraining (b1_2 keeps teacher.pt), then each budget from that teacher
  local common=(--model "$RUN_MODEL" --dataset synthetic-cifar --device "$DEV" --finetune-epochs 0 "${PRUNE[@]}"
                --quiet --overwrite)
  [ "$SCALE" = smoke ] && common+=(--max-steps-per-epoch 5 --test-limit 200 --train-limit 2000)
  "$PY" -m bar_core train "${common[@]}" --teacher none "${PRE[@]}" --budget 1/2 --out "$RUNS/b1_2" || return
  for b in 4 8 16; do
    "$PY" -m bar_core train "${common[@]}" --teacher "$RUNS/b1_2/teacher.pt" --budget "1/$b" --out "$RUNS/b1_$b" || return
  done
  "$PY" - "$RUNS" <<'EOF'
import json, sys
from pathlib import Path
for run in sorted(Path(sys.argv[1]).glob("b1_*"), key=lambda p: int(p.name[3:])):
    s = json.loads((run / "summary.json").read_text())
    print(f"{run.name}: V/V0 {s['volume_ratio']:.4f}, accuracy {s['pruned_accuracy']:.4f}, "
          f"steps over budget {s['steps_over_budget']}, wall {s.get('wall_seconds', float('nan')):.0f} s")
EOF
}

if [ "${1:-}" = __runs ]; then train_runs; exit; fi  # the runs part, in its own process so that timeout can stop it

for p in $PARTS; do
  case $p in
    env) part env 60 bash -c "nvidia-smi || true; $PY -c 'import torch, platform; print(platform.python_version(), \
torch.__version__, torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())'; nproc" ;;
    tests) part tests 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_gated_batchnorm.py tests/test_bench_gpu.py ;;
    eager) part eager 240 "$PY" bench/bench_gpu.py --device "$DEV" --models $MODELS --modes eager-fp32 eager-bf16 \
             --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP" --rounds "$ROUNDS" --json "$OUT/throughput_eager.json" ;;
    runs) part runs 300 bash "$0" __runs ;;
    pruned) part pruned 180 "$PY" bench/bench_pruned.py --runs "$RUNS"/b1_2 "$RUNS"/b1_4 "$RUNS"/b1_8 "$RUNS"/b1_16 \
              --device "$DEV" --input 3 32 32 "${LATENCY[@]}" --json "$OUT/pruned.json" ;;
    preset) part preset 180 "$PY" bench/bench_preset.py "${PRESET[@]}" --device "$DEV" --json "$OUT/preset.json" ;;
    compile) part compile 300 "$PY" bench/bench_gpu.py --device "$DEV" --models $RUN_MODEL --modes compile-bf16 compile-fp32 \
               --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP" --rounds "$ROUNDS" --compile-backend "$CBACKEND" \
               --json "$OUT/throughput_compile.json" ;;
    *) echo "unknown part $p (parts: env tests eager runs pruned preset compile)" | tee -a "$LOG" ;;
  esac
done
