#!/usr/bin/env bash
# Every GPU measurement of the project in one run.
#
#   bash scripts/gpu_check.sh OUTDIR                 # the default steps (estimated 8-9 minutes on an H100/H200)
#   STEPS="tests live" bash scripts/gpu_check.sh OUT # some steps only
#
# Each step has a time cap; a step whose cap no longer fits in BUDGET_S (default 570 s, for the device
# tool's 600 s per command) is skipped with a line saying so: run it in a second call (STEPS="sizes train").
#
# Steps, in this order: tests engines predictor live overhead compile aoti sizes train streams.
# Default (round two, issue 22): tests aoti sizes train streams (streams last: skipped with a line when
# the others left it too little of BUDGET_S; then run STEPS=streams alone, about 2 minutes); the others were measured on the H100 on
# 2026-11-27 (docs/benchmarks.md) and run when named. Run from the repository root on a CUDA machine
# whose Python already has PyTorch with CUDA (and a C++ compiler, which AOTInductor needs: checked
# in env.txt). Packages that machine lacks come as wheels in .whl/ (see docs/benchmarks.md, "GPU check"):
#   mediapipe==0.10.21 smplx==0.1.28 pyzmq python-osc protobuf==4.25.8  (manylinux x86_64, cp312)
# and the test media in .media/ (or MOCAP_MEDIA_DIR). The device tool brings back at most 8 files:
# the default steps write 8. Writes into OUTDIR:
#   env.txt           GPU, driver, Python, compilers and package versions
#   gpu_tests.txt     the gpu-marked tests (full log)
#   engines.json/.md  S32/B32 at batch 1/4/8: fp32, fp16, CUDA graphs; fp16 error; the SMPL-X layer
#   compile.json/.md  torch.compile of the fp16 network, alone and inside a CUDA graph (batch 1)
#   predictor.json/.md  the whole GPU predictor (frame in, people out) for 1, 2 and 4 people
#   live.json         `mocap live` with the CUDA engine on a 30 fps clip (paced and no-pace)
#   overhead.json     the live pipeline around a 2 ms stand-in network, on this machine's CPU
#   aoti.json/.md     AOTInductor S32/B32 fp16 in CUDA graphs vs PyTorch: compile s, load s, ms/frame (batch 1, 4)
#   sizes.json        `mocap live --engine auto` for S32/B32/L32/H32 (paced: latency; no-pace: fps); S32/B32
#                     use the AOTInductor packages the aoti step cached, L32/H32 PyTorch fp16 + CUDA graphs
#   streams.json      several streams on one GPU (scripts/bench_streams.py, S32 fp16 through --engine auto):
#                     1/2/4 streams x 1/2 people at 30 fps per stream in one process; 4 streams as 4 processes
#   train.txt         scripts/bench_train.py --device cuda --amp --batch-size 32 for s32 and b32 (when it exists)
#   summary.md        all tables together
set -uo pipefail
OUT=${1:-${OUT:-gpu_check_out}}
STEPS=${STEPS:-tests aoti sizes train streams}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY=${PYTHON:-python3}
START=$(date +%s)
step() { echo "== $(( $(date +%s) - START ))s: $*"; }
BUDGET_S=${BUDGET_S:-570}   # the device tool allows 600 s per command: a step that might not fit is skipped
want() { [[ " $STEPS " == *" $1 "* ]]; }
fits() {  # fits NAME CAP_S: true when the step's time cap still fits in BUDGET_S
  local left=$(( BUDGET_S - ($(date +%s) - START) ))
  if (( left < $2 )); then echo "== skipped $1: ${left}s left of BUDGET_S, the step may take $2 s (run it alone: STEPS=$1)"; return 1; fi
}
quiet() { grep -v "^W0000\|^I0000\|^WARNING: All log\|^INFO: Created TensorFlow"; }

