#!/usr/bin/env bash
# Run HERE (a machine with PyPI) before a device call: the wheels nnctl needs that the device machine's image
# lacks (pydantic and its parts, nvmath-python for cuBLAS), for its Python 3.12, into .whl/ (git-ignored,
# about 24 MB); and numpy 2.4, since the image's numpy 2.5 removed np.row_stack, which numba-cuda 0.30.4 still
# registers when it compiles a kernel (seen on an H200 machine, 2026-12-04). The image already has numba, numba-cuda, the CUDA wheels, torch, pytest, rich, click, pyyaml,
# safetensors and threadpoolctl (.library/device/KINDS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
for wheel in pydantic==2.12.5 pydantic-core==2.41.5 annotated-types==0.7.0 typing-inspection==0.4.2 \
             nvmath-python==1.0.0 numpy==2.4.6; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "$wheel"
done
ls -la .whl
