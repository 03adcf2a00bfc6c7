#!/usr/bin/env bash
# Creates .venv/ in the repository root and installs the tool (CPU build of torch).
#   bash install.sh            # the CLI is then .venv/bin/mocap
#   EXTRAS=gpu bash install.sh # add optional extras (gpu = onnxruntime-gpu; tensorrt = NVIDIA TensorRT;
#                              # batch = Ray for mocap batch --ray; several: EXTRAS=batch,gpu)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

# System libraries: Open3D needs libusb and EGL/GL for offscreen rendering.
need=()
for pkg in libusb-1.0-0 libgl1 libegl1 libegl-mesa0 libgl1-mesa-dri libgomp1; do
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
# torch first, pinned, so that no dependency can pull a CUDA build
.venv/bin/python -m pip install -q -c constraints.txt "torch==2.13.0"
target=".[test${EXTRAS:+,$EXTRAS}]"
.venv/bin/python -m pip install -q -c constraints.txt -e "$target"
.venv/bin/python -m pip check
echo "installed: $(.venv/bin/mocap --version 2>/dev/null || echo mocap) -> .venv/bin/mocap"
