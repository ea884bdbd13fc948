#!/usr/bin/env bash
# Creates .venv with everything nirbridge and its tests need, Lava included.
# Idempotent: a second run only checks that the environment is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
if "$VPY" -c "import nirbridge, lava.magma, lava.lib.dl.netx, norse, snntorch, onnxruntime, spikingjelly.activation_based.neuron, sinabs.layers, distributed, tonic.datasets" 2>/dev/null \
    && [ "${NIRBRIDGE_REINSTALL:-0}" != 1 ]; then
    echo "[setup] environment in .venv is complete"
    exit 0
fi
"$VPY" -m pip install -q --upgrade pip wheel setuptools
# torch 2.14.1 and torchvision 0.29.1 come from this machine's local index.
"$VPY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
"$VPY" -m pip install -q -e ".[backends,cluster,dev]"
# lava-nc 0.10.0 / lava-dl 0.6.0 declare Python < 3.11 and pin old torch/numpy:
# install them without their declared requirements, and their real needs pinned.
"$VPY" -m pip install -q --ignore-requires-python --no-deps "lava-nc==0.10.0" "lava-dl==0.6.0"
"$VPY" -m pip install -q "numpy==1.26.*" "scipy==1.13.*" "scikit-learn==1.5.*" \
    "networkx<=2.8.7" "asteval<0.10" h5py matplotlib ninja "opencv-python-headless<4.11"
# neurobench declares torchaudio (only its audio data sets use it); the SOP counter
# needs none of that, so install it without dependencies, plus what it imports.
"$VPY" -m pip install -q --no-deps "neurobench==2.3.0"
"$VPY" -m pip install -q "numba>=0.59" "llvmlite>=0.42"
# SpikingJelly 2.0.0 declares torchaudio (and tensorboard, SciencePlots) and Sinabs 3.1.3
# declares nir<=1.0.4 and samna (Speck's driver): none of them is needed to build and run
# their models, and pip would downgrade nir/nirtorch or pull a torchaudio built for another
# torch. Install both without dependencies, plus what they import.
"$VPY" -m pip install -q --no-deps "spikingjelly==2.0.0" "sinabs==3.1.3"
"$VPY" -m pip install -q "loguru==0.7.3" "pbr==7.1.3"
# tonic 1.6.0 (recipes' neuromorphic data sets) declares librosa (audio transforms only,
# never imported by its data sets or ToFrame) and expelliarmus (declared, imported nowhere in
# 1.6.0): install it without dependencies, plus what `import
# tonic.datasets` imports (importRosbag, and requests, which it imports at import time for
# its downloads although it never declares it; pbr, h5py, scipy and tqdm are already here).
"$VPY" -m pip install -q --no-deps "tonic==1.6.0" "importRosbag==1.0.4"
"$VPY" -m pip install -q "requests==2.34.2"
"$VPY" -c "import nirbridge, lava.magma, lava.lib.dl.netx, norse, snntorch, onnxruntime, spikingjelly.activation_based.neuron, sinabs.layers, distributed, tonic.datasets; print('[setup] environment ready')"
