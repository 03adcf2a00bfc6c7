#!/usr/bin/env bash
# Creates .venv/ in the repository root and installs the tool.
#   bash install.sh            # the CLI is then .venv/bin/mocap
#   TORCH=cpu bash install.sh  # choose the torch build: cpu (PyTorch's CPU index, ~200 MB) or cuda (PyPI's
#                              # Linux build with CUDA, several GB); default: cuda when nvidia-smi sees a GPU
#   EXTRAS=gpu bash install.sh # add optional extras (gpu = onnxruntime-gpu; tensorrt = NVIDIA TensorRT;
#                              # blender = Blender's bpy module for FBX export, Python 3.11 only;
#                              # batch = Ray for mocap batch --ray; web = Gradio for mocap web;
#                              # webtest = Selenium for the browser tests; heif = HEIC/HEIF photos;
#                              # several: EXTRAS=blender,batch)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

# System libraries: Open3D needs libusb and EGL/GL for offscreen rendering.
# Blender's bpy (the blender extra) links X11/GL client libraries even when run headless.
# g++: AOTInductor (--engine aoti, mocap export --to aoti) compiles the network's C++ wrapper and CPU kernels.
pkgs=(libusb-1.0-0 libgl1 libegl1 libegl-mesa0 libgl1-mesa-dri libgomp1 g++)
case ",${EXTRAS:-}," in
  *,blender,*) pkgs+=(libx11-6 libxrender1 libxfixes3 libxi6 libxkbcommon0 libsm6 libice6 libxext6 libxcb1) ;;
esac
case ",${EXTRAS:-}," in
  *,webtest,*) pkgs+=(chromium chromium-driver) ;;  # headless Chromium for the browser tests (Selenium drives it)
esac
need=()
for pkg in "${pkgs[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "warning: please install these system packages: ${need[*]}" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned, the build chosen on purpose (no dependency can pull another one later)
TORCH_SPEC="torch==2.13.0"
CPU_INDEX=https://download.pytorch.org/whl/cpu
choice=${TORCH:-auto}
if [ "$choice" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then choice=cuda; else choice=cpu; fi
fi
case "$choice" in
  cuda)
    echo "torch: CUDA build from PyPI (TORCH=cpu bash install.sh for the CPU build)"
    if .venv/bin/python -m pip show torch 2>/dev/null | grep -q '^Version: .*+cpu'; then
      .venv/bin/python -m pip uninstall -q -y torch  # a CPU build satisfies torch==2.13.0 too
    fi
    .venv/bin/python -m pip install -q -c constraints.txt "$TORCH_SPEC" ;;
  cpu)
    if .venv/bin/python -c "import torch, sys; sys.exit(not (torch.__version__.startswith('2.13.0') and not torch.version.cuda))" 2>/dev/null; then
      echo "torch: the CPU build of 2.13.0 is already installed"
    elif .venv/bin/python -c "import urllib.request as u; u.urlopen('$CPU_INDEX/torch/', timeout=10)" 2>/dev/null; then
      echo "torch: CPU build from $CPU_INDEX (TORCH=cuda bash install.sh for the CUDA build)"
      .venv/bin/python -m pip install -q --timeout 30 --index-url "$CPU_INDEX" "$TORCH_SPEC"
    else
      echo "torch: $CPU_INDEX cannot be reached; installing from the default index instead" \
           "(on Linux x86-64 PyPI's wheel is the CUDA build, several GB)" >&2
      .venv/bin/python -m pip install -q -c constraints.txt "$TORCH_SPEC"
    fi ;;
  *) echo "TORCH must be cpu or cuda (got '$choice')" >&2; exit 2 ;;
esac
.venv/bin/python -c "import torch; print('torch installed:', torch.__version__, '(CUDA ' + torch.version.cuda + ' build)' if torch.version.cuda else '(CPU build)')"
target=".[test${EXTRAS:+,$EXTRAS}]"
.venv/bin/python -m pip install -q -c constraints.txt -e "$target"
# bpy's wheel is built for CPython 3.11 but its WHEEL file says cp39, which `pip check` reports as
# "not supported on this platform" although it imports and works: ignore that one line, nothing else.
if ! report=$(.venv/bin/python -m pip check 2>&1); then
  rest=$(printf '%s\n' "$report" | grep -v '^bpy [^ ]* is not supported on this platform$' || true)
  if [ -n "$rest" ]; then printf '%s\n' "$report" >&2; exit 1; fi
fi
echo "installed: $(.venv/bin/mocap --version 2>/dev/null || echo mocap) -> .venv/bin/mocap"
