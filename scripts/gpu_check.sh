#!/usr/bin/env bash
# GPU check: install the gpu extra (and TensorRT), build the cuda and tensorrt targets of the
# sample models and one real model, benchmark them against the CPU build and the unoptimized
# model on the same GPU, and write the results to gpu-results/ (gpu_check.md and JSON).
#   usage: scripts/gpu_check.sh [RESULTS_DIR]
# Needs an NVIDIA GPU with its driver; everything else comes from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-gpu-results}
python3 -m venv .venv-gpu
. .venv-gpu/bin/activate
pip install --quiet --disable-pip-version-check -e '.[dev,gpu]'
# onnxruntime-gpu provides the same module as onnxruntime: keep only the GPU build.
pip uninstall --quiet --yes onnxruntime || true
pip install --quiet --disable-pip-version-check --force-reinstall --no-deps 'onnxruntime-gpu>=1.31'
pip install --quiet --disable-pip-version-check tensorrt-cu12 || echo "TensorRT wheels unavailable: tensorrt target will say why"
# The TensorRT provider loads libnvinfer from the library path; the wheels keep it in site-packages.
trt_libs=$(python - <<'PY'
import importlib.util, os
for name in ("tensorrt_libs", "tensorrt_cu12_libs"):
    spec = importlib.util.find_spec(name)
    if spec and spec.submodule_search_locations:
        print(list(spec.submodule_search_locations)[0]); break
PY
)
export LD_LIBRARY_PATH="${trt_libs:+$trt_libs:}${LD_LIBRARY_PATH:-}"
python scripts/gpu_check.py "$results"
