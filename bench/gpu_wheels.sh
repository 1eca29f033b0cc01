#!/usr/bin/env bash
# Wheels that bench/gpu_check.sh unpacks on a lent GPU machine that has no network: what the
# engine's tests need beyond the machine's own Python 3.12 packages (torch, torchvision, scipy,
# numpy, pillow, pyyaml, pyarrow, tqdm, pytest). About 3.5 MB, into .whl/ (git-ignored through
# .git/info/exclude); name `.whl` in the device tool's `carry`. Run here, where PyPI answers.
set -eu
cd "$(dirname "$0")/.."
exclude="$(git rev-parse --git-path info/exclude)"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
    typing_extensions==4.16.0 pycocotools==2.0.11 \
    msgspec==0.23.0
ls -la .whl
