#!/usr/bin/env bash
# Every GPU measurement of the project in one run (about 5 minutes on an H100).
#
#   bash scripts/gpu_check.sh OUTDIR                 # everything
#   STEPS="tests live" bash scripts/gpu_check.sh OUT # some steps only
#
# Steps (run in this order): tests engines predictor live overhead compile. Run from the repository root on a CUDA
# machine whose Python already has PyTorch with CUDA. Packages that machine lacks come as wheels
# in .whl/ (see docs/benchmarks.md, "GPU check"):
#   mediapipe==0.10.21 smplx==0.1.28 pyzmq python-osc protobuf==4.25.8  (manylinux x86_64, cp312)
# and the test media in .media/ (or MOCAP_MEDIA_DIR). Writes into OUTDIR:
#   env.txt           GPU, driver, Python and package versions
#   gpu_tests.txt     the gpu-marked tests (full log)
#   engines.json/.md  S32/B32 at batch 1/4/8: fp32, fp16, CUDA graphs; fp16 error; the SMPL-X layer
#   compile.json/.md  torch.compile of the fp16 network, alone and inside a CUDA graph (batch 1)
#   predictor.json/.md  the whole GPU predictor (frame in, people out) for 1, 2 and 4 people
#   live.json         `mocap live` with the CUDA engine on a 30 fps clip (paced and no-pace)
#   overhead.json     the live pipeline around a 2 ms stand-in network, on this machine's CPU
#   summary.md        all tables together
set -uo pipefail
OUT=${1:-${OUT:-gpu_check_out}}
STEPS=${STEPS:-tests engines predictor live overhead compile}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY=${PYTHON:-python3}
START=$(date +%s)
step() { echo "== $(( $(date +%s) - START ))s: $*"; }
want() { [[ " $STEPS " == *" $1 "* ]]; }
quiet() { grep -v "^W0000\|^I0000\|^WARNING: All log\|^INFO: Created TensorFlow"; }

if ls .whl/*.whl >/dev/null 2>&1; then
  step "installing carried wheels"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
[ -d .media ] && export MOCAP_MEDIA_DIR=${MOCAP_MEDIA_DIR:-$PWD/.media}
export MOCAP_CACHE_DIR=${MOCAP_CACHE_DIR:-/tmp/mocap-cache}

step "environment"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$PY" - <<'EOF'
import importlib, platform, os
print("python", platform.python_version(), "cpus", os.cpu_count())
for m in ("torch", "numpy", "cv2", "mediapipe", "smplx", "zmq", "pythonosc", "onnxruntime", "triton"):
    try:
        mod = importlib.import_module(m)
        print(m, getattr(mod, "__version__", "?"))
    except Exception as exc:
        print(m, "MISSING", type(exc).__name__, exc)
import torch
print("cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no device")
EOF
} 2>&1 | tee "$OUT/env.txt"

if want tests; then
  step "gpu-marked tests"
  timeout 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_engines.py > "$OUT/gpu_tests.txt" 2>&1
  tail -12 "$OUT/gpu_tests.txt"
fi

if want engines; then
  step "engines"
  timeout 170 "$PY" scripts/gpu_bench.py --variants s32 b32 --batches 1 4 8 --compile-batches \
    --iters 50 --warmup 10 --budget-s 120 --out "$OUT/engines" 2>&1 | grep -v "^{" | tail -40
fi

if want predictor; then
  step "the whole GPU predictor"
  timeout 120 "$PY" scripts/gpu_bench.py --variants s32 --batches 1 --engines torch_fp16_graph --no-smplx \
    --predictor --iters 30 --warmup 5 --out "$OUT/predictor" 2>&1 | grep -v "^{" | tail -14
fi

if want live; then
  step "mocap live on CUDA"
  timeout 90 "$PY" scripts/bench_live.py --device cuda --engine auto --seconds 12 --out "$OUT/live" 2>&1 \
    | quiet | tr '\r' '\n' | grep -v "^in " | tail -8
fi

if want overhead; then
  step "pipeline around a 2 ms stand-in network (this machine's CPU)"
  timeout 60 "$PY" scripts/bench_pipeline_overhead.py --seconds 5 --threads 4 --json "$OUT/overhead.json" 2>&1 \
    | quiet | tail -6
fi

if want compile; then
  step "torch.compile (batch 1, alone and in a CUDA graph)"
  timeout 240 "$PY" scripts/gpu_bench.py --variants s32 --batches 1 --compile-batches 1 \
    --engines torch_fp16_graph torch_compile_fp16 torch_compile_fp16_graph --no-smplx --iters 50 --warmup 10 \
    --out "$OUT/compile" 2>&1 | grep -v "^{" | tail -12
fi

step "summary"
"$PY" scripts/gpu_summary.py "$OUT" > "$OUT/summary.md" 2>&1
cat "$OUT/summary.md"
step "done"
