#!/usr/bin/env bash
# The GPU check: one prepared script for a lent GPU machine (an H200 here). Runs the `gpu`
# tests and the model speed (bench/model_step.py) for BENCHMARKS.md in under 8 minutes
# (GPU_CHECK_BUDGET_S, default 450 s), every part under its own timeout; a part that fails or
# times out is recorded and the next one runs.
#
#   bash bench/gpu_check.sh [OUT_DIR]          # OUT_DIR: default $OUT, else ./gpu_check_out
#   GPU_CHECK_DEVICE=cpu bash bench/gpu_check.sh /tmp/x   # dry run of the plumbing on a CPU
#
# Python, the first that works:
#   1. .venv/bin/python, when it imports sparse_rcnn and sees CUDA (`make install` ran here);
#   2. the machine's python3 with CUDA torch: this checkout becomes `sparse_rcnn` through
#      symlinks on PYTHONPATH (no pip, no network), and wheels in .whl/ are unpacked beside it
#      (bench/gpu_wheels.sh fetches pydantic and pycocotools for Python 3.12 where PyPI is
#      reachable). Ray and MLflow are too large to carry, so there the Ray Train test skips;
#   3. `make install` (needs PyPI), then 1.
# Writes to OUT_DIR (at most 8 files, as the device tool returns them): summary.txt (one line
# per part), env.txt, tests.log, model_step.log, model_step.jsonl, model_step.md.
set -u
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUT_DIR"
BUDGET_S=${GPU_CHECK_BUDGET_S:-450}
START=$(date +%s)
SUMMARY="$OUT_DIR/summary.txt"
ENV_TXT="$OUT_DIR/env.txt"
TESTS_LOG="$OUT_DIR/tests.log"
BENCH_LOG="$OUT_DIR/model_step.log"
ROWS="$OUT_DIR/model_step.jsonl"
: >"$SUMMARY"
export PYTHONUNBUFFERED=1
DEVICE=${GPU_CHECK_DEVICE:-cuda}
SMALL=() # on a CPU dry run: tiny inputs, one timed call
[ "$DEVICE" = cpu ] && SMALL=(--sizes 64x96 --warmup 0 --iters 1)

left() { echo $((BUDGET_S - ($(date +%s) - START))); }

# part NAME MAX_S LOG CMD...: CMD under min(MAX_S, time left); its outcome goes to the summary.
part() {
    local name=$1 max=$2 log=$3
    shift 3
    local t
    t=$(left)
    if ((t < 15)); then
        echo "$name: SKIPPED, budget spent" >>"$SUMMARY"
        return
    fi
    ((max < t)) && t=$max
    local s rc status
    s=$(date +%s)
    echo "=== $name (timeout ${t}s): $*" >>"$log"
    timeout --kill-after=10 "$t" "$@" >>"$log" 2>&1
    rc=$?
    status="exit $rc"
    ((rc == 124 || rc == 137)) && status="TIMED OUT after ${t}s"
    echo "$name: $status in $(($(date +%s) - s))s" | tee -a "$SUMMARY"
}

cuda_python() { "$1" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() or
'$DEVICE' == 'cpu' else 1)" >/dev/null 2>&1; }

PY=""
if [ -x .venv/bin/python ] && cuda_python .venv/bin/python &&
    .venv/bin/python -c 'import sparse_rcnn.models' >/dev/null 2>&1; then
    PY=.venv/bin/python
    HOW="reused .venv"
elif command -v python3 >/dev/null && cuda_python python3; then
    PY=python3
    SITE=/tmp/gpu_check_site
    rm -rf "$SITE" && mkdir -p "$SITE/sparse_rcnn"
    for d in models platform dashboards; do ln -s "$PWD/$d" "$SITE/sparse_rcnn/$d"; done
    if ls .whl/*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target "$SITE" .whl/*.whl >>"$TESTS_LOG" 2>&1 || echo "wheels: pip failed" >>"$SUMMARY"
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    HOW="machine python3, checkout on PYTHONPATH via $SITE"
else
    part "make install" 300 "$TESTS_LOG" make install
    PY=.venv/bin/python
    HOW="make install"
fi

{
    echo "python: $HOW ($PY)"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.version.cuda, "gpus", torch.cuda.device_count(),
torch.cuda.get_device_name() if torch.cuda.is_available() else "-")' 2>&1
    for m in torchvision scipy pydantic pycocotools ray mlflow; do
        "$PY" -c "import $m; print('$m', getattr($m, '__version__', '?'))" 2>/dev/null ||
            echo "$m: missing"
    done
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
    echo "cpus: $(nproc)"
} >"$ENV_TXT" 2>&1
cat "$ENV_TXT"

# 1. The engine's GPU tests. Without pydantic the engine's conftest (which builds specs) cannot
#    load; these tests need none of its fixtures, so they run without conftests then.
NOCONF=()
"$PY" -c 'import pydantic' >/dev/null 2>&1 || NOCONF=(--noconftest)
part "pytest gpu engine" 120 "$TESTS_LOG" "$PY" -m pytest -m gpu -p no:cacheprovider -q \
    ${NOCONF[@]+"${NOCONF[@]}"} tests/platform/engine/test_train_step_gpu.py \
    tests/platform/engine/test_loop_gpu.py

# 2. Model speed, R-50 1x at 800x1333 (batch 2 per step, inference 1 image), most wanted first.
BENCH=("$PY" -m bench.model_step --device "$DEVICE" --out "$ROWS")
part "bench r50 fp32 bf16" 90 "$BENCH_LOG" "${BENCH[@]}" --presets r50_fpn_1x \
    --variants fp32 bf16 --warmup 3 --iters 10 ${SMALL[@]+"${SMALL[@]}"}
part "bench r50 channels_last" 60 "$BENCH_LOG" "${BENCH[@]}" --presets r50_fpn_1x \
    --variants fp32+cl bf16+cl --warmup 3 --iters 10 ${SMALL[@]+"${SMALL[@]}"}

# 3. A 1-GPU Ray Train run of jobs/tiny_synthetic.yaml in bf16 (skips without Ray and MLflow).
part "pytest gpu ray train" 150 "$TESTS_LOG" "$PY" -m pytest -m gpu -p no:cacheprovider -q \
    ${NOCONF[@]+"${NOCONF[@]}"} tests/platform/orchestration/test_train_job_gpu.py

# 4. The tiny preset at its own size, then torch.compile (compilation is the slow part).
part "bench tiny" 40 "$BENCH_LOG" "${BENCH[@]}" --presets tiny --sizes 320x533 \
    --variants fp32 bf16 --warmup 3 --iters 10 ${SMALL[@]+"${SMALL[@]}"}
part "bench r50 compile" 150 "$BENCH_LOG" "${BENCH[@]}" --presets r50_fpn_1x \
    --variants bf16+cl+compile --warmup 2 --iters 5 ${SMALL[@]+"${SMALL[@]}"}

if [ -s "$ROWS" ]; then
    "$PY" -m bench.model_step --table "$ROWS" >"$OUT_DIR/model_step.md" 2>&1
    cat "$OUT_DIR/model_step.md"
fi
echo "total: $(($(date +%s) - START))s of ${BUDGET_S}s" | tee -a "$SUMMARY"
cat "$SUMMARY"
