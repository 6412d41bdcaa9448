#!/usr/bin/env bash
# The CUDA path, checked on a GPU machine: every algorithm script trains a few thousand steps with
# --cuda on a local dataset, must report that it ran on cuda, and its steps/s are printed; then 100k
# IQL steps are timed (1M extrapolated). Prepare on a CPU machine, run once where a GPU is at hand:
#
#     bash benchmarks/gpu_check.sh            # needs the venv of the README (pip install -r requirements.txt)
#     STEPS=2000 IQL_STEPS=100000 bash benchmarks/gpu_check.sh
#
# Writes one line per script to stdout and everything to $OUT (default gpu_check/) as summaries and logs.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-3000}
IQL_STEPS=${IQL_STEPS:-100000}
OUT=${OUT:-gpu_check}
DATASET=${DATASET:-local/pendulum/medium-replay-v0}
mkdir -p "$OUT"
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
PY
# build the default suite once (CPU, a few minutes) so that no timing below includes it
python -c "from common.make_dataset import ensure_dataset; ensure_dataset('$DATASET')"

run() {  # run NAME SCRIPT STEPS [FLAGS...]: train with --cuda, check the device, print steps/s
    local name=$1 script=$2 steps=$3; shift 3
    local dir="$OUT/$name"
    rm -rf "$dir" && mkdir -p "$dir"
    local t0=$SECONDS
    (cd "$dir" && python "../../$script" --cuda --dataset-id "$DATASET" --total-steps "$steps" \
        --eval-freq "$steps" --eval-episodes 2 "$@" > log.txt 2>&1) || { tail -20 "$dir/log.txt"; echo "$name: FAILED"; return 1; }
    grep -q " on cuda" "$dir/log.txt" || { echo "$name: did not run on cuda"; tail -5 "$dir/log.txt"; return 1; }
    python - "$dir" "$name" "$steps" "$((SECONDS - t0))" <<'PY'
import glob, json, sys
d, name, steps, wall = sys.argv[1:]
s = json.load(open(glob.glob(f"{d}/runs/*/summary.json")[0]))
print(f"{name:>22}: {steps} steps on cuda, {s['sps']} steps/s, final score {s['final_normalized_score']}, {wall} s in all")
PY
}

status=0
run bc bc.py "$STEPS" || status=1
run iql iql.py "$STEPS" || status=1
run cql cql.py "$STEPS" || status=1
run bcq bcq.py "$STEPS" || status=1
run decision_transformer decision_transformer.py "$STEPS" || status=1
[ -f td3_bc.py ] && { run td3_bc td3_bc.py "$STEPS" || status=1; }
[ -f awac.py ] && { run awac awac.py "$STEPS" || status=1; }
# The goal: 1M IQL steps in under 10 minutes on one H100.
run iql_100k iql.py "$IQL_STEPS" || status=1
python - "$OUT/iql_100k" "$IQL_STEPS" <<'PY'
import glob, json, sys
s = json.load(open(glob.glob(f"{sys.argv[1]}/runs/*/summary.json")[0]))
steps = int(sys.argv[2])
print(f"IQL: {steps} steps at {s['sps']} steps/s -> 1M steps in {1e6 / s['sps'] / 60:.1f} min (goal: under 10)")
PY
exit $status