if ls .whl/*.whl >/dev/null 2>&1; then
  step "installing carried wheels"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
[ -d .media ] && export MOCAP_MEDIA_DIR=${MOCAP_MEDIA_DIR:-$PWD/.media}
export MOCAP_CACHE_DIR=${MOCAP_CACHE_DIR:-/tmp/mocap-cache}
CKPTS=${CKPTS:-/tmp/mocap-ckpts}   # random-weight checkpoints shared by the aoti and sizes steps
DEVICE=${DEVICE:-cuda}             # DEVICE=cpu dry-runs the aoti, sizes and train steps on a CPU machine
AOTI_VARIANTS=${AOTI_VARIANTS:-s32 b32}
SIZES=${SIZES:-s32 b32 l32 h32}
LIVE_ENGINE=${LIVE_ENGINE:-auto}   # the sizes step's --engine
LIVE_CAP=${LIVE_CAP:-50}           # seconds per size in the sizes step (a CPU dry run needs more)

step "environment"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || echo "nvidia-smi: no GPU"
  for c in g++ gcc nvcc; do printf '%s: ' $c; ($c --version 2>/dev/null || echo MISSING) | head -1; done
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
  timeout 120 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_engines.py > "$OUT/gpu_tests.txt" 2>&1
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

if want aoti && fits aoti 270; then
  step "AOTInductor S32/B32 fp16 in CUDA graphs vs PyTorch (compiles both: the long step)"
  timeout 270 "$PY" scripts/bench_aoti.py --device $DEVICE --variants $AOTI_VARIANTS --batches 1 4 --iters 50 --warmup 10 \
    --checkpoint-dir "$CKPTS" --json "$OUT/aoti.json" --md "$OUT/aoti.md" 2>&1 | quiet | tail -12
fi

if want sizes && fits sizes 200; then
  step "mocap live --engine $LIVE_ENGINE on $DEVICE for $SIZES (CUDA: fp16, CUDA graphs)"
  mkdir -p /tmp/sizes "$CKPTS"
  for v in $SIZES; do
    ck=()
    [ -f "$CKPTS/smpler_x_$v.pth.tar" ] && ck=(--checkpoint "$CKPTS/smpler_x_$v.pth.tar")
    timeout $LIVE_CAP "$PY" scripts/bench_live.py --device $DEVICE --engine $LIVE_ENGINE --variant $v "${ck[@]}" --seconds 5 \
      --out /tmp/sizes/$v 2>&1 | quiet | tr '\r' '\n' | grep "engine\|^paced\|^no-pace\|rror" | cut -c1-300
  done
  "$PY" - "$OUT/sizes.json" <<'EOF'
import json, sys
from pathlib import Path
runs = {p.stem: json.loads(p.read_text()) for p in sorted(Path("/tmp/sizes").glob("*.json"))}
Path(sys.argv[1]).write_text(json.dumps(runs, indent=2))
EOF
fi

if want train && fits train 90; then
  step "training throughput (bench_train.py, batch 32, AMP)"
  if [ -f scripts/bench_train.py ]; then
    for c in s32 b32; do
      timeout 45 "$PY" scripts/bench_train.py --device $DEVICE --amp --batch-size 32 --config $c 2>&1 | quiet | tail -15
    done > "$OUT/train.txt" 2>&1
    tail -12 "$OUT/train.txt"
  else
    echo "scripts/bench_train.py not in this tree: skipped" | tee "$OUT/train.txt"
  fi
fi

if want streams && fits streams 160; then
  step "several streams on one $DEVICE: 1/2/4 streams x 1/2 people at 30 fps each, one batched call per round"
  rm -rf /tmp/streams && mkdir -p /tmp/streams
  ck=()
  [ -f "$CKPTS/smpler_x_s32.pth.tar" ] && ck=(--checkpoint "$CKPTS/smpler_x_s32.pth.tar")
  timeout 75 "$PY" scripts/bench_streams.py --device $DEVICE --engine auto --variant s32 "${ck[@]}" --threads 8 \
    --streams 1,2,4 --people 1,2 --seconds 4 --json /tmp/streams/one_process.json 2>&1 | quiet | grep "people (" | cut -c1-220
  timeout 80 "$PY" scripts/bench_streams.py --device $DEVICE --engine auto --variant s32 "${ck[@]}" --threads 8 \
    --streams 4 --people 1 --seconds 4 --processes --json /tmp/streams/processes.json 2>&1 | quiet | grep "people (" | cut -c1-220
  "$PY" - "$OUT/streams.json" <<'EOF'
import json, sys
from pathlib import Path
runs = {p.stem: json.loads(p.read_text()) for p in sorted(Path("/tmp/streams").glob("*.json"))}
Path(sys.argv[1]).write_text(json.dumps(runs, indent=2))
EOF
fi

step "summary"
"$PY" scripts/gpu_summary.py "$OUT" > "$OUT/summary.md" 2>&1
cat "$OUT/summary.md"
step "done"
