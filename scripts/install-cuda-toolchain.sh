#!/usr/bin/env bash
# Installs the pinned CUDA compiler wheels (DESIGN.md §5) into .cuda-toolchain/ (git-ignored)
# and prints the nvcc path on the last line of stdout. Idempotent: a second run reuses the folder.
#   NVCC=$(bash scripts/install-cuda-toolchain.sh | tail -n 1)
# With --sass also installs cuobjdump/nvdisasm for the SASS checks (scripts/check-kernels.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${ASA_LTH_TOOLCHAIN_DIR:-$root/.cuda-toolchain}
pkgs=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
      nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85)
if [[ ${1:-} == --sass ]]; then
  pkgs+=(nvidia-cuda-cuobjdump==13.2.51 nvidia-cuda-nvdisasm==13.2.51)
fi
stamp="$dest/.installed-$(printf '%s\n' "${pkgs[@]}" | sha256sum | cut -c1-16)"
if [[ ! -f $stamp ]]; then
  # pip --target skips a top-level folder that already exists (every wheel here writes into
  # nvidia/), so a second install beside an earlier one would add nothing: start clean.
  rm -rf "$dest"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$dest" "${pkgs[@]}" >&2
  touch "$stamp"
fi
bin="$dest/nvidia/cu13/bin"
[[ -x $bin/nvcc ]] || { echo "install-cuda-toolchain: nvcc not found under $bin" >&2; exit 1; }
echo "$bin/nvcc"
