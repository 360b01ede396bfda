#!/usr/bin/env bash
# Create .venv and install gentools with its dev tools.
# Without an NVIDIA GPU this pins PyTorch's CPU build, so no multi-GB CUDA build is pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# pip byte-compiles file by file; compileall below does it on every core at once. The
# .pyc files must exist before the first import where PYTHONDONTWRITEBYTECODE is set.
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile)

if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') is installed"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "NVIDIA GPU found: installing torch $TORCH_VERSION with CUDA"
    "${pip[@]}" "torch==$TORCH_VERSION"
else
    echo "no NVIDIA GPU: installing the CPU build of torch $TORCH_VERSION"
    # A local or mirrored CPU wheel first; else PyTorch's own CPU wheel index.
    "${pip[@]}" "torch==$TORCH_VERSION+cpu" 2>/dev/null \
        || "${pip[@]}" "torch==$TORCH_VERSION+cpu" --extra-index-url "$TORCH_CPU_INDEX"
fi
"${pip[@]}" -e ".[dev]"
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# exit status 1 is expected: a few packages ship files that are not Python 3 on purpose
"$VENV/bin/python" -m compileall -q -j 0 "$site" >/dev/null || true
echo "gentools is installed in $VENV"
